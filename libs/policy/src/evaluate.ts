import { isPolicyError } from './errors';
import { plural, show, showList } from './describe';
import { SEV_POLICY_BITS, hex32, maskOf, namesOf } from './guest-policy';
import { checkFacts, type CheckedFacts, type LaunchFacts, type SnpFacts } from './launch-facts';
import { parsePolicy } from './parse-policy';
import type { Policy } from './policy';
import { snpRefusals } from './snp';

export const POLICY_KINDS = ['tenant-default', 'keyset', 'secret', 'resource', 'report-key', 'connection'] as const;
export type PolicyKind = (typeof POLICY_KINDS)[number];

export interface NamedPolicy {
  readonly name: string;
  readonly kind: PolicyKind;
  readonly policy: Policy;
}

/** Refusals not attributable to one policy use these pseudo-policy names. */
export const FACTS_POLICY = '(launch facts)';
export const POLICY_SET_POLICY = '(policy set)';

/**
 * One reason a release was refused, for the owner's audit log only: it is precise on purpose and must never be sent to
 * the host (kbs-compat §1.8 #4, §5.4). `rule` is the policy field that refused (`document` when the stored document
 * itself is invalid), or the fact name when `policy` is FACTS_POLICY.
 */
export interface Refusal {
  readonly policy: string;
  readonly kind?: PolicyKind;
  readonly rule: string;
  readonly reason: string;
}

export type Verdict = { readonly allowed: true } | { readonly allowed: false; readonly refusals: readonly Refusal[] };

/**
 * Decides whether a launch may receive secrets: every policy must pass (AND, as simple-kbs ANDs the tenant default,
 * keyset and secret policies), and every refusal of every policy is listed. Pure and total: it never throws, and
 * anything it cannot check (an invalid fact, a corrupt stored document, no policy at all) is a refusal.
 */
export function evaluate(policies: readonly NamedPolicy[], facts: LaunchFacts | SnpFacts): Verdict {
  const refusals: Refusal[] = [];
  const { checked, problems } = checkFacts(facts);
  for (const p of problems) refusals.push({ policy: FACTS_POLICY, rule: p.fact, reason: p.reason });

  if (!Array.isArray(policies) || policies.length === 0) {
    refusals.push({
      policy: POLICY_SET_POLICY,
      rule: 'policies',
      reason: 'no policy applies to this release; at least the tenant default policy is required',
    });
  } else {
    for (const entry of policies) refusals.push(...evaluateOne(entry, checked));
  }
  return refusals.length === 0 ? { allowed: true } : { allowed: false, refusals };
}

