import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, randomBytes } from 'node:crypto';
import { status, type handleUnaryCall, type sendUnaryData, type ServerUnaryCall, type ServiceError } from '@grpc/grpc-js';
import { MalformedMessage, type admin } from '@kb/grpc-api';
import { isPolicyError, parsePolicy } from '@kb/policy';
import { isStoreError, type StoreErrorCode } from '@kb/store';
import type { BrokerContext } from '../context';
import { BrokerError, fromStore, newRefId } from '../errors';
import { importSnpCertificates, SnpImportError } from '../snp-certs';
import type { AdminAuth } from './auth';
import { KBS_MAX_RESOURCE_BYTES, parseKbsPath } from '../kbs/path';
import {
  DEFAULT_AUDIT_LIMIT,
  DEFAULT_PAGE_SIZE,
  MAX_AUDIT_LIMIT,
  MAX_ID_CHARS,
  MAX_KEYSET_SECRETS,
  MAX_PAGE_BYTES,
  MAX_PAGE_SIZE,
  MAX_PEM_CHARS,
  MAX_POLICY_BYTES,
} from './limits';

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

const ID_RE = new RegExp(`^[\\x21-\\x7e]{1,${MAX_ID_CHARS}}$`);
/** Every id or name, read or written, is checked here first: nothing else reaches the database. */
function id(what: string, v: string): string {
  if (typeof v !== 'string' || !ID_RE.test(v)) throw badRequest(`${what} must be 1–${MAX_ID_CHARS} printable ASCII characters without spaces`);
  return v;
}
const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
function uuid(what: string, v: string): string {
  if (typeof v !== 'string' || !UUID_RE.test(v)) throw badRequest(`${what} must be a UUID`);
  return v;
}
/** A list's prefix: empty, or the start of an id. */
function prefixOf(v: string | undefined): string {
  if (!v) return '';
  return id('prefix', v);
}

/**
 * One page of a listing sorted by key. The token names the last key handed out (and the prefix it was asked with),
 * so a page is what sorts after it: entries added or removed meanwhile neither repeat nor shift the others.
 */
function pageToken(kind: string, parts: string[]): string {
  return Buffer.from(JSON.stringify([kind, ...parts])).toString('base64url');
}
function readPageToken(kind: string, token: string | undefined, arity: number): string[] | undefined {
  if (!token) return undefined;
  try {
    if (token.length > 4 * MAX_ID_CHARS) throw new Error('too long');
    const v = JSON.parse(Buffer.from(token, 'base64url').toString()) as unknown;
    if (Array.isArray(v) && v.length === arity + 1 && v[0] === kind && v.every((x) => typeof x === 'string')) return v.slice(1) as string[];
  } catch {
    // refused below
  }
  throw badRequest('page_token is not a token of this listing (pass the next_page_token of the previous page, with the same prefix)');
}
function pageSize(req: { page_size?: number }): number {
  return Math.min(req.page_size || DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE);
}

/** Loads the keys of one page (in parallel), then keeps as many as fit MAX_PAGE_BYTES (at least one). */
async function pageOf<T>(
  kind: string,
  keys: string[],
  req: admin.ListRequest,
  load: (key: string) => Promise<T | undefined>,
): Promise<{ items: T[]; next_page_token: string }> {
  const prefix = prefixOf(req.prefix);
  const after = readPageToken(kind, req.page_token, 2);
  if (after && after[0] !== prefix) throw badRequest('page_token was given for another prefix');
  const size = pageSize(req);
  const wanted = keys.filter((k) => k.startsWith(prefix) && (!after || k > after[1]!)).sort();
  const keysHere = wanted.slice(0, size);
  const loaded = await Promise.all(keysHere.map(async (k) => ({ k, item: await load(k) })));
  const items: T[] = [];
  let bytes = 0;
  let last: string | undefined;
  for (const { k, item } of loaded) {
    if (item === undefined) {
      last = k; // deleted since the names were read
      continue;
    }
    const n = JSON.stringify(item).length;
    if (items.length > 0 && bytes + n > MAX_PAGE_BYTES) break;
    items.push(item);
    bytes += n;
    last = k;
  }
  const more = last !== undefined && wanted[wanted.length - 1] !== last;
  return { items, next_page_token: more ? pageToken(kind, [prefix, last!]) : '' };
}
const optionalPolicy = (v: string) => (v ? id('policy_name', v) : null);
const iso = (d: Date | null | undefined) => (d ? d.toISOString() : '');
const MAX_VALUE_BYTES = 4096;
const CONTROL_RE = /[\x00-\x1f\x7f]/; // everything released must fit the 4 KiB OVMF secret page

