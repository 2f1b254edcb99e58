import { SnpError } from './errors';
import { ReportOffset as O, SNP_REPORT_SIZE } from './report';
import type { SnpEvidenceCertificates } from './verify';

/**
 * Trustee's JSON evidence for SNP (`SnpEvidence`, ../shared/specs/snp-attestation.md §4.5):
 * `{ "attestation_report": {…virtee/sev's serde form…}, "cert_chain": [{ "cert_type": "VCEK", "data": [bytes] }] | null }`.
 * The report is not raw bytes there: it is rebuilt field by field at the offsets of §1.2, TCBs in the generation's
 * layout (§1.6: `fmc` null → Milan/Genoa, a number → Turin), firmware versions as build/minor/major bytes, and every
 * reserved byte zero. Rebuilding ../shared/vectors/snp/trustee/evidence.json gives exactly
 * derived/trustee-evidence-report-rebuilt.bin, whose signature verifies.
 */
type Json = Record<string, unknown>;

const fail = (why: string): never => {
  throw new SnpError('SNP_EVIDENCE_FORMAT', `SNP evidence JSON: ${why}`);
};

function obj(v: unknown, what: string): Json {
  return typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Json) : fail(`${what} must be an object`);
}

function uint(v: unknown, what: string, max: number): number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0 && v <= max ? v : fail(`${what} must be an integer 0–${max}`);
}

function bytes(v: unknown, what: string, n: number): Buffer {
  if (!Array.isArray(v) || v.length !== n || !v.every((x) => Number.isInteger(x) && x >= 0 && x <= 255)) fail(`${what} must be an array of ${n} bytes`);
  return Buffer.from(v as number[]);
}

function tcb(v: unknown, what: string): Buffer {
  const t = obj(v, what);
  const b = Buffer.alloc(8);
  const c = (k: string) => uint(t[k], `${what}.${k}`, 255);
  if (t.fmc === null || t.fmc === undefined) {
    b[0] = c('bootloader');
    b[1] = c('tee');
    b[6] = c('snp');
    b[7] = c('microcode');
  } else {
    b[0] = c('fmc');
    b[1] = c('bootloader');
    b[2] = c('tee');
    b[3] = c('snp');
    b[7] = c('microcode');
  }
  return b;
}

