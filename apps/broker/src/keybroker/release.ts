import { evaluate } from '@kb/policy';
import type { BrokerContext } from '../context';
import { denied } from '../errors';
import { loadPolicies, type PendingSecret, type ProvenLaunch } from '../secret-types/payloads';

/**
 * The release decision shared by GetSecret and GetOnlineSecret: the tenant default policy plus every policy attached
 * to what was asked for must all pass on the proven launch facts; then "max releases" counters are taken atomically
 * (a policy at its limit refuses even if another request raced it there), and only then are payloads produced.
 */
export async function authorizeAndProduce(ctx: BrokerContext, launch: ProvenLaunch, secrets: PendingSecret[]): Promise<Buffer[]> {
  const refs = [{ name: ctx.config.defaultPolicy, kind: 'tenant-default' as const }, ...secrets.flatMap((s) => s.policies)];
  // A missing tenant default refuses everything (fail closed), like any other missing policy.
  const policies = await loadPolicies(ctx.store, refs);
  const counted = [...new Set(policies.filter((p) => p.policy.maxReleases !== undefined).map((p) => p.name))];
  const releaseCounts = new Map(await Promise.all(counted.map(async (n) => [n, await ctx.store.getReleaseCount(releaseKey(n))] as const)));
  const verdict = evaluate(policies, {
    sevPolicy: launch.sevPolicy,
    apiMajor: launch.apiMajor,
    apiMinor: launch.apiMinor,
    buildId: launch.buildId,
    launchDigest: launch.launchDigest,
    chipId: launch.chipId,
    now: ctx.now(),
    releaseCounts,
  });
  if (!verdict.allowed) {
    throw denied(verdict.refusals.map((r) => `${r.policy}: ${r.rule}: ${r.reason}`).join('; '));
  }
  for (const name of counted) {
    const max = policies.find((p) => p.name === name)!.policy.maxReleases!;
    const n = await ctx.store.incrementReleaseCount(releaseKey(name), max, ctx.now());
    if (n === undefined) throw denied(`policy '${name}' reached maxReleases ${max}`);
  }
  const out: Buffer[] = [];
  for (const s of secrets) out.push(await s.produce(launch));
  return out;
}

function releaseKey(policyName: string): string {
  return `policy:${policyName}`;
}
