import { timingSafeEqual } from 'node:crypto';
import { SnpError, type SnpErrorCode } from './errors';
import { checkChipId, checkCsp, checkProduct, checkProfile, checkSigner, checkTcb, type BindingContext } from './binding';
import { parseSnpCertificate, type SnpCertificate } from './certificate';
import { pinnedIntermediateSigns, verifySnpChain, vekKindOf, type VerifiedChain } from './chain';
import { checkRevocation, parseSnpCrl, type SnpCrl, type SnpCrlMode } from './crl';
import { vekExtensions, type VekExtensions } from './extensions';
import { describeCpuid, generationFromCpuid, SNP_PRODUCT_NAME, type SnpGeneration } from './generation';
import { formatFirmware, parseSnpReport, SigningKey, SNP_REPORT_SIZE, type SnpReport } from './report';
import { reservedViolation } from './reserved';
import { pinnedSnpRoots, type SnpRoots } from './roots';
import { isZeroSignature, verifyReportSignature } from './signature';
import { decodeTcb, formatTcb, type SnpTcb } from './tcb';

/**
 * The verification checklist of ../shared/specs/snp-attestation.md §5.2, steps 1–12, 14 and 16, in that order:
 * stop at the first failure, but return every check with its outcome so a CLI can print them all. Steps 13, 15 and
 * 17–20 (guest policy bits, ID block, host data, ID keys, TCB minimums, platform) are release-policy decisions made
 * by the policy layer on the verified report.
 *
 * Pure and synchronous: certificates come in with the evidence (or from the caller's store); nothing is fetched.
 * Chain links and parsed certificates are memoised, so a report from a known chip costs about one ECDSA verification.
 */
export interface SnpEvidenceCertificates {
  /** PEM or DER each, by the roles of the extended-report certificate table (§4.5) */
  vcek?: Uint8Array;
  vlek?: Uint8Array;
  ask?: Uint8Array;
  asvk?: Uint8Array;
  ark?: Uint8Array;
}

export interface VerifySnpReportOptions {
  certificates?: SnpEvidenceCertificates;
  /** CRLs (PEM or DER, or parsed); those of other generations are ignored */
  crls?: readonly (Uint8Array | SnpCrl)[];
  /** default `if-available` (§4.6) */
  crl?: SnpCrlMode;
  /** verification time (default: now) */
  now?: Date;
  /** default AMD's pinned roots; a synthetic set only by explicit configuration */
  roots?: SnpRoots;
  /** default [3, 4, 5] (§5.1) */
  acceptedVersions?: readonly number[];
  /** adds version 2 to the accepted versions */
  allowV2Reports?: boolean;
  allowMaskedChipId?: boolean;
  vlekCspAllowList?: readonly string[];
  /** step 12: the 64 bytes REPORT_DATA must equal (unset: not checked) */
  expectedReportData?: Uint8Array;
  /** step 14: required VMPL; default 0 (§5.1); null: not checked */
  vmpl?: number | null;
  /** step 16: accepted MEASUREMENT values (48 bytes each; unset: not checked) */
  measurements?: readonly Uint8Array[];
}

export type SnpCheckId =
  | 'size'
  | 'version'
  | 'reserved'
  | 'sig-algo'
  | 'signed'
  | 'generation'
  | 'vek'
  | 'chain'
  | 'validity'
  | 'revocation'
  | 'signature'
  | 'signer'
  | 'cert-profile'
  | 'product'
  | 'tcb'
  | 'chip-id'
  | 'csp'
  | 'report-data'
  | 'vmpl'
  | 'measurement';

/** pass; fail (the first and only failure); skip (not applicable or not requested); not-run (after a failure) */
export type SnpCheckStatus = 'pass' | 'fail' | 'skip' | 'not-run';

export interface SnpCheck {
  step: number;
  id: SnpCheckId;
  title: string;
  status: SnpCheckStatus;
  detail: string;
  code?: SnpErrorCode;
}