export function adminService(ctx: BrokerContext, auth: AdminAuth): admin.BrokerAdminServer {
  const { store } = ctx;

  function rpc<Req, Res>(name: string, fn: (req: Req) => Promise<Res>): handleUnaryCall<Req, Res> {
    return (call: ServerUnaryCall<Req, Res>, cb: sendUnaryData<Res>) => {
      if (!auth.check(call.metadata)) {
        ctx.logger.warn('admin call refused: bad or missing token', { rpc: name, peer: call.getPeer() });
        cb({ code: status.UNAUTHENTICATED, details: 'a valid admin bearer token is required' } as ServiceError, null);
        return;
      }
      const request: unknown = call.request;
      if (request instanceof MalformedMessage) {
        ctx.logger.info('admin call refused: malformed request', { rpc: name, peer: call.getPeer(), reason: request.reason });
        cb({ code: status.INVALID_ARGUMENT, details: `the request is not a valid protobuf message: ${request.reason}` } as ServiceError, null);
        return;
      }
      // a check that throws before the handler's first await is a refusal like any other
      Promise.resolve(call.request)
        .then(fn)
        .then(
          (res) => {
            if (/^(Put|Create|Delete|Revoke|Import)/.test(name)) ctx.logger.info('admin change', { rpc: name, peer: call.getPeer() });
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

  /** A listed entry deleted between the listing and its read is skipped, not an error. */
  const ifGone = (e: unknown): undefined => {
    if (e instanceof AdminError && e.code === status.NOT_FOUND) return undefined;
    throw e;
  };

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
    return {
      id: k.id,
      policy_name: k.policyName ?? '',
      public_key_pem: pub.export({ format: 'pem', type: 'spki' }).toString(),
      created_at: iso(k.createdAt),
      sign_launch_description: k.signLaunchDescription,
    };
  }
  const kbsPath = (v: string): string => {
    if (typeof v !== 'string' || !parseKbsPath(v)) throw badRequest('path must be REPOSITORY/TYPE/TAG, each part letters, digits, _ - . (not starting with .)');
    return v;
  };
  async function kbsResourceInfo(path: string): Promise<admin.KbsResourceInfo> {
    const r = await store.getKbsResource(path);
    if (!r) throw notFound(`KBS resource '${path}'`);
    return { path: r.id, policy_name: r.policyName ?? '', size: r.bytes.length, created_at: iso(r.createdAt), updated_at: iso(r.updatedAt) };
  }
  const deleted = (ok: boolean, what: string): admin.Empty => {
    if (!ok) throw notFound(what);
    return {};
  };

  return {
    putPolicy: rpc('PutPolicy', async (req: admin.PutPolicyRequest) => {
      const name = id('name', req.name);
      const docBytes = Buffer.byteLength(req.document_json ?? '');
      if (docBytes > MAX_POLICY_BYTES)
        throw badRequest(`document_json must be at most ${MAX_POLICY_BYTES} bytes (${MAX_POLICY_BYTES / 1024} KiB), got ${docBytes}`);
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
    getPolicy: rpc('GetPolicy', (req: admin.NameRequest) => policyMessage(id('name', req.name))),
    listPolicies: rpc('ListPolicies', async (req: admin.ListRequest) => {
      const page = await pageOf('policies', await store.listPolicyNames(), req, (n) => policyMessage(n).catch(ifGone));
      return { policies: page.items, next_page_token: page.next_page_token };
    }),
    deletePolicy: rpc('DeletePolicy', async (req: admin.NameRequest) => {
      const ok = await store.deletePolicy(id('name', req.name));
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
    getSecretInfo: rpc('GetSecretInfo', (req: admin.NameRequest) => secretInfo(id('name', req.name))),
    listSecrets: rpc('ListSecrets', async (req: admin.ListRequest) => {
      const page = await pageOf('secrets', await store.listSecretIds(), req, (n) => secretInfo(n).catch(ifGone));
      return { secrets: page.items, next_page_token: page.next_page_token };
    }),
    deleteSecret: rpc('DeleteSecret', async (req: admin.NameRequest) => deleted(await store.deleteSecret(id('name', req.name)), `secret '${req.name}'`)),

    putKeyset: rpc('PutKeyset', async (req: admin.Keyset) => {
      const kid = id('id', req.id);
      if (!req.secret_ids?.length) throw badRequest('a keyset names at least one secret');
      if (req.secret_ids.length > MAX_KEYSET_SECRETS) throw badRequest(`a keyset names at most ${MAX_KEYSET_SECRETS} secrets`);
      const ids = req.secret_ids.map((s) => id('secret_ids[]', s));
      if (new Set(ids).size !== ids.length) throw badRequest('secret_ids lists a secret twice');
      const missing = (await Promise.all(ids.map(async (s) => ((await store.getSecret(s)) ? undefined : s)))).filter(Boolean);
      if (missing.length) throw new AdminError(status.FAILED_PRECONDITION, `unknown secrets: ${missing.join(', ')}`);
      const k = await store.putKeyset({ id: kid, secretIds: ids, policyName: optionalPolicy(req.policy_name) }, ctx.now());
      return { id: k.id, secret_ids: k.secretIds, policy_name: k.policyName ?? '' };
    }),
    getKeyset: rpc('GetKeyset', async (req: admin.NameRequest) => {
      const k = await store.getKeyset(id('name', req.name));
      if (!k) throw notFound(`keyset '${req.name}'`);
      return { id: k.id, secret_ids: k.secretIds, policy_name: k.policyName ?? '' };
    }),
    listKeysets: rpc('ListKeysets', async (req: admin.ListRequest) => {
      const page = await pageOf('keysets', await store.listKeysetIds(), req, async (n) => {
        const k = await store.getKeyset(n);
        return k && { id: k.id, secret_ids: k.secretIds, policy_name: k.policyName ?? '' };
      });
      return { keysets: page.items, next_page_token: page.next_page_token };
    }),
    deleteKeyset: rpc('DeleteKeyset', async (req: admin.NameRequest) => deleted(await store.deleteKeyset(id('name', req.name)), `keyset '${req.name}'`)),

    putResource: rpc('PutResource', async (req: admin.PutResourceRequest) => {
      const rid = id('id', req.id);
      const bytes = Buffer.from(req.data ?? []);
      if (bytes.length === 0) throw badRequest('data must not be empty');
      if (bytes.length > MAX_VALUE_BYTES) throw badRequest(`data must be at most ${MAX_VALUE_BYTES} bytes (the OVMF secret page)`);
      await store.putResource({ id: rid, bytes, policyName: optionalPolicy(req.policy_name) }, ctx.now());
      return resourceInfo(rid);
    }),
    getResourceInfo: rpc('GetResourceInfo', (req: admin.NameRequest) => resourceInfo(id('name', req.name))),
    listResources: rpc('ListResources', async (req: admin.ListRequest) => {
      const page = await pageOf('resources', await store.listResourceIds(), req, (n) => resourceInfo(n).catch(ifGone));
      return { resources: page.items, next_page_token: page.next_page_token };
    }),
    deleteResource: rpc('DeleteResource', async (req: admin.NameRequest) =>
      deleted(await store.deleteResource(id('name', req.name)), `resource '${req.name}'`),
    ),

    createReportKey: rpc('CreateReportKey', async (req: admin.CreateReportKeyRequest) => {
      const kid = id('id', req.id);
      // A signing key replaced by accident would invalidate every report verifier: delete first to rotate.
      if (await store.getReportKey(kid)) throw new AdminError(status.ALREADY_EXISTS, `report key '${kid}' already exists (delete it first to rotate)`);
      let key;
      if (req.private_key_pem) {
        if (req.private_key_pem.length > MAX_PEM_CHARS) throw badRequest(`private_key_pem must be at most ${MAX_PEM_CHARS} characters`);
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
      const signLaunchDescription = req.sign_launch_description === true;
      await store.putReportKey({ id: kid, privateKeyPkcs8: pkcs8, policyName: optionalPolicy(req.policy_name), signLaunchDescription }, ctx.now());
      return reportKeyMessage(kid);
    }),
    getReportKey: rpc('GetReportKey', (req: admin.NameRequest) => reportKeyMessage(id('name', req.name))),
    listReportKeys: rpc('ListReportKeys', async (req: admin.ListRequest) => {
      const page = await pageOf('report-keys', await store.listReportKeyIds(), req, (n) => reportKeyMessage(n).catch(ifGone));
      return { keys: page.items, next_page_token: page.next_page_token };
    }),
    deleteReportKey: rpc('DeleteReportKey', async (req: admin.NameRequest) =>
      deleted(await store.deleteReportKey(id('name', req.name)), `report key '${req.name}'`),
    ),

    listConnections: rpc('ListConnections', async (req: admin.ListRequest) => {
      const all = new Map((await store.listConnections()).map((c) => [c.clientId, c]));
      const page = await pageOf('connections', [...all.keys()], req, async (cid) => {
        const c = all.get(cid)!;
        return {
          client_id: c.clientId,
          created_at: iso(c.createdAt),
          expires_at: iso(c.expiresAt),
          revoked_at: iso(c.revokedAt),
          sev_policy: c.sevPolicy,
          launch_digest_hex: c.launchDigest.toString('hex'),
        };
      });
      return { connections: page.items, next_page_token: page.next_page_token };
    }),
    revokeConnection: rpc('RevokeConnection', async (req: admin.RevokeConnectionRequest) => {
      uuid('client_id', req.client_id);
      if (await store.revokeConnection(req.client_id, ctx.now())) return {};
      // revoking twice is not an error: the connection is revoked either way
      const known = (await store.listConnections()).some((c) => c.clientId === req.client_id.toLowerCase());
      return deleted(known, `connection '${req.client_id}'`);
    }),

    importSnpCertificates: rpc('ImportSnpCertificates', async (req: admin.ImportSnpCertificatesRequest) => {
      const files = (req.files ?? []).map((f, i) => ({ name: f.name || `file ${i + 1}`, data: Buffer.from(f.data ?? []) }));
      if (files.length === 0) throw badRequest('no files');
      try {
        const items = await importSnpCertificates(store, files);
        return { imported: items.map((i) => snpCertInfo({ ...i, expiresAt: i.expiresAt ?? null })) };
      } catch (e) {
        if (e instanceof SnpImportError) throw badRequest(e.message);
        throw e;
      }
    }),
    listSnpCertificates: rpc('ListSnpCertificates', async (req: admin.ListRequest) => {
      const all = new Map((await store.listSnpCertificates()).map((r) => [r.key, r]));
      const page = await pageOf('snp-certificates', [...all.keys()], req, async (k) => {
        const r = all.get(k);
        return r && snpCertInfo(r);
      });
      return { certificates: page.items, next_page_token: page.next_page_token };
    }),

    listAudit: rpc('ListAudit', async (req: admin.ListAuditRequest) => {
      let since: Date | undefined;
      if (req.since) {
        if (!/^\d{4}-\d{2}-\d{2}([T ][0-9:.]+(Z|[+-]\d{2}:?\d{2})?)?$/.test(req.since)) throw badRequest('since must be an ISO-8601 time');
        since = new Date(req.since);
        if (Number.isNaN(since.getTime())) throw badRequest('since must be an ISO-8601 time');
      }
      // launch ids are recorded as received, so any text may be looked up — but bounded, and never control characters
      for (const [field, v] of [
        ['launch_id', req.launch_id],
        ['ref_id', req.ref_id],
      ] as const) {
        if (v && (v.length > MAX_ID_CHARS || CONTROL_RE.test(v)))
          throw badRequest(`${field} must be at most ${MAX_ID_CHARS} characters without control characters`);
      }
      const limit = Math.min(req.limit || DEFAULT_AUDIT_LIMIT, MAX_AUDIT_LIMIT);
      const afterParts = readPageToken('audit', req.page_token, 2);
      const after = afterParts && { at: new Date(afterParts[0]!), id: Number(afterParts[1]) };
      if (after && (Number.isNaN(after.at.getTime()) || !Number.isSafeInteger(after.id))) throw badRequest('page_token is not a token of this listing');
      const pageLimit = Math.min(limit, MAX_PAGE_SIZE);
      const found = await store.listAudit({ since, launchId: req.launch_id || undefined, refId: req.ref_id || undefined, limit: pageLimit + 1, after });
      const entries: typeof found = [];
      let bytes = 0;
      for (const e of found.slice(0, pageLimit)) {
        const n = JSON.stringify(e).length;
        if (entries.length > 0 && bytes + n > MAX_PAGE_BYTES) break;
        entries.push(e);
        bytes += n;
      }
      // a page shorter than asked for (the byte cap or the page size) says where the next one starts
      const more = found.length > entries.length && limit > entries.length;
      const last = entries[entries.length - 1];
      return {
        next_page_token: more && last ? pageToken('audit', [last.at.toISOString(), String(last.id)]) : '',
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

    putKbsResource: rpc('PutKbsResource', async (req: admin.PutKbsResourceRequest) => {
      const path = kbsPath(req.path);
      const bytes = Buffer.from(req.data ?? []);
      if (bytes.length === 0) throw badRequest('data must not be empty');
      if (bytes.length > KBS_MAX_RESOURCE_BYTES) throw badRequest(`data must be at most ${KBS_MAX_RESOURCE_BYTES} bytes (1 MiB)`);
      await store.putKbsResource({ id: path, bytes, policyName: optionalPolicy(req.policy_name) }, ctx.now());
      return kbsResourceInfo(path);
    }),
    getKbsResourceInfo: rpc('GetKbsResourceInfo', (req: admin.NameRequest) => kbsResourceInfo(kbsPath(req.name))),
    listKbsResources: rpc('ListKbsResources', async (req: admin.ListRequest) => {
      const page = await pageOf('kbs-resources', await store.listKbsResourceIds(), req, (n) => kbsResourceInfo(n).catch(ifGone));
      return { resources: page.items, next_page_token: page.next_page_token };
    }),
    deleteKbsResource: rpc('DeleteKbsResource', async (req: admin.NameRequest) =>
      deleted(await store.deleteKbsResource(kbsPath(req.name)), `KBS resource '${req.name}'`),
    ),
    // Owner tokens for the attestation service: 256 random bits, shown once; only their SHA-256 is stored.
    createOwner: rpc('CreateOwner', async (req: admin.NameRequest) => {
      const name = id('name', req.name);
      const token = `kbo_${randomBytes(32).toString('base64url')}`;
      await store.createOwnerToken({ name, tokenSha256: createHash('sha256').update(token, 'utf8').digest() }, ctx.now());
      ctx.audit.record({ event: 'owner', outcome: 'created', detail: { name } });
      return { name, token };
    }),
    listOwners: rpc('ListOwners', async (req: admin.ListRequest) => {
      const all = new Map((await store.listOwners()).map((o) => [o.name, o]));
      const page = await pageOf('owners', [...all.keys()], req, async (n) => ({ name: n, created_at: iso(all.get(n)!.createdAt) }));
      return { owners: page.items, next_page_token: page.next_page_token };
    }),
    deleteOwner: rpc('DeleteOwner', async (req: admin.NameRequest) => {
      const name = id('name', req.name);
      const gone = await store.deleteOwner(name);
      if (gone) ctx.audit.record({ event: 'owner', outcome: 'deleted', detail: { name } });
      return deleted(gone, `owner '${name}'`);
    }),
  };
}

function snpCertInfo(r: { key: string; kind: string; product: string; source: string; der: Buffer; expiresAt: Date | null }): admin.SnpCertificateInfo {
  return { key: r.key, kind: r.kind, product: r.product, source: r.source, size: r.der.length, expires_at: r.expiresAt ? r.expiresAt.toISOString() : '' };
}
