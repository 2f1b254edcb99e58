import { evaluate, type NamedPolicy } from '@kb/policy';
import { buildSecretTable, isSevError, packageSecret, type SecretPacket } from '@kb/sev';
import type { AuditEntryInput, ConsumedLaunchSession } from '@kb/store';
import { jsonSafe } from '../audit';
import type { BrokerContext } from '../context';
import { denied } from '../errors';
import { checkDeadline, type CallInfo } from '../unary';
import { proveMeasurement, type MeasurementClaims } from './launch-session';
import { loadPolicies, lookUpSecrets, type PendingSecret, type Produced, type ProvenLaunch } from './payloads';
import type { SecretRequestItem } from '../keybroker/validate';

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
  /** further counters taken by commit(), all or nothing with the policies' ones (e.g. a VM's max-launches) */
  limits?: ReleaseLimit[];
  /**
   * The release was already decided by what the measurement proved (a registration's own digests): the policies
   * listed, if any, must also pass, and none is required. Otherwise at least the tenant default applies.
   */
  decided?: boolean;
}

/** A counter under `key` that commit() refuses to take past `max`; `name` is what a refusal names. */
export interface ReleaseLimit {
  name: string;
  key: string;
  max: number;
}

/**
 * The reads of a release: the requested secrets, the tenant default plus every policy attached to them, and the
 * counters of "max releases" policies. Reads only, so a handler starts them alongside its own first step (consuming
 * the launch id, finding the connection) and the round trips overlap; what they find is used — and a refusal they
 * raise surfaces — only once that step has succeeded. Returned promises never reject unobserved.
 */
export function readRelease(ctx: BrokerContext, items: SecretRequestItem[]): Promise<ReleaseReads> {
  return observed(
    (async () => {
      // The tenant default needs nothing from the secrets, so it is read alongside them. A missing one refuses
      // everything (fail closed), like any other missing policy; a missing secret is reported first, as before.
      const tenantDefault = loadPolicies(ctx.store, [{ name: ctx.config.defaultPolicy, kind: 'tenant-default' }]);
      tenantDefault.catch(() => undefined);
      const secrets = await lookUpSecrets(ctx.store, items, { connectionTtlSeconds: ctx.config.connectionTtlSeconds, now: ctx.now });
      const attached = secrets.flatMap((s) => s.policies);
      const policies = [...(await tenantDefault), ...(attached.length > 0 ? await loadPolicies(ctx.store, attached) : [])];
      return { secrets, policies, releaseCounts: await readCounts(ctx, policies) };
    })(),
  );
}

/**
 * The reads of a release whose secrets the caller already holds (the attestation service: a VM registration's own
 * secrets): only the named broker policies (all must pass; no tenant default — the registration is the VM's policy)
 * and their counters, plus `limits` counted at commit (a VM's max-launches).
 */
export function readOwnRelease(
  ctx: BrokerContext,
  input: { policyNames: string[]; secrets: { guid: string; data: Buffer }[]; limits?: ReleaseLimit[] },
): Promise<ReleaseReads> {
  return observed(
    (async () => {
      const policies =
        input.policyNames.length > 0
          ? await loadPolicies(
              ctx.store,
              input.policyNames.map((name) => ({ name, kind: 'secret' as const })),
            )
          : [];
      const secrets: PendingSecret[] = input.secrets.map((s) => ({
        item: { guid: s.guid, type: 'key', format: 'binary', id: s.guid },
        policies: [],
        produce: async () => ({ data: s.data }),
      }));
      return { secrets, policies, releaseCounts: await readCounts(ctx, policies), limits: input.limits, decided: true };
    })(),
  );
}

async function readCounts(ctx: BrokerContext, policies: NamedPolicy[]): Promise<Map<string, number>> {
  const counted = [...new Set(policies.filter((p) => p.policy.maxReleases !== undefined).map((p) => p.name))];
  return new Map(await Promise.all(counted.map(async (n) => [n, await ctx.store.getReleaseCount(releaseKey(n))] as const)));
}

