import type { SevPolicyBitName } from './guest-policy';
import type { SnpPolicy } from './snp';

export const POLICY_VERSION = 1;

/**
 * An allow-list rule: absent (the rule does not constrain), a non-empty list, or the explicit string "any".
 * An empty list is never valid (simple-kbs read [] as "allow all"; here that must be written as "any").
 */
export type AllowList<T> = readonly T[] | 'any';

/**
 * A policy document as stored and as returned by parsePolicy: JSON-serialisable and already normalised, so
 * `parsePolicy(JSON.parse(JSON.stringify(p)))` deep-equals `p`.
 *
 * Fail-closed rules:
 * - `allowedDigests` is mandatory in every document: a policy must say which launch digests it accepts, or say "any"
 *   explicitly. Every other list rule constrains only when present.
 * - A debuggable guest (SEV policy NODBG clear) is refused unless the document sets `allowDebug: true`: with
 *   debugging on, the host reads guest memory through DBG_DECRYPT, so any released secret leaks (kbs-compat §5.2).
 * - Launch facts that the measurement cannot bind (firmware numbers above 255, reserved SEV policy bits 6–15) are
 *   refused whatever the policies say (kbs-compat §1.8 #2).
 * - An empty policy set is a refusal: at least the tenant default policy must apply.
 */
export interface Policy {
  readonly version: typeof POLICY_VERSION;
  /**
   * Launch digests (SHA-256, lowercase hex) the guest may have been launched with. Mandatory, except in a document
   * with `snp` rules (an SNP-only policy); a SEV launch checked against a document without it is refused.
   */
  readonly allowedDigests?: AllowList<string>;
  /** Exact SEV guest policy values (u32, as bound in GetBundle's policy MAC). */
  readonly allowedPolicies?: AllowList<number>;
  /** Flag bits that must be set in the SEV guest policy, normalised to names in bit order. */
  readonly requiredPolicyBits?: readonly SevPolicyBitName[];
  /** Flag bits that must be clear in the SEV guest policy. */
  readonly forbiddenPolicyBits?: readonly SevPolicyBitName[];
  /** Accept guests launched without NODBG. Absent or false: refuse them. */
  readonly allowDebug?: boolean;
  /**
   * Minimum firmware API version. (major, minor) are compared lexicographically, so 1.0 satisfies a minimum of 0.17;
   * simple-kbs compared each number separately and refused 1.0 there. `minFwApiMinor` needs `minFwApiMajor`.
   */
  readonly minFwApiMajor?: number;
  readonly minFwApiMinor?: number;
  /** Firmware build ids (0..255). */
  readonly allowedBuildIds?: AllowList<number>;
  /** Chip identities (CEK public key hash or chip id, as the broker renders them; compared exactly). */
  readonly allowedChips?: AllowList<string>;
  /** Refuse once this many releases under this policy have happened (0 revokes every further release). */
  readonly maxReleases?: number;
  /** Validity window, inclusive at both ends, normalised to UTC `YYYY-MM-DDThh:mm:ss.sssZ`. */
  readonly notBefore?: string;
  readonly notAfter?: string;
  /**
   * Accepted for documents written by earlier versions, which set it on policies converted from simple-kbs; it has no
   * effect. The firmware minimum is always compared as a version, (major, minor), the minor only when the majors are
   * equal — exactly as simple-kbs's policy.rs does.
   */
  readonly simpleKbsCompat?: boolean;
  /** SEV-SNP rules (snp.ts); an SNP launch checked against a document without them is refused. */
  readonly snp?: SnpPolicy;
}

/** The fields of a version-1 document, in their normal order. */
export const POLICY_FIELDS = [
  'version',
  'allowedDigests',
  'allowedPolicies',
  'requiredPolicyBits',
  'forbiddenPolicyBits',
  'allowDebug',
  'minFwApiMajor',
  'minFwApiMinor',
  'allowedBuildIds',
  'allowedChips',
  'maxReleases',
  'notBefore',
  'notAfter',
  'simpleKbsCompat',
  'snp',
] as const satisfies readonly (keyof Policy)[];
