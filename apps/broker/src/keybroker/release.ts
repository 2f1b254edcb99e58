import { evaluate, type NamedPolicy } from '@kb/policy';
import type { AuditEntryInput } from '@kb/store';
import { jsonSafe } from '../audit';
import type { BrokerContext } from '../context';
import { denied } from '../errors';
import { loadPolicies, lookUpSecrets, type PendingSecret, type Produced, type ProvenLaunch } from '../secret-types/payloads';
import type { SecretRequestItem } from './validate';

export interface Release {
  payloads: Buffer[];
  /**
   * The writes a release implies, all or nothing in one transaction: "max releases" counters (each re-checked as it
   * is taken, so a policy at its limit refuses even if another request raced it there, and then nothing is written)
   * and new connection rows. Call it once the response is certain to go out, so a request refused later (e.g. a
   * table that does not fit) writes nothing. `audit`, the release's own entry, is committed in the same transaction:
   * a secret goes out only once the row saying so is stored.
   */
  commit(audit: AuditEntryInput): Promise<void>;
}

/** Everything a release decision reads from the database; none of it depends on the launch. */
export interface ReleaseReads {
  secrets: PendingSecret[];
  policies: NamedPolicy[];
  /** maxReleases policies by name → releases so far (re-checked atomically by commit()) */
  releaseCounts: Map<string, number>;
}

/**
 * The reads of a release: the requested secrets, the tenant default plus every policy attached to them, and the
 * counters of "max releases" policies. Reads only, so a handler starts them alongside its own first step (consuming
 * the launch id, finding the connection) and the round trips overlap; what they find is used — and a refusal they
 * raise surfaces — only once that step has succeeded. Returned promises never reject unobserved.
 */
export function readRelease(ctx: BrokerContext, items: SecretRequestItem[]): Promise<ReleaseReads> {
  const reads = (async () => {
    // The tenant default needs nothing from the secrets, so it is read alongside them. A missing one refuses
    // everything (fail closed), like any other missing policy; a missing secret is reported first, as before.
    const tenantDefault = loadPolicies(ctx.store, [{ name: ctx.config.defaultPolicy, kind: 'tenant-default' }]);
    tenantDefault.catch(() => undefined);
    const secrets = await lookUpSecrets(ctx.store, items, { connectionTtlSeconds: ctx.config.connectionTtlSeconds, now: ctx.now });
    const attached = secrets.flatMap((s) => s.policies);
    const policies = [...(await tenantDefault), ...(attached.length > 0 ? await loadPolicies(ctx.store, attached) : [])];
    const counted = [...new Set(policies.filter((p) => p.policy.maxReleases !== undefined).map((p) => p.name))];
    const releaseCounts = new Map(await Promise.all(counted.map(async (n) => [n, await ctx.store.getReleaseCount(releaseKey(n))] as const)));
    return { secrets, policies, releaseCounts };
  })();
  reads.catch(() => undefined); // observed by the caller's await later; this only keeps an early rejection from being "unhandled"
  return reads;
}

/**
 * The release decision shared by GetSecret and GetOnlineSecret: the tenant default policy plus every policy attached
 * to what was asked for must all pass on the proven launch facts; then the payloads are produced, without writing.
 */
export async function authorize(ctx: BrokerContext, launch: ProvenLaunch, reads: ReleaseReads): Promise<Release> {
  const { secrets, policies, releaseCounts } = reads;
  const counted = [...releaseCounts.keys()];
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
  const produced: Produced[] = [];
  for (const s of secrets) produced.push(await s.produce(launch));
  return {
    payloads: produced.map((p) => p.data),
    async commit(audit) {
      // One transaction: a counter found at its limit here (only a concurrent release can have taken it since the
      // reads) or a failing connection insert leaves every counter and connection as it was.
      const limits = counted.map((name) => ({ name, key: releaseKey(name), max: policies.find((p) => p.name === name)!.policy.maxReleases! }));
      const connections = produced.flatMap((p) => (p.connection ? [p.connection] : []));
      const result = await ctx.store.commitRelease({ counters: limits, connections, audit: [jsonSafe(audit)] }, ctx.now());
      if (!result.ok) {
        const { name, max } = limits.find((l) => l.key === result.exhausted)!;
        throw denied(`policy '${name}' reached maxReleases ${max}`);
      }
    },
  };
}

function releaseKey(policyName: string): string {
  return `policy:${policyName}`;
}
