/**
 * Step 3, `GET /kbs/v0/resource/{repository}/{type}/{tag}` (../shared/specs/kbs-protocol.md §6.2): a token from the
 * cookie session, else from `Authorization: Bearer` (§5.4) — none is 401 so the cookie client starts its handshake
 * (§1.2); then the path, the resource, the release policies on the facts the token carries (the tenant default plus
 * the resource's own, one engine with SEV), the release counted and audited in one transaction, and the bytes
 * encrypted to the TEE key bound in the token (§4.3 step 4), never to a key from the request.
 */
import { evaluate, type NamedPolicy, type PolicyKind } from '@kb/policy';
import { isKbsPath } from './path';
import { parseTeePubKey } from './binding';
import { KbsError } from './errors';
import { encryptToTeeKey } from './jwe';
import type { KbsDeps, KbsReply, KbsRequestMeta } from './service';
import type { JsonObject, VerifiedToken } from './token';
import { loadPolicies } from '../core/payloads';

export interface ResourceCredentials {
  sessionId?: string;
  /** the Authorization header as received */
  authorization?: string;
}

async function tokenOf(deps: KbsDeps, c: ResourceCredentials, now: Date): Promise<VerifiedToken> {
  const signer = await deps.signer();
  const seconds = Math.floor(now.getTime() / 1000);
  // cookie first, then Bearer (trustee's order, §5.4)
  const fromSession = c.sessionId ? await deps.store.kbsSessionToken(c.sessionId, now) : undefined;
  if (fromSession) return signer.verify(fromSession.token, seconds);
  const m = c.authorization ? /^Bearer\s+(\S+)\s*$/i.exec(c.authorization) : null;
  if (m) return signer.verify(m[1]!, seconds);
  throw new KbsError(
    'TokenNotFound',
    c.sessionId ? 'resource: the session is unknown, expired or not attested, and no Bearer token' : 'resource: no session cookie and no Bearer token',
  );
}

const hexFact = (v: unknown) => (typeof v === 'string' ? v : '');

export async function handleResource(deps: KbsDeps, segments: string[], creds: ResourceCredentials, meta: KbsRequestMeta): Promise<KbsReply> {
  const now = deps.now();
  const token = await tokenOf(deps, creds, now);
  let key;
  try {
    key = parseTeePubKey(token.teePubKey).key;
  } catch (e) {
    throw new KbsError('TokenVerifierError', `resource: the token's tee-pubkey is unusable (${(e as Error).message})`, undefined, { cause: e });
  }
  if (!isKbsPath(segments)) throw new KbsError('InvalidRequest', `resource: malformed path ${JSON.stringify(segments.join('/').slice(0, 200))}`);
  const id = segments.join('/');
  const resource = await deps.store.getKbsResource(id);
  if (!resource) throw new KbsError('ResourceNotFound', `resource: ${id} does not exist`);

  const tee = token.tee;
  let policies: NamedPolicy[] = [];
  if (tee === 'sample') {
    // test mode only: proves nothing, so never for a resource that names a policy (§10, §15 #19)
    if (!deps.options.sampleTee) throw new KbsError('PolicyDeny', 'resource: sample-TEE token while the sample TEE is off');
    if (resource.policyName) throw new KbsError('PolicyDeny', `resource: ${id} has policy '${resource.policyName}', which sample evidence cannot satisfy`);
  } else if (tee === 'snp') {
    const refs: { name: string; kind: PolicyKind }[] = [{ name: deps.options.defaultPolicy, kind: 'tenant-default' }];
    if (resource.policyName) refs.push({ name: resource.policyName, kind: 'resource' });
    try {
      policies = await loadPolicies(deps.store, refs);
    } catch (e) {
      throw new KbsError('PolicyDeny', `resource: ${(e as Error).message}`, undefined, { cause: e });
    }
    const f = (token.claims['kb.snp-facts'] ?? {}) as JsonObject;
    const counted = [...new Set(policies.filter((p) => p.policy.maxReleases !== undefined).map((p) => p.name))];
    const releaseCounts = new Map(await Promise.all(counted.map(async (n) => [n, await deps.store.getReleaseCount(`policy:${n}`)] as const)));
    let policyValue: bigint | undefined;
    try {
      policyValue = BigInt(hexFact(f.policy));
    } catch {
      policyValue = undefined;
    }
    const verdict = evaluate(policies, {
      snp: {
        measurement: hexFact(f.measurement),
        policy: policyValue as bigint,
        reportedTcb: f.reportedTcb as never,
        guestSvn: f.guestSvn as number,
        vmpl: f.vmpl as number,
        hostData: hexFact(f.hostData),
        idKeyDigest: hexFact(f.idKeyDigest),
        authorKeyDigest: hexFact(f.authorKeyDigest),
        familyId: hexFact(f.familyId),
        imageId: hexFact(f.imageId),
      },
      chipId: hexFact(f.chipId),
      now,
      releaseCounts,
    });
    if (!verdict.allowed) throw new KbsError('PolicyDeny', `resource ${id}: ${verdict.refusals.map((r) => `${r.policy}: ${r.rule}: ${r.reason}`).join('; ')}`);
  } else {
    throw new KbsError('TokenVerifierError', `resource: token for unknown TEE ${JSON.stringify(tee)}`);
  }

  const jwe = encryptToTeeKey(key, resource.bytes);
  meta.checkDeadline?.('the release was counted');
  const counters = policies.filter((p) => p.policy.maxReleases !== undefined).map((p) => ({ key: `policy:${p.name}`, max: p.policy.maxReleases! }));
  const result = await deps.store.commitRelease(
    {
      counters: [...new Map(counters.map((c) => [c.key, c])).values()],
      connections: [],
      audit: [
        {
          event: 'kbs.resource',
          outcome: 'released',
          peer: meta.peer,
          refId: meta.ref,
          at: now,
          detail: { resource: id, tee: tee ?? null, policies: policies.map((p) => p.name) },
        },
      ],
    },
    now,
  );
  if (!result.ok) throw new KbsError('PolicyDeny', `resource ${id}: release counter ${result.exhausted} reached its maxReleases`);
  return { body: jwe };
}