export interface SnpVerification {
  ok: boolean;
  checks: SnpCheck[];
  /** the first failure */
  error?: SnpError;
  report?: SnpReport;
  generation?: SnpGeneration;
  chain?: VerifiedChain;
  vekExtensions?: VekExtensions;
  /** the report's TCBs decoded with the generation's layout */
  tcb?: { current: SnpTcb; reported: SnpTcb; committed: SnpTcb; launch: SnpTcb };
}

export const SNP_CHECKS: readonly { step: number; id: SnpCheckId; title: string }[] = [
  { step: 1, id: 'size', title: 'report size' },
  { step: 2, id: 'version', title: 'report version' },
  { step: 3, id: 'reserved', title: 'reserved fields are zero' },
  { step: 4, id: 'sig-algo', title: 'signature algorithm' },
  { step: 5, id: 'signed', title: 'report is signed' },
  { step: 6, id: 'generation', title: 'processor generation' },
  { step: 7, id: 'vek', title: 'VCEK/VLEK certificate' },
  { step: 8, id: 'chain', title: 'chain to the pinned AMD root' },
  { step: 9, id: 'validity', title: 'certificate validity' },
  { step: 9, id: 'revocation', title: 'revocation (CRL)' },
  { step: 10, id: 'signature', title: 'report signature' },
  { step: 11, id: 'signer', title: 'signing key kind' },
  { step: 11, id: 'cert-profile', title: 'certificate profile' },
  { step: 11, id: 'product', title: 'product name' },
  { step: 11, id: 'tcb', title: 'REPORTED_TCB = certificate TCB' },
  { step: 11, id: 'chip-id', title: 'CHIP_ID = hwID' },
  { step: 11, id: 'csp', title: 'VLEK cloud provider' },
  { step: 12, id: 'report-data', title: 'REPORT_DATA' },
  { step: 14, id: 'vmpl', title: 'VMPL' },
  { step: 16, id: 'measurement', title: 'MEASUREMENT' },
];

interface Ctx {
  bytes: Uint8Array;
  o: VerifySnpReportOptions;
  roots: SnpRoots;
  res: SnpVerification;
  report?: SnpReport;
  candidates?: SnpGeneration[];
  vek?: SnpCertificate;
  ext?: VekExtensions;
  ark?: SnpCertificate;
  intermediate?: SnpCertificate;
  chain?: VerifiedChain;
  binding?: BindingContext;
}

const SKIP = Symbol('skip');
type Outcome = string | { [SKIP]: string };
const skip = (detail: string): Outcome => ({ [SKIP]: detail });

const hex = (n: number | bigint) => `0x${n.toString(16)}`;

function vekOf(c: Ctx): SnpCertificate {
  return c.vek!;
}