function observed<T>(reads: Promise<T>): Promise<T> {
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
  if (policies.length > 0 || !reads.decided) {
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
  }
  const produced: Produced[] = [];
  for (const s of secrets) produced.push(await s.produce(launch));
  return {
    payloads: produced.map((p) => p.data),
    async commit(audit) {
      // One transaction: a counter found at its limit here (only a concurrent release can have taken it since the
      // reads) or a failing connection insert leaves every counter and connection as it was.
      const limits: ReleaseLimit[] = [
        ...counted.map((name) => ({ name: `policy '${name}'`, key: releaseKey(name), max: policies.find((p) => p.name === name)!.policy.maxReleases! })),
        ...(reads.limits ?? []),
      ];
      const connections = produced.flatMap((p) => (p.connection ? [p.connection] : []));
      const result = await ctx.store.commitRelease({ counters: limits, connections, audit: [jsonSafe(audit)] }, ctx.now());
      if (!result.ok) {
        const { name, max } = limits.find((l) => l.key === result.exhausted)!;
        throw denied(`${name} reached maxReleases ${max}`);
      }
    },
  };
}

function releaseKey(policyName: string): string {
  return `policy:${policyName}`;
}

export interface LaunchReleaseInput {
  /** the session consumed for this launch (its keys are erased here, whatever happens) */
  session: ConsumedLaunchSession;
  claims: MeasurementClaims;
  /** the digests the measurement may prove: the host's claim (GetSecret) or those computed from a registration */
  digests: readonly Buffer[];
  /** the caller's name in refusals ('GetSecret', '/validate') */
  what: string;
  /** GetSecret's LaunchDescription (unverified), signed only by report keys that opt in */
  launchDescription: string;
  /** started alongside the consume (readRelease / readOwnRelease) */
  reads: Promise<ReleaseReads>;
  /** the secret table's GUIDs, in the order of the reads' secrets */
  guids: string[];
  /** the 'released' audit entry, given the digest proven (committed with the release) */
  audit: (digest: Buffer) => AuditEntryInput;
  info: CallInfo;
}

/**
 * The release service both front-ends use once a session is consumed: prove the measurement, decide (policies,
 * counters), build the secret table, commit the release with its audit row, and wrap the table under the session's
 * TEK/TIK for LAUNCH_SECRET. A refusal is a BrokerError ('denied' with the reason for the audit trail only).
 */
export async function releaseToLaunch(ctx: BrokerContext, input: LaunchReleaseInput): Promise<SecretPacket> {
  const { session, claims, info } = input;
  try {
    const { digest, measure } = proveMeasurement(session, claims, input.digests, input.what);
    const launch: ProvenLaunch = {
      launchId: session.id,
      sevPolicy: session.sevPolicy,
      apiMajor: claims.apiMajor,
      apiMinor: claims.apiMinor,
      buildId: claims.buildId,
      launchDigest: digest,
      chipId: session.chipId,
      launchDescription: input.launchDescription,
    };
    const release = await authorize(ctx, launch, await input.reads);
    let table: Buffer;
    try {
      table = buildSecretTable(input.guids.map((guid, i) => ({ guid, data: release.payloads[i]! })));
    } catch (e) {
      if (isSevError(e)) throw denied(`the requested secrets do not fit one secret table: ${e.message}`);
      throw e;
    }
    checkDeadline(info, 'the release');
    await release.commit(input.audit(digest));
    const packet = packageSecret({ tek: session.tek, tik: session.tik, measure, data: table });
    // Past this check the 'released' row stands alone; a refusal after it follows it in the trail (same ref).
    checkDeadline(info, 'delivery: the release was recorded and counted against its limits but not delivered');
    return packet;
  } finally {
    session.tek.fill(0);
    session.tik.fill(0);
  }
}
