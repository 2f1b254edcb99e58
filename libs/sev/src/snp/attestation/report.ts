import { SnpError } from './errors';

/**
 * The SEV-SNP ATTESTATION_REPORT (../shared/specs/snp-attestation.md §1.2): 1184 bytes, little-endian integers, the
 * signature over bytes 0x000–0x29F. Versions 2, 3/4 and 5 share one table; fields a version lacks are reserved there
 * (v2: no CPUID bytes; v2–v4: no mitigation vectors) and are returned as undefined.
 *
 * Parsing interprets nothing and rejects nothing but the size: the MBZ rules, version and algorithm checks are
 * separate steps of the checklist (§5.2) so each failure gets its own code. The original bytes are kept and hashed as
 * received (§1.8: never re-serialise).
 */
export const SNP_REPORT_SIZE = 0x4a0;
export const SNP_SIGNED_SIZE = 0x2a0;

/** Field offsets (§1.2). */
export const ReportOffset = {
  VERSION: 0x000,
  GUEST_SVN: 0x004,
  POLICY: 0x008,
  FAMILY_ID: 0x010,
  IMAGE_ID: 0x020,
  VMPL: 0x030,
  SIGNATURE_ALGO: 0x034,
  CURRENT_TCB: 0x038,
  PLATFORM_INFO: 0x040,
  KEY_INFO: 0x048,
  REPORT_DATA: 0x050,
  MEASUREMENT: 0x090,
  HOST_DATA: 0x0c0,
  ID_KEY_DIGEST: 0x0e0,
  AUTHOR_KEY_DIGEST: 0x110,
  REPORT_ID: 0x140,
  REPORT_ID_MA: 0x160,
  REPORTED_TCB: 0x180,
  CPUID_FAM_ID: 0x188,
  CPUID_MOD_ID: 0x189,
  CPUID_STEP: 0x18a,
  CHIP_ID: 0x1a0,
  COMMITTED_TCB: 0x1e0,
  CURRENT_BUILD: 0x1e8,
  COMMITTED_BUILD: 0x1ec,
  LAUNCH_TCB: 0x1f0,
  LAUNCH_MIT_VECTOR: 0x1f8,
  CURRENT_MIT_VECTOR: 0x200,
  SIGNATURE_R: 0x2a0,
  SIGNATURE_S: 0x2e8,
  SIGNATURE_RESERVED: 0x330,
} as const;

/** SIGNING_KEY values of KEY_INFO bits 4:2 (§1.5). */
export const SigningKey = { VCEK: 0, VLEK: 1, NONE: 7 } as const;

export interface SnpFirmwareVersion {
  major: number;
  minor: number;
  build: number;
}

export interface SnpReport {
  version: number;
  guestSvn: number;
  /** u64 guest policy (§1.3) */
  policy: bigint;
  familyId: Buffer;
  imageId: Buffer;
  vmpl: number;
  signatureAlgo: number;
  /** u64 (§1.4) */
  platformInfo: bigint;
  keyInfo: { raw: number; authorKeyEn: boolean; maskChipKey: boolean; signingKey: number };
  reportData: Buffer;
  measurement: Buffer;
  hostData: Buffer;
  idKeyDigest: Buffer;
  authorKeyDigest: Buffer;
  reportId: Buffer;
  reportIdMa: Buffer;
  /** TCB_VERSION bytes; decode with decodeTcb once the generation is known (§1.6) */
  currentTcb: Buffer;
  reportedTcb: Buffer;
  committedTcb: Buffer;
  launchTcb: Buffer;
  /** v3+ only */
  cpuid?: { family: number; model: number; stepping: number };
  chipId: Buffer;
  currentFirmware: SnpFirmwareVersion;
  committedFirmware: SnpFirmwareVersion;
  /** v5+ only */
  launchMitVector?: bigint;
  currentMitVector?: bigint;
  /** 72 bytes each, little-endian (§2) */
  signature: { r: Buffer; s: Buffer };
  /** the 1184 bytes as received (a private copy) */
  raw: Buffer;
}

