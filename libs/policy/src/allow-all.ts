import type { AllowList, Policy } from './policy';

function unconstrained(list: AllowList<unknown> | undefined): boolean {
  return list === undefined || list === 'any';
}

/**
 * Whether the policy accepts every launch whatever was launched: any digest, any SEV policy (debugging included),
 * any firmware. The broker warns at start-up when the tenant default is such a policy (simple-kbs ships one).
 * allowedChips, the validity window and maxReleases are not considered: they limit where and when, not what runs in
 * the guest, so a policy constrained only by them still releases secrets to any code the host chooses to launch.
 */
export function isAllowAll(policy: Policy): boolean {
  return (
    policy.allowedDigests === 'any' &&
    unconstrained(policy.allowedPolicies) &&
    policy.requiredPolicyBits === undefined &&
    policy.forbiddenPolicyBits === undefined &&
    policy.allowDebug === true &&
    (policy.minFwApiMajor ?? 0) === 0 &&
    (policy.minFwApiMinor ?? 0) === 0 &&
    unconstrained(policy.allowedBuildIds)
  );
}