function evaluateOne(entry: NamedPolicy, facts: CheckedFacts): Refusal[] {
  const out: Refusal[] = [];
  const name = typeof entry?.name === 'string' && entry.name !== '' ? entry.name : `(unnamed ${show(entry?.name)})`;
  const kind = (POLICY_KINDS as readonly unknown[]).includes(entry?.kind) ? entry.kind : undefined;
  const refuse = (rule: string, reason: string): void => {
    out.push(kind === undefined ? { policy: name, rule, reason } : { policy: name, kind, rule, reason });
  };
  if (kind === undefined) refuse('kind', `policy kind ${show(entry?.kind)} is not one of ${POLICY_KINDS.join(', ')}`);

  let p: Policy;
  try {
    // Re-validated here, cheaply, because documents come back from storage: one edited out of band must be refused,
    // not crash the request or be read as allow-all (simple-kbs#55).
    p = parsePolicy(entry?.policy);
  } catch (e) {
    refuse('document', `the stored policy document is invalid: ${isPolicyError(e) ? e.message : String(e)}`);
    return out;
  }

  if (facts.snp !== undefined) {
    // An SNP launch: the document's snp rules instead of the SEV ones; chips, validity and maxReleases are shared.
    for (const [rule, reason] of snpRefusals(p.snp, facts.snp)) refuse(rule, reason);
  } else if (p.allowedDigests === undefined) {
    refuse('allowedDigests', 'the policy has no allowedDigests (an SNP-only policy), so it accepts no SEV or SEV-ES launch');
  }

  if (Array.isArray(p.allowedDigests) && facts.digestHex !== undefined && !p.allowedDigests.includes(facts.digestHex)) {
    refuse('allowedDigests', `launch digest ${facts.digestHex} is not in allowedDigests (${entries(p.allowedDigests.length)})`);
  }

  const sp = facts.sevPolicy;
  if (sp !== undefined) {
    if (Array.isArray(p.allowedPolicies) && !p.allowedPolicies.includes(sp)) {
      refuse('allowedPolicies', `SEV policy ${hex32(sp)} is not in allowedPolicies ${showList(p.allowedPolicies.map(hex32))}`);
    }
    const missing = namesOf(maskOf(p.requiredPolicyBits ?? []) & ~sp);
    if (missing.length > 0) {
      refuse('requiredPolicyBits', `SEV policy ${hex32(sp)} lacks required ${bitWord(missing.length)} ${missing.join(', ')}`);
    }
    const present = namesOf(maskOf(p.forbiddenPolicyBits ?? []) & sp);
    if (present.length > 0) {
      refuse('forbiddenPolicyBits', `SEV policy ${hex32(sp)} sets forbidden ${bitWord(present.length)} ${present.join(', ')}`);
    }
    // Reported once: when NODBG is also an explicit requirement, requiredPolicyBits has already said so.
    if (p.allowDebug !== true && (sp & SEV_POLICY_BITS.NODBG) === 0 && !missing.includes('NODBG')) {
      refuse(
        'allowDebug',
        `SEV policy ${hex32(sp)} allows debugging (NODBG clear), so the host can read guest memory with DBG_DECRYPT; the policy does not set allowDebug: true`,
      );
    }
  }

  const fw = firmwareRefusal(p, facts);
  if (fw !== undefined) refuse('minFwApi', fw);

  if (Array.isArray(p.allowedBuildIds) && facts.buildId !== undefined && !p.allowedBuildIds.includes(facts.buildId)) {
    refuse('allowedBuildIds', `firmware build ${facts.buildId} is not in allowedBuildIds ${showList(p.allowedBuildIds.map(String))}`);
  }

  if (Array.isArray(p.allowedChips)) {
    if (facts.chipId === undefined) {
      refuse('allowedChips', `the chip identity is unknown, and allowedChips pins ${plural(p.allowedChips.length, 'chip', 'chips')}`);
    } else if (!p.allowedChips.includes(facts.chipId)) {
      refuse('allowedChips', `chip ${show(facts.chipId)} is not in allowedChips (${entries(p.allowedChips.length)})`);
    }
  }

  if (facts.nowMs !== undefined) {
    const now = new Date(facts.nowMs).toISOString();
    if (p.notBefore !== undefined && facts.nowMs < Date.parse(p.notBefore)) {
      refuse('notBefore', `now (${now}) is before notBefore ${p.notBefore}`);
    }
    if (p.notAfter !== undefined && facts.nowMs > Date.parse(p.notAfter)) {
      refuse('notAfter', `now (${now}) is after notAfter ${p.notAfter}`);
    }
  }

  if (p.maxReleases !== undefined) {
    const count = facts.releaseCounts?.get(name);
    if (count === undefined) {
      refuse('maxReleases', `maxReleases is ${p.maxReleases} but no release count was given for policy ${show(name)}`);
    } else if (typeof count !== 'number' || !Number.isSafeInteger(count) || count < 0) {
      refuse('maxReleases', `the release count ${show(count)} for policy ${show(name)} is not a non-negative integer`);
    } else if (count >= p.maxReleases) {
      refuse('maxReleases', `policy ${show(name)} has released ${plural(count, 'time', 'times')}, maxReleases is ${p.maxReleases}`);
    }
  }
  return out;
}

/**
 * (major, minor) compared as a version: the minor counts only when the majors are equal. This is what simple-kbs's
 * policy.rs does too (kbs-compat §1.5), so `simpleKbsCompat` documents — it no longer changes — the comparison.
 */
function firmwareRefusal(p: Policy, facts: CheckedFacts): string | undefined {
  if (p.minFwApiMajor === undefined || facts.apiMajor === undefined || facts.apiMinor === undefined) return undefined;
  const [major, minor] = [facts.apiMajor, facts.apiMinor];
  const [minMajor, minMinor] = [p.minFwApiMajor, p.minFwApiMinor ?? 0];
  if (major > minMajor || (major === minMajor && minor >= minMinor)) return undefined;
  return `firmware API ${major}.${minor} is below the minimum ${minMajor}.${minMinor} (minFwApiMajor.minFwApiMinor)`;
}

function entries(n: number): string {
  return plural(n, 'entry', 'entries');
}

function bitWord(n: number): string {
  return n === 1 ? 'bit' : 'bits';
}
