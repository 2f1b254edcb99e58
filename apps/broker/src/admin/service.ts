import { createPrivateKey, createPublicKey, generateKeyPairSync } from 'node:crypto';
import { status, type handleUnaryCall, type sendUnaryData, type ServerUnaryCall, type ServiceError } from '@grpc/grpc-js';
import type { admin } from '@kb/grpc-api';
import { isPolicyError, parsePolicy } from '@kb/policy';
import { isStoreError, type StoreErrorCode } from '@kb/store';
import type { BrokerContext } from '../context';
import { BrokerError, fromStore, newRefId } from '../errors';
import type { AdminAuth } from './auth';

/**
 * kb.admin.v1.BrokerAdmin. Every write is validated here (policy documents parse, ids are sane, referenced rows
 * exist), so nothing malformed reaches a later GetSecret. Stored values are write-only: responses carry metadata.
 */

class AdminError extends Error {
  constructor(
    readonly code: status,
    message: string,
  ) {
    super(message);
  }
}

const badRequest = (m: string) => new AdminError(status.INVALID_ARGUMENT, m);
const notFound = (what: string) => new AdminError(status.NOT_FOUND, `${what} does not exist`);

const STORE_CODES: Partial<Record<StoreErrorCode, status>> = {
  ERR_STORE_NOT_FOUND: status.FAILED_PRECONDITION, // a write referencing a missing policy/secret
  ERR_STORE_CONFLICT: status.ALREADY_EXISTS,
  ERR_STORE_IN_USE: status.FAILED_PRECONDITION,
  ERR_STORE_ARGUMENT: status.INVALID_ARGUMENT,
  ERR_STORE_CONSTRAINT: status.FAILED_PRECONDITION,
  ERR_STORE_TIMEOUT: status.DEADLINE_EXCEEDED, // ran past --request-timeout (PostgreSQL's statement timeout)
};

const ID_RE = /^[\x21-\x7e]{1,256}$/;
function id(what: string, v: string): string {
  if (typeof v !== 'string' || !ID_RE.test(v)) throw badRequest(`${what} must be 1–256 printable ASCII characters without spaces`);
  return v;
}
const optionalPolicy = (v: string) => (v ? id('policy_name', v) : null);
const iso = (d: Date | null | undefined) => (d ? d.toISOString() : '');
const MAX_VALUE_BYTES = 4096; // everything released must fit the 4 KiB OVMF secret page