const STEPS: Record<SnpCheckId, (c: Ctx) => Outcome> = {
  size(c) {
    c.report = parseSnpReport(c.bytes);
    c.res.report = c.report;
    return `${SNP_REPORT_SIZE} bytes`;
  },
  version(c) {
    const v = c.report!.version;
    const accepted = [...(c.o.acceptedVersions ?? [3, 4, 5]), ...(c.o.allowV2Reports ? [2] : [])].filter((x) => x >= 2 && x <= 5);
    if (!accepted.includes(v)) {
      throw new SnpError(
        'SNP_REPORT_VERSION',
        `report version ${v} is not accepted (accepted: ${accepted.join(', ')}${v === 2 && !c.o.allowV2Reports ? '; version 2 needs allowV2Reports' : ''})`,
      );
    }
    return `version ${v}`;
  },
  reserved(c) {
    const why = reservedViolation(c.report!);
    if (why) throw new SnpError('SNP_REPORT_RESERVED', why);
    return 'all MBZ ranges zero, POLICY bit 17 set';
  },
  'sig-algo'(c) {
    const a = c.report!.signatureAlgo;
    if (a !== 1) throw new SnpError('SNP_SIG_ALGO', `SIGNATURE_ALGO is ${a}; only 1 (ECDSA P-384 with SHA-384) exists`);
    return 'ECDSA P-384 with SHA-384';
  },
  signed(c) {
    const r = c.report!;
    if (r.keyInfo.signingKey === SigningKey.NONE) throw new SnpError('SNP_UNSIGNED', 'KEY_INFO SIGNING_KEY is 7: the firmware did not sign this report');
    if (r.keyInfo.maskChipKey) throw new SnpError('SNP_UNSIGNED', 'KEY_INFO MASK_CHIP_KEY is set: the firmware did not sign this report');
    if (isZeroSignature(r)) throw new SnpError('SNP_UNSIGNED', 'the signature is zero');
    return `by the ${r.keyInfo.signingKey === SigningKey.VCEK ? 'VCEK' : 'VLEK'}`;
  },
  generation(c) {
    const r = c.report!;
    if (r.cpuid) {
      const g = generationFromCpuid(r.cpuid.family, r.cpuid.model);
      if (!g) throw new SnpError('SNP_GENERATION', `unsupported processor: CPUID ${describeCpuid(r.cpuid.family, r.cpuid.model)}`);
      if (!c.roots[g]) throw new SnpError('SNP_GENERATION', `no roots are configured for ${SNP_PRODUCT_NAME[g]}`);
      c.candidates = [g];
      return `${SNP_PRODUCT_NAME[g]} (CPUID family ${hex(r.cpuid.family)} model ${hex(r.cpuid.model)} stepping ${r.cpuid.stepping})`;
    }
    // v2 (§1.7): no CPUID bytes. A Turin-like CHIP_ID is refused; Milan vs Genoa is decided by the chain (step 8).
    const chip = r.chipId;
    if (chip.subarray(8).every((b) => b === 0) && !chip.subarray(0, 8).every((b) => b === 0)) {
      throw new SnpError('SNP_GENERATION', 'a version 2 report with an 8-byte (Turin-like) CHIP_ID: Turin reports of version 2 are not accepted');
    }
    c.candidates = (['milan', 'genoa'] as const).filter((g) => c.roots[g]);
    if (c.candidates.length === 0) throw new SnpError('SNP_GENERATION', 'no Milan or Genoa roots are configured');
    return `version 2: Milan or Genoa, decided by the certificate chain`;
  },
  vek(c) {
    const r = c.report!;
    const certs = c.o.certificates ?? {};
    const role = r.keyInfo.signingKey === SigningKey.VCEK ? 'vcek' : 'vlek';
    const bytes = certs[role];
    if (!bytes) throw new SnpError('SNP_VEK_MISSING', `the report is signed by a ${role.toUpperCase()} and no ${role.toUpperCase()} certificate was supplied`);
    const vek = parseSnpCertificate(bytes, role.toUpperCase());
    if (!isP384(vek)) {
      throw new SnpError('SNP_CERT_PARSE', `the ${role.toUpperCase()}'s public key is not an EC P-384 key`);
    }
    c.vek = vek;
    c.ext = vekExtensions(vek, role.toUpperCase());
    c.res.vekExtensions = c.ext;
    if (certs.ark) c.ark = parseSnpCertificate(certs.ark, 'ARK');
    const kind = vekKindOf(vek);
    const inter = kind === 'vlek' ? certs.asvk : certs.ask;
    if (inter) c.intermediate = parseSnpCertificate(inter, kind === 'vlek' ? 'ASVK' : 'ASK');
    return `${vek.subjectCn ?? '(no CN)'} issued by ${vek.issuerCn ?? '(no CN)'}, valid ${vek.validityText}`;
  },
  chain(c) {
    const vek = vekOf(c);
    const supplied = { ...(c.ark ? { ark: c.ark } : {}), ...(c.intermediate ? { intermediate: c.intermediate } : {}) };
    const cands = c.candidates!;
    let chain: VerifiedChain | undefined;
    if (cands.length === 1) chain = verifySnpChain(cands[0]!, c.roots[cands[0]!]!, vek, supplied);
    else {
      // v2: the generation whose pinned intermediate signed this VEK (Milan first, §1.7 rule 3)
      const kind = vekKindOf(vek);
      const g = kind && cands.find((x) => pinnedIntermediateSigns(c.roots[x]!, kind, vek));
      chain = verifySnpChain(g ?? cands[0]!, c.roots[g ?? cands[0]!]!, vek, supplied);
    }
    c.chain = chain;
    c.res.chain = chain;
    c.res.generation = chain.generation;
    const r = c.report!;
    const g = chain.generation;
    c.res.tcb = {
      current: decodeTcb(r.currentTcb, g),
      reported: decodeTcb(r.reportedTcb, g),
      committed: decodeTcb(r.committedTcb, g),
      launch: decodeTcb(r.launchTcb, g),
    };
    const role = chain.kind === 'vcek' ? 'ASK' : 'ASVK';
    return `${chain.ark.subjectCn} → ${chain.intermediate.subjectCn} (${role}${chain.intermediate === c.roots[g]!.ask || chain.intermediate === c.roots[g]!.asvk ? ', pinned' : ', supplied'}) → ${chain.vek.subjectCn}`;
  },
  validity(c) {
    const now = c.o.now ?? new Date();
    const t = now.getTime();
    const ch = c.chain!;
    for (const cert of [ch.vek, ch.intermediate, ch.ark]) {
      if (t < cert.notBeforeMs || t > cert.notAfterMs) {
        const what = cert === ch.vek ? ch.kind.toUpperCase() : (cert.subjectCn ?? 'CA');
        throw new SnpError('SNP_CERT_VALIDITY', `the ${what} certificate is valid ${cert.validityText}, not at ${now.toISOString()}`);
      }
    }
    return `VEK, intermediate and ARK within their validity (${ch.kind.toUpperCase()}: ${ch.vek.validityText})`;
  },
  revocation(c) {
    const crls = (c.o.crls ?? []).map((x) => (x instanceof Uint8Array ? parseSnpCrl(x) : x));
    const out = checkRevocation(c.chain!, crls, c.o.crl ?? 'if-available', c.o.now ?? new Date());
    return out.checked ? out.detail : skip(out.detail);
  },
  signature(c) {
    if (!verifyReportSignature(c.report!, vekOf(c).publicKey)) {
      throw new SnpError('SNP_REPORT_SIGNATURE', `the report signature does not verify with the ${c.chain!.kind.toUpperCase()}'s key`);
    }
    return `valid (ECDSA P-384, ${c.chain!.kind.toUpperCase()})`;
  },
  signer(c) {
    c.binding = { report: c.report!, chain: c.chain!, ext: c.ext!, reportedTcb: c.res.tcb!.reported, allowMaskedChipId: c.o.allowMaskedChipId === true };
    if (c.o.vlekCspAllowList) c.binding.vlekCspAllowList = c.o.vlekCspAllowList;
    return checkSigner(c.binding);
  },
  'cert-profile': (c) => checkProfile(c.binding!),
  product: (c) => checkProduct(c.binding!),
  tcb: (c) => `${checkTcb(c.binding!)} (${formatTcb(c.res.tcb!.reported)})`,
  'chip-id'(c) {
    const d = checkChipId(c.binding!);
    return c.chain!.kind === 'vlek' ? skip(d) : d;
  },
  csp(c) {
    const d = checkCsp(c.binding!);
    return c.chain!.kind === 'vcek' ? skip(d) : d;
  },
  'report-data'(c) {
    const want = c.o.expectedReportData;
    if (!want) return skip('not requested');
    if (!timingSafeEqual(Buffer.from(want), c.report!.reportData)) throw new SnpError('SNP_REPORT_DATA', 'REPORT_DATA is not the expected value');
    return 'equals the expected value';
  },
  vmpl(c) {
    const want = c.o.vmpl === undefined ? 0 : c.o.vmpl;
    const got = c.report!.vmpl;
    if (want === null) return skip(`VMPL ${got} (not checked)`);
    if (got !== want) throw new SnpError('SNP_VMPL', `the report was requested at VMPL ${got}, VMPL ${want} is required`);
    return `VMPL ${got}`;
  },
  measurement(c) {
    const ms = c.o.measurements;
    const m = c.report!.measurement;
    if (!ms) return skip('not requested');
    if (!ms.some((x) => m.equals(x))) throw new SnpError('SNP_MEASUREMENT', `MEASUREMENT ${m.toString('hex')} is not one of the ${ms.length} accepted`);
    return m.toString('hex');
  },
};

