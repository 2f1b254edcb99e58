import { SevError } from '../errors';

/**
 * SEV guest policy (SEV API "Guest Policy", virtee sev `launch::sev::PolicyFlags`). Bits 6–15 are reserved,
 * bits 16–23 hold the minimum firmware API major version and bits 24–31 the minor version.
 */
export const PolicyFlag = {
  NODBG: 0x01,
  NOKS: 0x02,
  ES: 0x04,
  NOSEND: 0x08,
  DOMAIN: 0x10,
  SEV: 0x20,
} as const;
export type PolicyFlagName = keyof typeof PolicyFlag;

const FLAGS_MASK = 0x3f;

/**
 * The 4 policy bytes the session MACs cover, encoded as the sev crate does (`Policy::from(u32)` then `bytes()`):
 * it keeps only the 6 flag bits and splits the minimum-firmware byte into nibbles. The firmware MACs the raw LE u32,
 * so the two agree only when no bit outside the flags is set; any other policy is refused rather than silently
 * producing a launch blob whose policy MAC the firmware rejects at LAUNCH_START.
 */
export function policyBytes(policy: number): Buffer {
  assertRepresentablePolicy(policy);
  return Buffer.from([policy & FLAGS_MASK, 0, (policy >>> 20) & 0x0f, (policy >>> 16) & 0x0f]);
}

export function assertPolicyRange(policy: number): void {
  if (!Number.isInteger(policy) || policy < 0 || policy > 0xffffffff) {
    throw new SevError('ERR_SEV_RANGE', `a guest policy is a 32-bit unsigned integer, got ${policy}`);
  }
}

/** Refuses (ERR_SEV_POLICY) any policy the broker cannot serve; see policyBytes. */
export function assertRepresentablePolicy(policy: number): void {
  assertPolicyRange(policy);
  if ((policy & ~FLAGS_MASK) !== 0) {
    throw new SevError(
      'ERR_SEV_POLICY',
      `guest policy 0x${policy.toString(16)} sets bits outside the flags (0x3f): the sev crate encoding simple-kbs ` +
        'uses would MAC different policy bytes than the firmware, so LAUNCH_START would fail',
    );
  }
}

/** Human-readable policy for logs; describes any 32-bit value, including ones policyBytes refuses. */
export function describePolicy(policy: number): string[] {
  const p = policy >>> 0;
  const out: string[] = (Object.keys(PolicyFlag) as PolicyFlagName[]).filter((name) => (p & PolicyFlag[name]) !== 0);
  const reserved = p & 0xffc0;
  if (reserved !== 0) out.push(`RESERVED(0x${reserved.toString(16)})`);
  const major = (p >>> 16) & 0xff;
  const minor = (p >>> 24) & 0xff;
  if (major !== 0 || minor !== 0) out.push(`API>=${major}.${minor}`);
  return out;
}