// plain byte arithmetic: Buffer's read methods validate their arguments on every call, and this runs per attestation
const u32 = (b: Buffer, o: number): number => (b[o]! | (b[o + 1]! << 8) | (b[o + 2]! << 16) | (b[o + 3]! << 24)) >>> 0;
const u64 = (b: Buffer, o: number): bigint => {
  const hi = u32(b, o + 4);
  return hi === 0 ? BigInt(u32(b, o)) : (BigInt(hi) << 32n) | BigInt(u32(b, o));
};

export function parseSnpReport(bytes: Uint8Array): SnpReport {
  if (bytes.length !== SNP_REPORT_SIZE) {
    throw new SnpError('SNP_REPORT_SIZE', `an SNP attestation report is ${SNP_REPORT_SIZE} bytes, got ${bytes.length}`);
  }
  const b = Buffer.from(bytes); // private copy: callers cannot change what was checked
  const O = ReportOffset;
  const slice = (off: number, len: number) => b.subarray(off, off + len);
  const version = u32(b, O.VERSION);
  const keyInfo = u32(b, O.KEY_INFO);
  const fw = (off: number): SnpFirmwareVersion => ({ build: b[off]!, minor: b[off + 1]!, major: b[off + 2]! });
  return {
    version,
    guestSvn: u32(b, O.GUEST_SVN),
    policy: u64(b, O.POLICY),
    familyId: slice(O.FAMILY_ID, 16),
    imageId: slice(O.IMAGE_ID, 16),
    vmpl: u32(b, O.VMPL),
    signatureAlgo: u32(b, O.SIGNATURE_ALGO),
    platformInfo: u64(b, O.PLATFORM_INFO),
    keyInfo: { raw: keyInfo, authorKeyEn: (keyInfo & 1) === 1, maskChipKey: (keyInfo & 2) === 2, signingKey: (keyInfo >>> 2) & 7 },
    reportData: slice(O.REPORT_DATA, 64),
    measurement: slice(O.MEASUREMENT, 48),
    hostData: slice(O.HOST_DATA, 32),
    idKeyDigest: slice(O.ID_KEY_DIGEST, 48),
    authorKeyDigest: slice(O.AUTHOR_KEY_DIGEST, 48),
    reportId: slice(O.REPORT_ID, 32),
    reportIdMa: slice(O.REPORT_ID_MA, 32),
    currentTcb: slice(O.CURRENT_TCB, 8),
    reportedTcb: slice(O.REPORTED_TCB, 8),
    committedTcb: slice(O.COMMITTED_TCB, 8),
    launchTcb: slice(O.LAUNCH_TCB, 8),
    ...(version >= 3 ? { cpuid: { family: b[O.CPUID_FAM_ID]!, model: b[O.CPUID_MOD_ID]!, stepping: b[O.CPUID_STEP]! } } : {}),
    chipId: slice(O.CHIP_ID, 64),
    currentFirmware: fw(O.CURRENT_BUILD),
    committedFirmware: fw(O.COMMITTED_BUILD),
    ...(version >= 5 ? { launchMitVector: u64(b, O.LAUNCH_MIT_VECTOR), currentMitVector: u64(b, O.CURRENT_MIT_VECTOR) } : {}),
    signature: { r: slice(O.SIGNATURE_R, 72), s: slice(O.SIGNATURE_S, 72) },
    raw: b,
  };
}

/** `1.55.29` (printed major.minor.build; stored build, minor, major — §1.2 note). */
export function formatFirmware(v: SnpFirmwareVersion): string {
  return `${v.major}.${v.minor}.${v.build}`;
}

/** Reports in text form (virtee/sev's report_milan.hex): hex digits only, whitespace ignored. Undefined if not hex. */
export function decodeHexReport(text: string): Buffer | undefined {
  const s = text.replace(/\s+/g, '');
  if (s.length !== SNP_REPORT_SIZE * 2 || !/^[0-9a-fA-F]+$/.test(s)) return undefined;
  return Buffer.from(s, 'hex');
}