export function adminService(ctx: BrokerContext, auth: AdminAuth): admin.BrokerAdminServer {
  const { store } = ctx;

  function rpc<Req, Res>(name: string, fn: (req: Req) => Promise<Res>): handleUnaryCall<Req, Res> {
    return (call: ServerUnaryCall<Req, Res>, cb: sendUnaryData<Res>) => {
      if (!auth.check(call.metadata)) {
        ctx.logger.warn('admin call refused: bad or missing token', { rpc: name, peer: call.getPeer() });
        cb({ code: status.UNAUTHENTICATED, details: 'a valid admin bearer token is required' } as ServiceError, null);
        return;
      }
      fn(call.request).then(
        (res) => {
          if (/^(Put|Create|Delete|Revoke)/.test(name)) ctx.logger.info('admin change', { rpc: name, peer: call.getPeer() });
          cb(null, res);
        },
        (e: unknown) => {
          if (e instanceof AdminError) return cb({ code: e.code, details: e.message } as ServiceError, null);
          if (isStoreError(e) && STORE_CODES[e.code]) return cb({ code: STORE_CODES[e.code]!, details: e.message } as ServiceError, null);
          const ref = newRefId();
          const failure = fromStore(e);
          if (failure instanceof BrokerError && failure.kind === 'unavailable') {
            ctx.logger.warn('admin call failed', { rpc: name, ref, class: failure.kind, reason: failure.detail });
            return cb({ code: status.UNAVAILABLE, details: `${failure.publicMessage} (ref ${ref})` } as ServiceError, null);
          }
          ctx.logger.error('admin call failed', { rpc: name, ref, error: (e as Error)?.stack ?? String(e) });
          cb({ code: status.INTERNAL, details: `internal error (ref ${ref})` } as ServiceError, null);
        },
      );
    };
  }

  const byPrefix = (ids: string[], prefix: string) => ids.filter((i) => i.startsWith(prefix ?? '')).sort();

  async function policyMessage(name: string): Promise<admin.Policy> {
    const p = await store.getPolicy(name);
    if (!p) throw notFound(`policy '${name}'`);
    return { name: p.name, document_json: JSON.stringify(p.document), created_at: iso(p.createdAt), updated_at: iso(p.updatedAt) };
  }
  async function secretInfo(sid: string): Promise<admin.SecretInfo> {
    const s = await store.getSecret(sid);
    if (!s) throw notFound(`secret '${sid}'`);
    return { id: s.id, policy_name: s.policyName ?? '', size: s.value.length, created_at: iso(s.createdAt) };
  }
  async function resourceInfo(rid: string): Promise<admin.ResourceInfo> {
    const r = await store.getResource(rid);
    if (!r) throw notFound(`resource '${rid}'`);
    return { id: r.id, policy_name: r.policyName ?? '', size: r.bytes.length, created_at: iso(r.createdAt) };
  }
  async function reportKeyMessage(kid: string): Promise<admin.ReportKey> {
    const k = await store.getReportKey(kid);
    if (!k) throw notFound(`report key '${kid}'`);
    const pub = createPublicKey(createPrivateKey({ key: k.privateKeyPkcs8, format: 'der', type: 'pkcs8' }));
    return { id: k.id, policy_name: k.policyName ?? '', public_key_pem: pub.export({ format: 'pem', type: 'spki' }).toString(), created_at: iso(k.createdAt) };
  }
  const deleted = (ok: boolean, what: string): admin.Empty => {
    if (!ok) throw notFound(what);
    return {};
  };

  return {
    putPolicy: rpc('PutPolicy', async (req: admin.PutPolicyRequest) => {
      const name = id('name', req.name);
      let doc: unknown;
      try {
        doc = JSON.parse(req.document_json);
      } catch (e) {
        throw badRequest(`document_json is not JSON: ${(e as Error).message}`);
      }
      try {
        parsePolicy(doc);
      } catch (e) {
        if (isPolicyError(e)) throw badRequest(`invalid policy: ${e.message}`);
        throw e;
      }
      await store.putPolicy(name, doc as never, ctx.now());
      if (name === ctx.config.defaultPolicy) ctx.logger.info('tenant default policy changed', { policy: name });
      return policyMessage(name);
    }),
    getPolicy: rpc('GetPolicy', (req: admin.NameRequest) => policyMessage(req.name)),
    listPolicies: rpc('ListPolicies', async (req: admin.ListRequest) => ({
      policies: await Promise.all(byPrefix(await store.listPolicyNames(), req.prefix).map(policyMessage)),
    })),
    deletePolicy: rpc('DeletePolicy', async (req: admin.NameRequest) => {
      const ok = await store.deletePolicy(req.name);
      if (ok && req.name === ctx.config.defaultPolicy) {
        ctx.logger.warn('the tenant default policy was deleted: every GetSecret is refused until it is created again', { policy: req.name });
      }
      return deleted(ok, `policy '${req.name}'`);
    }),

    putSecret: rpc('PutSecret', async (req: admin.PutSecretRequest) => {
      const sid = id('id', req.id);
      const value = Buffer.from(req.value ?? []);
      if (value.length === 0) throw badRequest('value must not be empty');
      if (value.length > MAX_VALUE_BYTES) throw badRequest(`value must be at most ${MAX_VALUE_BYTES} bytes (the OVMF secret page)`);
      await store.putSecret({ id: sid, value, policyName: optionalPolicy(req.policy_name) }, ctx.now());
      return secretInfo(sid);
    }),
    getSecretInfo: rpc('GetSecretInfo', (req: admin.NameRequest) => secretInfo(req.name)),
    listSecrets: rpc('ListSecrets', async (req: admin.ListRequest) => ({
      secrets: await Promise.all(byPrefix(await store.listSecretIds(), req.prefix).map(secretInfo)),
    })),
    deleteSecret: rpc('DeleteSecret', async (req: admin.NameRequest) => deleted(await store.deleteSecret(req.name), `secret '${req.name}'`)),

    putKeyset: rpc('PutKeyset', async (req: admin.Keyset) => {
      const kid = id('id', req.id);
      if (!req.secret_ids?.length) throw badRequest('a keyset names at least one secret');
      const ids = req.secret_ids.map((s) => id('secret_ids[]', s));
      if (new Set(ids).size !== ids.length) throw badRequest('secret_ids lists a secret twice');
      const missing = (await Promise.all(ids.map(async (s) => ((await store.getSecret(s)) ? undefined : s)))).filter(Boolean);
      if (missing.length) throw new AdminError(status.FAILED_PRECONDITION, `unknown secrets: ${missing.join(', ')}`);
      const k = await store.putKeyset({ id: kid, secretIds: ids, policyName: optionalPolicy(req.policy_name) }, ctx.now());
      return { id: k.id, secret_ids: k.secretIds, policy_name: k.policyName ?? '' };
    }),
    getKeyset: rpc('GetKeyset', async (req: admin.NameRequest) => {
      const k = await store.getKeyset(req.name);
      if (!k) throw notFound(`keyset '${req.name}'`);
      return { id: k.id, secret_ids: k.secretIds, policy_name: k.policyName ?? '' };
    }),
    listKeysets: rpc('ListKeysets', async (req: admin.ListRequest) => ({
      keysets: (await Promise.all(byPrefix(await store.listKeysetIds(), req.prefix).map((k) => store.getKeyset(k))))
        .filter((k) => k !== undefined)
        .map((k) => ({ id: k.id, secret_ids: k.secretIds, policy_name: k.policyName ?? '' })),
    })),
    deleteKeyset: rpc('DeleteKeyset', async (req: admin.NameRequest) => deleted(await store.deleteKeyset(req.name), `keyset '${req.name}'`)),

    putResource: rpc('PutResource', async (req: admin.PutResourceRequest) => {
      const rid = id('id', req.id);
      const bytes = Buffer.from(req.data ?? []);
      if (bytes.length === 0) throw badRequest('data must not be empty');
      if (bytes.length > MAX_VALUE_BYTES) throw badRequest(`data must be at most ${MAX_VALUE_BYTES} bytes (the OVMF secret page)`);
      await store.putResource({ id: rid, bytes, policyName: optionalPolicy(req.policy_name) }, ctx.now());
      return resourceInfo(rid);
    }),
    getResourceInfo: rpc('GetResourceInfo', (req: admin.NameRequest) => resourceInfo(req.name)),
    listResources: rpc('ListResources', async (req: admin.ListRequest) => ({
      resources: await Promise.all(byPrefix(await store.listResourceIds(), req.prefix).map(resourceInfo)),
    })),
    deleteResource: rpc('DeleteResource', async (req: admin.NameRequest) => deleted(await store.deleteResource(req.name), `resource '${req.name}'`)),

    createReportKey: rpc('CreateReportKey', async (req: admin.CreateReportKeyRequest) => {
      const kid = id('id', req.id);
      // A signing key replaced by accident would invalidate every report verifier: delete first to rotate.
      if (await store.getReportKey(kid)) throw new AdminError(status.ALREADY_EXISTS, `report key '${kid}' already exists (delete it first to rotate)`);
      let key;
      if (req.private_key_pem) {
        try {
          key = createPrivateKey(req.private_key_pem);
        } catch (e) {
          throw badRequest(`private_key_pem is not a private key: ${(e as Error).message}`);
        }
        if (key.asymmetricKeyType !== 'ec' || key.asymmetricKeyDetails?.namedCurve !== 'prime256v1') {
          throw badRequest('report keys are ECDSA P-256 keys');
        }
      } else {
        key = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
      }
      const pkcs8 = key.export({ format: 'der', type: 'pkcs8' });
      await store.putReportKey({ id: kid, privateKeyPkcs8: pkcs8, policyName: optionalPolicy(req.policy_name) }, ctx.now());
      return reportKeyMessage(kid);
    }),
    getReportKey: rpc('GetReportKey', (req: admin.NameRequest) => reportKeyMessage(req.name)),
    listReportKeys: rpc('ListReportKeys', async (req: admin.ListRequest) => ({
      keys: await Promise.all(byPrefix(await store.listReportKeyIds(), req.prefix).map(reportKeyMessage)),
    })),
    deleteReportKey: rpc('DeleteReportKey', async (req: admin.NameRequest) => deleted(await store.deleteReportKey(req.name), `report key '${req.name}'`)),

    listConnections: rpc('ListConnections', async (req: admin.ListRequest) => ({
      connections: (await store.listConnections())
        .filter((c) => c.clientId.startsWith(req.prefix ?? ''))
        .map((c) => ({
          client_id: c.clientId,
          created_at: iso(c.createdAt),
          expires_at: iso(c.expiresAt),
          revoked_at: iso(c.revokedAt),
          sev_policy: c.sevPolicy,
          launch_digest_hex: c.launchDigest.toString('hex'),
        })),
    })),
    revokeConnection: rpc('RevokeConnection', async (req: admin.RevokeConnectionRequest) => {
      if (await store.revokeConnection(req.client_id, ctx.now())) return {};
      // revoking twice is not an error: the connection is revoked either way
      const known = (await store.listConnections()).some((c) => c.clientId === req.client_id.toLowerCase());
      return deleted(known, `connection '${req.client_id}'`);
    }),

    listAudit: rpc('ListAudit', async (req: admin.ListAuditRequest) => {
      let since: Date | undefined;
      if (req.since) {
        if (!/^\d{4}-\d{2}-\d{2}([T ][0-9:.]+(Z|[+-]\d{2}:?\d{2})?)?$/.test(req.since)) throw badRequest('since must be an ISO-8601 time');
        since = new Date(req.since);
        if (Number.isNaN(since.getTime())) throw badRequest('since must be an ISO-8601 time');
      }
      const limit = Math.min(req.limit || 100, 10_000);
      const entries = await store.listAudit({ since, launchId: req.launch_id || undefined, refId: req.ref_id || undefined, limit });
      return {
        entries: entries.map((e) => ({
          id: String(e.id),
          at: iso(e.at),
          event: e.event,
          outcome: e.outcome,
          launch_id: e.launchId ?? '',
          client_id: e.clientId ?? '',
          peer: e.peer ?? '',
          ref_id: e.refId ?? '',
          detail_json: e.detail === null ? '' : JSON.stringify(e.detail),
        })),
      };
    }),
  };
}
