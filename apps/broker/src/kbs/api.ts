/**
 * The KBS protocol as an HTTP API under `/kbs/v0` (../shared/specs/kbs-protocol.md §1.1), registered on the broker's
 * HTTP listener (http/server.ts): every route goes through httpRoute, so each call has a reference, a deadline, the
 * audit trail's back-pressure and one `call` audit entry per failure with the reason (`kbctl audit --ref REF`).
 * Failures answer with the KBS status and the §7 body ({"type", "detail"}), never the reason.
 */
import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify';
import type { SnpRoots } from '@kb/sev';
import type { BrokerContext } from '../context';
import { BrokerError, type HttpFailure } from '../errors';
import { checkDeadline } from '../call';
import { httpRoute } from '../http/route';
import type { HttpApi } from '../http/server';
import { handleAttest } from './attest';
import { handleAuth } from './auth';
import { evidenceOnlyCertificates, type CertificateSource } from './certificate-source';
import { KBS_ERROR_TYPE_PREFIX, isKbsError, KbsError, type KbsErrorType } from './errors';
import { handleResource } from './resource';
import { sessionCookie, sessionIdFromCookie, storeTokenSigner, type KbsDeps, type KbsOptions, type KbsReply, type KbsRequestMeta } from './service';
import { KBS_TOKEN_JWKS_PATH } from './token';

export const KBS_PREFIX = '/kbs/v0';
/** SNP evidence with ARK and ASK as integer arrays is under 30 KiB; clients may add init-data (§13). */
export const KBS_BODY_LIMIT = 1024 * 1024;

export interface KbsApiOptions extends Partial<Omit<KbsOptions, 'certificates'>> {
  certificates?: CertificateSource;
  snpRoots?: SnpRoots;
}

/** KBS failure → the broker's failure class (for logs and metrics) with the KBS status and type. */
function toBroker(e: unknown): unknown {
  if (!isKbsError(e)) return e;
  const kind =
    e.type === 'Unavailable'
      ? 'unavailable'
      : e.type === 'InternalError'
        ? 'internal'
        : e.type === 'InvalidRequest' || e.type === 'PluginNotFound' || e.type === 'ResourceNotFound'
          ? 'invalid'
          : 'denied';
  return new BrokerError(kind, e.publicDetail, e.reason, { status: e.status, type: e.type });
}

/** §7.1 body; failures found by Fastify itself (not JSON, too large) get the type of their class. */
export function kbsErrorBody(f: HttpFailure): unknown {
  const byClass: Record<string, KbsErrorType> = {
    invalid: 'InvalidRequest',
    denied: 'AttestationError',
    exhausted: 'Unavailable',
    timeout: 'Unavailable',
    unavailable: 'Unavailable',
    internal: 'InternalError',
  };
  return { type: `${KBS_ERROR_TYPE_PREFIX}${f.type ?? byClass[f.error] ?? 'InternalError'}`, detail: f.message };
}

export function kbsApi(ctx: BrokerContext, o: KbsApiOptions = {}): HttpApi {
  const deps: KbsDeps = {
    store: ctx.store,
    audit: ctx.audit,
    now: ctx.now,
    options: {
      sampleTee: o.sampleTee ?? ctx.config.kbsSampleTee ?? false,
      sessionTtlSeconds: o.sessionTtlSeconds ?? 300,
      tokenTtlSeconds: o.tokenTtlSeconds ?? 300,
      defaultPolicy: o.defaultPolicy ?? ctx.config.defaultPolicy,
      certificates: o.certificates ?? evidenceOnlyCertificates,
      ...(o.snpRoots ? { snpRoots: o.snpRoots } : {}),
      ...(o.allowV2Reports ? { allowV2Reports: true } : {}),
    },
    signer: storeTokenSigner(ctx.store),
  };
  const send = (reply: FastifyReply, r: KbsReply) => {
    if (r.cookie) reply.header('set-cookie', sessionCookie(r.cookie));
    reply.header('content-type', 'application/json');
    return r.body;
  };
  const route = (rpc: string, fn: (req: FastifyRequest, meta: KbsRequestMeta) => Promise<KbsReply>) =>
    httpRoute(
      ctx,
      rpc,
      async (req, info, reply) => {
        try {
          return send(reply, await fn(req, { peer: info.peer, ref: info.refId, checkDeadline: (before) => checkDeadline(info, before) }));
        } catch (e) {
          throw toBroker(e);
        }
      },
      kbsErrorBody,
    );
  const header = (req: FastifyRequest, name: string) => {
    const v = req.headers[name];
    return Array.isArray(v) ? v.join('; ') : v;
  };

  const plugin: FastifyPluginAsync = async (app) => {
    // the body as text, parsed by each step: a body that is not JSON is the step's own 401 (§2.2, §3.5), any
    // content type is accepted (clients send application/json; no client sends anything else)
    app.removeAllContentTypeParsers();
    app.addContentTypeParser('*', { parseAs: 'buffer', bodyLimit: KBS_BODY_LIMIT }, (_req, body, done) => done(null, body));
    const json = (req: FastifyRequest, step: string): unknown => {
      const raw = req.body;
      if (!Buffer.isBuffer(raw) || raw.length === 0) throw new KbsError('AttestationError', `${step}: empty body`);
      try {
        return JSON.parse(raw.toString('utf8'));
      } catch {
        throw new KbsError(
          'AttestationError',
          `${step}: the body is not JSON`,
          step === 'auth' ? 'Attestation error: RCAR handshake Auth failed: deserialize Request' : undefined,
        );
      }
    };
    app.post(
      '/auth',
      { bodyLimit: KBS_BODY_LIMIT },
      route('POST /kbs/v0/auth', (req) => handleAuth(deps, json(req, 'auth'))),
    );
    app.post(
      '/attest',
      { bodyLimit: KBS_BODY_LIMIT },
      route('POST /kbs/v0/attest', (req, meta) => {
        const sessionId = sessionIdFromCookie(header(req, 'cookie'));
        if (!sessionId) throw new KbsError('AttestationError', 'attest: no kbs-session-id cookie');
        return handleAttest(deps, sessionId, json(req, 'attest'), meta);
      }),
    );
    app.get(
      '/resource/*',
      route('GET /kbs/v0/resource', (req, meta) => {
        const rest = (req.params as { '*': string })['*'];
        return handleResource(
          deps,
          rest.split('/'),
          { sessionId: sessionIdFromCookie(header(req, 'cookie')), authorization: header(req, 'authorization') },
          meta,
        );
      }),
    );
    app.get(
      KBS_TOKEN_JWKS_PATH.slice(KBS_PREFIX.length),
      route(`GET ${KBS_TOKEN_JWKS_PATH}`, async () => ({ body: (await deps.signer()).jwks() })),
    );
    // every other path under /kbs/v0: trustee routes an unknown first segment to a plugin that does not exist (§1.3)
    app.all(
      '/*',
      route('KBS unknown path', async (req) => {
        const first = ((req.params as { '*': string })['*'] ?? '').split('/')[0] ?? '';
        if (['auth', 'attest', 'resource'].includes(first))
          throw new KbsError('InvalidRequest', `${req.method} ${req.url.split('?')[0]?.slice(0, 200)} is not served`);
        throw new KbsError('PluginNotFound', `unknown plugin ${JSON.stringify(first.slice(0, 100))}`);
      }),
    );
  };
  return { prefix: KBS_PREFIX, plugin, errorBody: kbsErrorBody };
}
