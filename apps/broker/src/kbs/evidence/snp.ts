/**
 * SNP evidence at /attest (../shared/specs/kbs-protocol.md §9): the attester's JSON rebuilt into report bytes, then
 * the full checklist of snp-attestation.md §5.2 with verifySnpReport — signature, chain to the pinned AMD roots (a
 * certificate from the evidence is never a root), TCB against the VEK, chip id, VMPL 0 and all 64 REPORT_DATA bytes
 * against the binding (§4.3) — and HOST_DATA against init-data when the guest sent it (§11).
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { decodeTcb, isSnpError, parseSnpEvidenceJson, parseSnpReport, verifySnpReport, type SnpRoots, type SnpTcb, type SnpVerification } from '@kb/sev';
import type { CertificateSource } from '../certificate-source';
import { KbsError } from '../errors';

export interface SnpEvidenceOptions {
  certificates: CertificateSource;
  /** default AMD's pinned roots; a synthetic set only by explicit configuration */
  roots?: SnpRoots;
  allowV2Reports?: boolean;
  now: Date;
}

export interface VerifiedSnpEvidence {
  verification: SnpVerification;
  claims: Record<string, unknown>;
  hostDataHex: string;
  reportDataHex: string;
}

const INIT_DATA_ALGORITHMS: Record<string, string> = { sha256: 'sha256', sha384: 'sha384', sha512: 'sha512' };

/** §11: the digest of the init-data body text as received, by the `algorithm` the TOML document names. */
export function initDataDigest(initData: { format: string; body: string }): Buffer {
  if (initData.format !== 'toml') throw new KbsError('AttestationError', `init-data format ${JSON.stringify(initData.format)} (only toml)`);
  const m = /^\s*algorithm\s*=\s*"([A-Za-z0-9]+)"\s*(#.*)?$/m.exec(initData.body);
  const alg = m && INIT_DATA_ALGORITHMS[m[1]!.toLowerCase()];
  if (!alg) throw new KbsError('AttestationError', 'init-data names no supported algorithm (sha256, sha384, sha512)');
  return createHash(alg).update(initData.body, 'utf8').digest();
}

export async function verifySnpEvidence(
  evidence: unknown,
  expectedReportData: Buffer,
  initData: { format: string; body: string } | null,
  o: SnpEvidenceOptions,
): Promise<VerifiedSnpEvidence> {
  let parsed: ReturnType<typeof parseSnpEvidenceJson>;
  try {
    parsed = parseSnpEvidenceJson(evidence);
  } catch (e) {
    throw new KbsError('AttestationError', isSnpError(e) ? `${e.code}: ${e.message}` : `SNP evidence: ${(e as Error).message}`, undefined, { cause: e });
  }
  let certificates = parsed.certificates;
  let crls: readonly Uint8Array[] | undefined;
  if (!certificates.vcek && !certificates.vlek) {
    let report;
    try {
      report = parseSnpReport(parsed.report);
    } catch (e) {
      throw new KbsError('AttestationError', `SNP report: ${(e as Error).message}`, undefined, { cause: e });
    }
    const found = await o.certificates.certificatesFor(report, certificates);
    if (!found) throw new KbsError('AttestationError', 'SNP evidence carries no VCEK/VLEK and the certificate source knows none for this chip and TCB');
    certificates = { ...found, ...Object.fromEntries(Object.entries(certificates).filter(([, v]) => v !== undefined)) };
    crls = await o.certificates.crls?.(report);
  }
  const verification = verifySnpReport(parsed.report, {
    certificates,
    ...(crls ? { crls } : {}),
    now: o.now,
    ...(o.roots ? { roots: o.roots } : {}),
    ...(o.allowV2Reports ? { allowV2Reports: true } : {}),
    expectedReportData,
    vmpl: 0,
  });
  if (!verification.ok || !verification.report) {
    const err = verification.error;
    throw new KbsError('AttestationError', err ? `${err.code}: ${err.message}` : 'SNP report did not verify', undefined, { cause: err });
  }
  const r = verification.report;
  if (initData) {
    const want = Buffer.alloc(32);
    initDataDigest(initData).copy(want, 0, 0, 32);
    if (!timingSafeEqual(want, r.hostData)) throw new KbsError('AttestationError', 'HOST_DATA is not the digest of the init-data sent');
  }
  const reported: SnpTcb = verification.tcb?.reported ?? decodeTcb(r.reportedTcb, verification.generation ?? 'milan');
  const policy = r.policy;
  const bit = (n: number) => ((policy >> BigInt(n)) & 1n) === 1n;
  // §9.6: trustee's claim names, so attestation-token consumers written for trustee read ours
  const claims = {
    policy_abi_major: Number((policy >> 8n) & 0xffn),
    policy_abi_minor: Number(policy & 0xffn),
    policy_smt_allowed: bit(16),
    policy_migrate_ma: bit(18),
    policy_debug_allowed: bit(19),
    policy_single_socket: bit(20),
    reported_tcb_bootloader: reported.bootloader,
    reported_tcb_tee: reported.tee,
    reported_tcb_snp: reported.snp,
    reported_tcb_microcode: reported.microcode,
    ...(reported.fmc !== undefined && reported.fmc !== null ? { reported_tcb_fmc: reported.fmc } : {}),
    platform_tsme_enabled: ((r.platformInfo >> 1n) & 1n) === 1n,
    platform_smt_enabled: (r.platformInfo & 1n) === 1n,
    measurement: r.measurement.toString('hex'),
    report_data: r.reportData.toString('hex'),
    init_data: r.hostData.toString('hex'),
    chip_id: r.chipId.toString('hex'),
    vmpl: r.vmpl,
    generation: verification.generation ?? null,
    signer: verification.chain?.kind ?? null,
  };
  return { verification, claims, hostDataHex: r.hostData.toString('hex'), reportDataHex: r.reportData.toString('hex') };
}
