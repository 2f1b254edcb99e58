/**
 * The SEV guest policy (AMD SEV API, "Guest Policy"; AMDESE/sev-tool `enum SEV_POLICY`): a little-endian u32 with
 * flags in bits 0–5, bits 6–15 reserved (must be zero), API_MAJOR in bits 16–23 and API_MINOR in bits 24–31 (the
 * minimum firmware the PSP will launch the guest on).
 */
export const SEV_POLICY_BITS = {
  NODBG: 0x01, // debugging (DBG_DECRYPT/DBG_ENCRYPT) is disallowed
  NOKS: 0x02, // key sharing with other guests is disallowed
  ES: 0x04, // SEV-ES is required
  NOSEND: 0x08, // sending the guest to another platform is disallowed
  DOMAIN: 0x10, // the guest may only be sent within its domain
  SEV: 0x20, // the guest may only be sent to SEV-capable platforms
} as const;

export type SevPolicyBitName = keyof typeof SEV_POLICY_BITS;

export const SEV_POLICY_BIT_NAMES = Object.keys(SEV_POLICY_BITS) as readonly SevPolicyBitName[];

export const SEV_POLICY_FLAGS_MASK = 0x0000_003f;
export const SEV_POLICY_RESERVED_MASK = 0x0000_ffc0;

export function isSevPolicyBitName(s: string): s is SevPolicyBitName {
  return Object.prototype.hasOwnProperty.call(SEV_POLICY_BITS, s);
}

export function maskOf(names: readonly SevPolicyBitName[]): number {
  return names.reduce((m, n) => m | SEV_POLICY_BITS[n], 0);
}

/** Names of the flags set in `mask`, in bit order (the normal form a parsed policy stores). */
export function namesOf(mask: number): SevPolicyBitName[] {
  return SEV_POLICY_BIT_NAMES.filter((n) => (mask & SEV_POLICY_BITS[n]) !== 0);
}

export function hex32(n: number): string {
  return `0x${(n >>> 0).toString(16)}`;
}