const p384 = new WeakSet<SnpCertificate>();

function isP384(c: SnpCertificate): boolean {
  if (p384.has(c)) return true;
  const k = c.publicKey;
  if (k.asymmetricKeyType !== 'ec' || k.asymmetricKeyDetails?.namedCurve !== 'secp384r1') return false;
  p384.add(c);
  return true;
}

/** SNP_CHECKS with each step's function resolved once (this loop runs on every attestation). */
const ORDERED = SNP_CHECKS.map((x) => ({ ...x, run: STEPS[x.id] }));

function checkOptions(o: VerifySnpReportOptions): void {
  if (o.expectedReportData && o.expectedReportData.length !== 64)
    throw new SnpError('SNP_ARGUMENT', `expectedReportData must be 64 bytes, got ${o.expectedReportData.length}`);
  for (const m of o.measurements ?? []) if (m.length !== 48) throw new SnpError('SNP_ARGUMENT', `each measurement must be 48 bytes, got ${m.length}`);
  if (o.vmpl !== undefined && o.vmpl !== null && !(Number.isInteger(o.vmpl) && o.vmpl >= 0 && o.vmpl <= 3))
    throw new SnpError('SNP_ARGUMENT', `vmpl must be 0–3, got ${o.vmpl}`);
}

/**
 * Runs the checklist. Never throws for bad evidence (the result says why, `error` holds the first SnpError); throws
 * SnpError('SNP_ARGUMENT') for bad options, and rethrows anything that is not an SnpError (a bug).
 */
