import { SnpError } from './errors';
import type { VerifiedChain } from './chain';
import { decodeHwId, type VekExtensions } from './extensions';
import { SNP_PRODUCT_NAME } from './generation';
import { ReportOffset, SigningKey, type SnpReport } from './report';
import { isZeroRange } from './reserved';
import type { SnpTcb } from './tcb';

/**
 * Step 11: what must match between the report and its VEK certificate (../shared/specs/snp-attestation.md §3.6), one
 * function per row of the table, in its order. Each returns a detail line for the check list or throws its code.
 */
export interface BindingContext {
  report: SnpReport;
  chain: VerifiedChain;
  ext: VekExtensions;
  reportedTcb: SnpTcb;
  allowMaskedChipId: boolean;
  vlekCspAllowList?: readonly string[];
}

export function checkSigner({ report, chain }: BindingContext): string {
  const want = report.keyInfo.signingKey === SigningKey.VCEK ? 'vcek' : 'vlek';
  if (chain.kind !== want) {
    throw new SnpError(
      'SNP_SIGNER_MISMATCH',
      `the report says it is signed by the ${want.toUpperCase()} (KEY_INFO ${report.keyInfo.raw}), the certificate is a ${chain.kind.toUpperCase()}`,
    );
  }
  return `${want.toUpperCase()} (KEY_INFO SIGNING_KEY ${report.keyInfo.signingKey})`;
}

/** structVersion and the extension set of each profile (§3.4 table; GSG VcekCertificateExtensions/VlekCertificateExtensions). */
export function checkProfile({ chain, ext }: BindingContext): string {
  const turin = chain.generation === 'turin';
  const fail = (why: string) =>
    new SnpError('SNP_CERT_PROFILE', `the ${chain.kind.toUpperCase()} does not have AMD's ${SNP_PRODUCT_NAME[chain.generation]} profile: ${why}`);
  const sv = ext.structVersion;
  if (sv === undefined) throw fail('no structVersion extension');
  if (chain.kind === 'vcek' ? sv !== (turin ? 1 : 0) : sv !== 0 && sv !== 1) throw fail(`structVersion ${sv}`);
  if (ext.productName === undefined) throw fail('no productName extension');
  const required: [keyof VekExtensions, string][] = [
    ['bootloader', 'blSPL'],
    ['tee', 'teeSPL'],
    ['snp', 'snpSPL'],
    ['spl5', 'spl_5'],
    ['spl6', 'spl_6'],
    ['spl7', 'spl_7'],
    ['microcode', 'ucodeSPL'],
  ];
  for (const [k, name] of required) if (ext[k] === undefined) throw fail(`no ${name} extension`);
  if (turin && ext.fmc === undefined) throw fail('no fmcSPL extension (Turin)');
  if (!turin && ext.fmc !== undefined) throw fail('an fmcSPL extension outside Turin');
  if (!turin && ext.spl4 === undefined) throw fail('no spl_4 extension');
  if (chain.kind === 'vcek') {
    if (ext.hwIdValue === undefined) throw fail('no hwID extension');
    if (ext.cspId !== undefined) throw fail('a VCEK with a CSP_ID extension');
  } else {
    if (ext.cspId === undefined) throw fail('no CSP_ID extension');
    if (ext.hwIdValue !== undefined) throw fail('a VLEK with a hwID extension');
  }
  return `structVersion ${sv}, extensions complete`;
}

export function checkProduct({ chain, ext }: BindingContext): string {
  const name = ext.productName ?? '';
  const want = SNP_PRODUCT_NAME[chain.generation];
  // the part before the first '-' (the stepping suffix is not the CPU stepping, §3.4 notes)
  if (name !== want && !name.startsWith(`${want}-`))
    throw new SnpError('SNP_PRODUCT_MISMATCH', `the certificate's productName is ${JSON.stringify(name)}, the report is from ${want}`);
  return `${name}`;
}

export function checkTcb({ chain, ext, reportedTcb: t }: BindingContext): string {
  const turin = chain.generation === 'turin';
  // reserved TCB bytes equal the spl_N extensions in order (GSG compares the whole composed u64, §3.6)
  const spls = turin ? [ext.spl5, ext.spl6, ext.spl7] : [ext.spl4, ext.spl5, ext.spl6, ext.spl7];
  let same = ext.bootloader === t.bootloader && ext.tee === t.tee && ext.snp === t.snp && ext.microcode === t.microcode && (!turin || ext.fmc === t.fmc);
  for (let i = 0; same && i < spls.length; i++) same = spls[i] === t.reserved[i];
  if (same) return 'REPORTED_TCB = certificate SPLs';
  const pairs: [string, number | undefined, number][] = [
    ...(turin ? ([['fmc', ext.fmc, t.fmc ?? -1]] as [string, number | undefined, number][]) : []),
    ['bl', ext.bootloader, t.bootloader],
    ['tee', ext.tee, t.tee],
    ['snp', ext.snp, t.snp],
    ['ucode', ext.microcode, t.microcode],
  ];
  spls.forEach((v, i) => pairs.push([`spl_${i + (turin ? 5 : 4)}`, v, t.reserved[i]!]));
  const bad = pairs.filter(([, cert, rep]) => cert !== rep);
  throw new SnpError(
    'SNP_TCB_MISMATCH',
    `REPORTED_TCB differs from the certificate: ${bad.map(([n, c, r]) => `${n} report ${r} ≠ certificate ${c}`).join(', ')}`,
  );
}

export function checkChipId({ report, chain, ext, allowMaskedChipId }: BindingContext): string {
  if (chain.kind === 'vlek') return 'VLEK: no hwID (not bound to a chip)';
  const turin = chain.generation === 'turin';
  const n = turin ? 8 : 64;
  const hwId = decodeHwId(ext.hwIdValue!, n);
  if (!hwId) throw new SnpError('SNP_CERT_PROFILE', `the VCEK's hwID is neither ${n} raw bytes nor an OCTET STRING of ${n} bytes`);
  const chip = report.chipId;
  if (isZeroRange(report.raw, ReportOffset.CHIP_ID, ReportOffset.CHIP_ID + 64)) {
    if (!allowMaskedChipId) throw new SnpError('SNP_CHIP_ID_MASKED', 'CHIP_ID is all zero (the host set MASK_CHIP_ID): the report cannot be bound to a chip');
    return 'CHIP_ID masked (allowed by configuration)';
  }
  const same = turin ? chip.subarray(0, 8).equals(hwId) && isZeroRange(report.raw, ReportOffset.CHIP_ID + 8, ReportOffset.CHIP_ID + 64) : chip.equals(hwId);
  if (!same)
    throw new SnpError(
      'SNP_CHIP_ID_MISMATCH',
      `CHIP_ID ${chip.subarray(0, 8).toString('hex')}… is not the VCEK's hwID ${hwId.subarray(0, 8).toString('hex')}…`,
    );
  return `CHIP_ID = hwID ${hwId.subarray(0, 8).toString('hex')}…`;
}

export function checkCsp({ chain, ext, vlekCspAllowList }: BindingContext): string {
  if (chain.kind === 'vcek') return 'VCEK: no CSP_ID';
  const csp = ext.cspId!;
  if (vlekCspAllowList && !vlekCspAllowList.includes(csp))
    throw new SnpError('SNP_VLEK_CSP', `the VLEK's CSP_ID ${JSON.stringify(csp)} is not in the allow-list`);
  return `CSP_ID ${csp}${vlekCspAllowList ? ' (allowed)' : ''}`;
}
