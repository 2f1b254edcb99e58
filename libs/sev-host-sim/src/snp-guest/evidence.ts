import { generationFromCpuid, parseSnpReport, ReportOffset as O } from '@kb/sev';

/**
 * SNP evidence as the guest-components SNP attester sends it (../shared/specs/kbs-protocol.md §9.1–§9.2): the
 * report as virtee/sev 6.3.1 serialises it — members in the struct's order, byte fields as integer arrays, TCBs as
 * {fmc, bootloader, tee, snp, microcode} in the generation's layout, firmware versions {major, minor, build},
 * CPUID members null on v2, mitigation vectors null below v5 — and `cert_chain` from the host's certificate table.
 */
export type SnpCertType = 'ARK' | 'ASK' | 'VCEK' | 'VLEK' | 'CRL';

export interface SnpCertTableEntry {
  type: SnpCertType;
  data: Uint8Array;
}

const arr = (b: Uint8Array) => Array.from(b);

export function snpEvidenceJson(report: Uint8Array, certTable: readonly SnpCertTableEntry[] | null = null): Record<string, unknown> {
  const r = parseSnpReport(report);
  const b = r.raw;
  // Turin layout when the CPUID says Turin, or (v2) when CHIP_ID has only 8 significant bytes (§9.2)
  const turin = r.cpuid ? generationFromCpuid(r.cpuid.family, r.cpuid.model) === 'turin' : b.subarray(O.CHIP_ID + 8, O.CHIP_ID + 64).every((x) => x === 0);
  const tcb = (off: number) => {
    const t = b.subarray(off, off + 8);
    return turin
      ? { fmc: t[0], bootloader: t[1], tee: t[2], snp: t[3], microcode: t[7] }
      : { fmc: null, bootloader: t[0], tee: t[1], snp: t[6], microcode: t[7] };
  };
  const num = (v: bigint) => {
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new RangeError('a u64 report field above 2^53 cannot be written as a JSON number losslessly');
    return Number(v);
  };
  const ver = (off: number) => ({ major: b[off + 2], minor: b[off + 1], build: b[off] });
  return {
    attestation_report: {
      version: r.version,
      guest_svn: r.guestSvn,
      policy: num(r.policy),
      family_id: arr(r.familyId),
      image_id: arr(r.imageId),
      vmpl: r.vmpl,
      sig_algo: r.signatureAlgo,
      current_tcb: tcb(O.CURRENT_TCB),
      plat_info: num(r.platformInfo),
      key_info: r.keyInfo.raw,
      report_data: arr(r.reportData),
      measurement: arr(r.measurement),
      host_data: arr(r.hostData),
      id_key_digest: arr(r.idKeyDigest),
      author_key_digest: arr(r.authorKeyDigest),
      report_id: arr(r.reportId),
      report_id_ma: arr(r.reportIdMa),
      reported_tcb: tcb(O.REPORTED_TCB),
      cpuid_fam_id: r.cpuid ? r.cpuid.family : null,
      cpuid_mod_id: r.cpuid ? r.cpuid.model : null,
      cpuid_step: r.cpuid ? r.cpuid.stepping : null,
      chip_id: arr(r.chipId),
      committed_tcb: tcb(O.COMMITTED_TCB),
      current: ver(O.CURRENT_BUILD),
      committed: ver(O.COMMITTED_BUILD),
      launch_tcb: tcb(O.LAUNCH_TCB),
      launch_mit_vector: r.launchMitVector === undefined ? null : num(r.launchMitVector),
      current_mit_vector: r.currentMitVector === undefined ? null : num(r.currentMitVector),
      signature: { r: arr(r.signature.r), s: arr(r.signature.s) },
    },
    cert_chain: certTable === null ? null : certTable.map((c) => ({ cert_type: c.type, data: arr(c.data) })),
  };
}