export function verifySnpReport(report: Uint8Array, options: VerifySnpReportOptions = {}): SnpVerification {
  checkOptions(options);
  const res: SnpVerification = { ok: false, checks: [] };
  const c: Ctx = { bytes: report, o: options, roots: options.roots ?? pinnedSnpRoots(), res };
  let failed: SnpError | undefined;
  for (const { step, id, title, run } of ORDERED) {
    if (failed) {
      res.checks.push({ step, id, title, status: 'not-run', detail: 'not run' });
      continue;
    }
    try {
      const out = run(c);
      res.checks.push(typeof out === 'string' ? { step, id, title, status: 'pass', detail: out } : { step, id, title, status: 'skip', detail: out[SKIP] });
    } catch (e) {
      if (!(e instanceof SnpError)) throw e;
      failed = e;
      res.checks.push({ step, id, title, status: 'fail', detail: e.message, code: e.code });
    }
  }
  res.ok = failed === undefined;
  if (failed) res.error = failed;
  return res;
}

/** verifySnpReport that throws the first failure as an SnpError (with the whole result as its cause). */
export function assertSnpReport(report: Uint8Array, options: VerifySnpReportOptions = {}): SnpVerification {
  const res = verifySnpReport(report, options);
  if (res.error) throw new SnpError(res.error.code, res.error.message, { cause: res });
  return res;
}

/** One-line summary of a parsed report (CLI headers, logs). */
export function describeSnpReport(r: SnpReport, generation?: SnpGeneration): string {
  const signer = r.keyInfo.signingKey === SigningKey.VCEK ? 'VCEK' : r.keyInfo.signingKey === SigningKey.VLEK ? 'VLEK' : `key ${r.keyInfo.signingKey}`;
  return `version ${r.version}${generation ? `, ${SNP_PRODUCT_NAME[generation]}` : ''}, signed by the ${signer}, VMPL ${r.vmpl}, policy ${hex(r.policy)}, firmware ${formatFirmware(r.currentFirmware)}`;
}