/** The 1184 report bytes described by trustee's `attestation_report` object (signature included). */
export function snpReportFromJson(value: unknown): Buffer {
  const r = obj(value, 'attestation_report');
  const b = Buffer.alloc(SNP_REPORT_SIZE);
  const version = uint(r.version, 'version', 0xffffffff);
  b.writeUInt32LE(version, O.VERSION);
  b.writeUInt32LE(uint(r.guest_svn, 'guest_svn', 0xffffffff), O.GUEST_SVN);
  // u64 fields arrive as JSON numbers: every defined bit is below 2^53, larger values cannot be represented exactly
  b.writeBigUInt64LE(BigInt(uint(r.policy, 'policy', Number.MAX_SAFE_INTEGER)), O.POLICY);
  bytes(r.family_id, 'family_id', 16).copy(b, O.FAMILY_ID);
  bytes(r.image_id, 'image_id', 16).copy(b, O.IMAGE_ID);
  b.writeUInt32LE(uint(r.vmpl, 'vmpl', 0xffffffff), O.VMPL);
  b.writeUInt32LE(uint(r.sig_algo, 'sig_algo', 0xffffffff), O.SIGNATURE_ALGO);
  tcb(r.current_tcb, 'current_tcb').copy(b, O.CURRENT_TCB);
  b.writeBigUInt64LE(BigInt(uint(r.plat_info, 'plat_info', Number.MAX_SAFE_INTEGER)), O.PLATFORM_INFO);
  b.writeUInt32LE(uint(r.key_info, 'key_info', 0xffffffff), O.KEY_INFO);
  bytes(r.report_data, 'report_data', 64).copy(b, O.REPORT_DATA);
  bytes(r.measurement, 'measurement', 48).copy(b, O.MEASUREMENT);
  bytes(r.host_data, 'host_data', 32).copy(b, O.HOST_DATA);
  bytes(r.id_key_digest, 'id_key_digest', 48).copy(b, O.ID_KEY_DIGEST);
  bytes(r.author_key_digest, 'author_key_digest', 48).copy(b, O.AUTHOR_KEY_DIGEST);
  bytes(r.report_id, 'report_id', 32).copy(b, O.REPORT_ID);
  bytes(r.report_id_ma, 'report_id_ma', 32).copy(b, O.REPORT_ID_MA);
  tcb(r.reported_tcb, 'reported_tcb').copy(b, O.REPORTED_TCB);
  if (r.cpuid_fam_id !== null && r.cpuid_fam_id !== undefined) {
    b[O.CPUID_FAM_ID] = uint(r.cpuid_fam_id, 'cpuid_fam_id', 255);
    b[O.CPUID_MOD_ID] = uint(r.cpuid_mod_id, 'cpuid_mod_id', 255);
    b[O.CPUID_STEP] = uint(r.cpuid_step, 'cpuid_step', 255);
  }
  bytes(r.chip_id, 'chip_id', 64).copy(b, O.CHIP_ID);
  tcb(r.committed_tcb, 'committed_tcb').copy(b, O.COMMITTED_TCB);
  for (const [k, off] of [
    ['current', O.CURRENT_BUILD],
    ['committed', O.COMMITTED_BUILD],
  ] as const) {
    const v = obj(r[k], k);
    b[off] = uint(v.build, `${k}.build`, 255);
    b[off + 1] = uint(v.minor, `${k}.minor`, 255);
    b[off + 2] = uint(v.major, `${k}.major`, 255);
  }
  tcb(r.launch_tcb, 'launch_tcb').copy(b, O.LAUNCH_TCB);
  for (const [k, off] of [
    ['launch_mit_vector', O.LAUNCH_MIT_VECTOR],
    ['current_mit_vector', O.CURRENT_MIT_VECTOR],
  ] as const) {
    if (r[k] !== null && r[k] !== undefined) b.writeBigUInt64LE(BigInt(uint(r[k], k, Number.MAX_SAFE_INTEGER)), off);
  }
  const sig = obj(r.signature, 'signature');
  bytes(sig.r, 'signature.r', 72).copy(b, O.SIGNATURE_R);
  bytes(sig.s, 'signature.s', 72).copy(b, O.SIGNATURE_S);
  return b;
}

const ROLE: Record<string, keyof SnpEvidenceCertificates> = { VCEK: 'vcek', VLEK: 'vlek', ASK: 'ask', ASVK: 'asvk', ARK: 'ark' };

/** The report bytes and the certificates (first of each role, as trustee uses them) of an SnpEvidence document. */
export function parseSnpEvidenceJson(value: unknown): { report: Buffer; certificates: SnpEvidenceCertificates } {
  const e = obj(typeof value === 'string' || Buffer.isBuffer(value) ? parseJson(value) : value, 'evidence');
  const report = snpReportFromJson(e.attestation_report);
  const certificates: SnpEvidenceCertificates = {};
  if (e.cert_chain !== null && e.cert_chain !== undefined) {
    if (!Array.isArray(e.cert_chain)) fail('cert_chain must be an array or null');
    for (const [i, item] of (e.cert_chain as unknown[]).entries()) {
      const c = obj(item, `cert_chain[${i}]`);
      const role = typeof c.cert_type === 'string' ? ROLE[c.cert_type] : undefined;
      if (!role || certificates[role]) continue; // other types (e.g. CRL, OTHER) and later duplicates are not used
      if (!Array.isArray(c.data) || !c.data.every((x) => Number.isInteger(x) && x >= 0 && x <= 255)) fail(`cert_chain[${i}].data must be an array of bytes`);
      certificates[role] = Buffer.from(c.data as number[]);
    }
  }
  return { report, certificates };
}

function parseJson(v: string | Buffer): unknown {
  try {
    return JSON.parse(v.toString());
  } catch (e) {
    throw new SnpError('SNP_EVIDENCE_FORMAT', `SNP evidence is not JSON: ${(e as Error).message}`, { cause: e });
  }
}
