import { ReportOffset as O, type SnpReport } from './report';

/**
 * Must-be-zero rules of a report (../shared/specs/snp-attestation.md §1.8, checklist step 3), as GSG enforces them
 * at parse time plus the broker's two additions: 0x1F8–0x207 on v2–v4, and the upper 24 bytes of R and S (only 48
 * bytes are significant for P-384). The signature padding and R/S upper bytes are outside the signed integers, so
 * only this check catches changes there. PLATFORM_INFO is deliberately not checked (the real Turin v5 report sets
 * bit 6, §1.4). Returns the first violation in offset order, or undefined.
 */
const ZEROS = Buffer.alloc(0x4a0);

/** True when bytes [from, to) of `b` are all zero (a native compare: this runs on every attestation). */
export function isZeroRange(b: Buffer, from: number, to: number): boolean {
  return b.compare(ZEROS, 0, to - from, from, to) === 0;
}

export function reservedViolation(r: SnpReport): string | undefined {
  const b = r.raw;
  const zero = (from: number, to: number, what: string): string | undefined => {
    if (isZeroRange(b, from, to)) return undefined;
    for (let i = from; i < to; i++)
      if (b[i] !== 0)
        return `${what} (0x${from.toString(16)}–0x${(to - 1).toString(16)}) must be zero; byte 0x${i.toString(16)} is 0x${b[i]!.toString(16).padStart(2, '0')}`;
    return undefined;
  };
  if ((r.policy & (1n << 17n)) === 0n) return 'POLICY bit 17 (reserved) must be 1';
  if (r.policy >> 26n !== 0n) return `POLICY bits 26–63 must be zero (policy 0x${r.policy.toString(16)})`;
  if (r.keyInfo.raw >>> 5 !== 0) return `KEY_INFO bits 5–31 must be zero (key_info 0x${r.keyInfo.raw.toString(16)})`;
  if (r.keyInfo.signingKey >= 2 && r.keyInfo.signingKey <= 6) return `KEY_INFO SIGNING_KEY ${r.keyInfo.signingKey} is reserved (0 VCEK, 1 VLEK, 7 none)`;
  return (
    zero(0x04c, 0x050, 'reserved after KEY_INFO') ??
    (r.version >= 3 ? zero(0x18b, 0x1a0, 'reserved after CPUID') : zero(0x188, 0x1a0, 'reserved (v2: no CPUID bytes)')) ??
    zero(0x1eb, 0x1ec, 'reserved after CURRENT_MAJOR') ??
    zero(0x1ef, 0x1f0, 'reserved after COMMITTED_MAJOR') ??
    (r.version >= 5 ? undefined : zero(O.LAUNCH_MIT_VECTOR, 0x208, `reserved in v${r.version} (mitigation vectors are v5+)`)) ??
    zero(0x208, 0x2a0, 'reserved tail of the signed area') ??
    zero(0x2d0, 0x2e8, 'upper 24 bytes of SIGNATURE.R') ??
    zero(0x318, 0x330, 'upper 24 bytes of SIGNATURE.S') ??
    (r.signatureAlgo === 1 ? zero(O.SIGNATURE_RESERVED, 0x4a0, 'signature padding') : undefined)
  );
}
