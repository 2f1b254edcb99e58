/**
 * The attestation service's HTTP routes under /sev/v1 (issue #15), registered as a plugin on the broker's shared HTTP
 * listener (../http). Bodies are validated against the schemas of openapi.json before a handler runs; handlers
 * (service.ts) check again in the API's own words, so a request is refused whole before anything is read or written.
 */
import { timingSafeEqual, createHash } from 'node:crypto';
import type { BrokerContext } from '../context';
import type { BrokerCore } from '../core';
import { BrokerError } from '../errors';
import type { CallInfo } from '../unary';
import { openapiDocument, schema } from './schemas';
import { AttestationService, type Caller } from './service';

export const BASE_PATH = '/sev/v1';
/** A firmware image (OVMF is 2–4 MiB; edk2 builds with everything stay far below this). */
export const FIRMWARE_BODY_LIMIT = 64 * 1024 * 1024;
/** Registrations and host calls: a full chain is ~15 KB as base64; 64 secrets of 4 KiB as base64 ~ 350 KB. */
export const JSON_BODY_LIMIT = 512 * 1024;

/** The subset of Fastify this plugin uses (kept structural so the service compiles on its own). */
export interface HttpRequest {
  headers: Record<string, string | string[] | undefined>;
  params: unknown;
  query: unknown;
  body: unknown;
}
export interface HttpReply {
  code(status: number): HttpReply;
  header(name: string, value: string): HttpReply;
  send(payload?: unknown): HttpReply;
}
export interface HttpApp {
  route(opts: {
    method: string;
    url: string;
    schema?: Record<string, unknown>;
    bodyLimit?: number;
    handler: (req: HttpRequest, reply: HttpReply) => Promise<unknown>;
  }): unknown;
  addContentTypeParser(type: string, opts: { parseAs: 'buffer'; bodyLimit: number }, parser: (req: HttpRequest, body: Buffer, done: (err: Error | null, body?: unknown) => void) => void): unknown;
}

/** How the HTTP layer runs a handler: with a CallInfo (peer, reference, deadline signal) and its error adapter. */
export type Run = <T>(req: HttpRequest, reply: HttpReply, rpc: string, fn: (info: CallInfo) => Promise<T>) => Promise<unknown>;

export const unauthenticated = () => new BrokerError('unauthenticated' as never, 'a valid owner or admin token is required (Authorization: Bearer TOKEN)');

export interface AttestationRoutesOptions {
  ctx: BrokerContext;
  core: BrokerCore;
  /** the admin token (compared by SHA-256 in constant time) */
  adminToken: string;
  run: Run;
}

export function attestationRoutes(opts: AttestationRoutesOptions) {
  const service = new AttestationService(opts.ctx, opts.core);
  const adminDigest = createHash('sha256').update(opts.adminToken, 'utf8').digest();
  const { run } = opts;

  /** The admin token, or an owner's: both hashed first so the comparison never depends on the caller's length. */
  async function caller(req: HttpRequest): Promise<Caller> {
    const h = req.headers.authorization;
    if (typeof h !== 'string' || !h.startsWith('Bearer ')) throw unauthenticated();
    const token = h.slice(7).trim();
    if (!token || token.length > 512) throw unauthenticated();
    if (timingSafeEqual(createHash('sha256').update(token, 'utf8').digest(), adminDigest)) return { admin: true };
    const owner = await service.ownerForToken(token);
    if (!owner) throw unauthenticated();
    return { admin: false, owner };
  }

  const uuidParams = { type: 'object', required: ['uuid'], properties: { uuid: { type: 'string', maxLength: 64 } } };

  return async function plugin(app: HttpApp): Promise<void> {
    app.addContentTypeParser('application/octet-stream', { parseAs: 'buffer', bodyLimit: FIRMWARE_BODY_LIMIT }, (_req, body, done) => done(null, body));
    const owner = (rpc: string, fn: (c: Caller, req: HttpRequest, info: CallInfo) => Promise<unknown>, status = 200) =>
      async (req: HttpRequest, reply: HttpReply) =>
        run(req, reply, rpc, async (info) => {
          const result = await fn(await caller(req), req, info);
          reply.code(status);
          return result;
        });
    const param = (req: HttpRequest, k: string) => (req.params as Record<string, unknown>)[k];

    app.route({ method: 'GET', url: `${BASE_PATH}/openapi.json`, handler: async (_req, reply) => reply.header('content-type', 'application/json').send(openapiDocument()) });
    app.route({
      method: 'GET',
      url: `${BASE_PATH}/vm`,
      schema: { querystring: { type: 'object', properties: { 'page-token': { type: 'string', maxLength: 64 } } } },
      handler: owner('listVms', (c, req) => service.list(c, (req.query as Record<string, unknown>)['page-token'])),
    });
    app.route({
      method: 'POST',
      url: `${BASE_PATH}/vm/:uuid`,
      bodyLimit: JSON_BODY_LIMIT,
      schema: { params: uuidParams, body: schema('VmRegistration') },
      handler: owner('registerVm', (c, req, info) => service.register(c, param(req, 'uuid'), req.body, info), 201),
    });
    app.route({
      method: 'PUT',
      url: `${BASE_PATH}/vm/:uuid`,
      bodyLimit: JSON_BODY_LIMIT,
      schema: { params: uuidParams, body: schema('VmRegistration') },
      handler: owner('replaceVm', (c, req, info) => service.replace(c, param(req, 'uuid'), req.body, info)),
    });
    app.route({ method: 'GET', url: `${BASE_PATH}/vm/:uuid`, schema: { params: uuidParams }, handler: owner('getVm', (c, req) => service.get(c, param(req, 'uuid'))) });
    app.route({
      method: 'DELETE',
      url: `${BASE_PATH}/vm/:uuid`,
      schema: { params: uuidParams },
      handler: owner('deleteVm', (c, req, info) => service.remove(c, param(req, 'uuid'), info).then(() => undefined), 204),
    });
    app.route({
      method: 'POST',
      url: `${BASE_PATH}/vm/:uuid/launch`,
      bodyLimit: JSON_BODY_LIMIT,
      schema: { params: uuidParams, body: schema('LaunchRequest') },
      handler: async (req, reply) => run(req, reply, 'launchVm', (info) => service.launch(param(req, 'uuid'), req.body, info)),
    });
    app.route({
      method: 'POST',
      url: `${BASE_PATH}/vm/:uuid/validate`,
      bodyLimit: JSON_BODY_LIMIT,
      schema: { params: uuidParams, body: schema('ValidateRequest') },
      handler: async (req, reply) => run(req, reply, 'validateVm', (info) => service.validate(param(req, 'uuid'), req.body, info)),
    });
    app.route({
      method: 'POST',
      url: `${BASE_PATH}/firmware`,
      bodyLimit: FIRMWARE_BODY_LIMIT,
      handler: owner('addFirmware', (c, req, info) => service.addFirmware(c, req.body, info).then(({ sha256 }) => ({ sha256 })), 201),
    });
    app.route({ method: 'GET', url: `${BASE_PATH}/firmware`, handler: owner('listFirmware', () => service.listFirmware()) });
    app.route({
      method: 'DELETE',
      url: `${BASE_PATH}/firmware/:sha256`,
      schema: { params: { type: 'object', required: ['sha256'], properties: { sha256: { type: 'string', maxLength: 64 } } } },
      handler: owner('deleteFirmware', (c, req, info) => service.deleteFirmware(c, param(req, 'sha256'), info).then(() => undefined), 204),
    });
  };
}
