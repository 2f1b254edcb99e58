export { PolicyError, isPolicyError, type PolicyErrorCode } from './errors';
export { SEV_POLICY_BITS, SEV_POLICY_BIT_NAMES, SEV_POLICY_FLAGS_MASK, SEV_POLICY_RESERVED_MASK, type SevPolicyBitName } from './guest-policy';
export { LAUNCH_DIGEST_BYTES } from './launch-digest';
export { POLICY_FIELDS, POLICY_VERSION, type AllowList, type Policy } from './policy';
export { parsePolicy } from './parse-policy';
export type { LaunchFacts, SnpFacts } from './launch-facts';
export {
  SNP_MEASUREMENT_BYTES,
  SNP_POLICY_BITS,
  SNP_POLICY_FIELDS,
  SNP_TCB_COMPONENTS,
  parseSnpPolicy,
  type SnpLaunchFacts,
  type SnpPolicy,
  type SnpTcbComponent,
} from './snp';
export { FACTS_POLICY, POLICY_KINDS, POLICY_SET_POLICY, evaluate, type NamedPolicy, type PolicyKind, type Refusal, type Verdict } from './evaluate';
export { fromSimpleKbsPolicy, type SimpleKbsPolicyRow } from './simple-kbs';
export { isAllowAll } from './allow-all';
