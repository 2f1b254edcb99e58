/**
 * The attestation service's HTTP routes under /sev/v1 (issue #15): a Fastify plugin on the broker's shared HTTP
 * listener (../http), every handler through httpRoute (the same call adapter as gRPC: reference, deadline, audit).
 * Bodies are validated against the schemas of openapi.json, strictly (no coercion, unknown fields refused, not
 * dropped), before a handler runs; handlers (service.ts) check again in the API's own words, so a request is refused
 * whole before anything is read or written.
 */

import Ajv2020 from 'ajv/dist/2020';
import type { FastifyPluginAsync, FastifyRequest } from 'fastify';
import type { AdminAuth } from '../admin/auth';
import type { BrokerContext } from '../context';
import type { BrokerCore } from '../core';
import { BrokerError } from '../errors';
import { httpRoute } from '../http/route';
import type { HttpApi } from '../http/server';
import { openapiDocument, schema } from './schemas';
import { AttestationService, type Caller } from './service';

export const BASE_PATH = '/sev/v1';
/** A firmware image (OVMF is 2–4 MiB; edk2 builds with everything stay far below this). */
export const FIRMWARE_BODY_LIMIT = 64 * 1024 * 1024;
/** Registrations: 64 secrets of 4 KiB as base64 and 16 OCA certificates stay under this. */
export const JSON_BODY_LIMIT = 512 * 1024;

export const unauthenticated = () => new BrokerError('unauthenticated', 'a valid owner or admin token is required (Authorization: Bearer TOKEN)');

/** JSON Schema 2020-12 (OpenAPI 3.1's dialect), strict: a wrong type is refused, never coerced; extra fields refused. */
function validatorCompiler() {
  const ajv = new Ajv2020({ strict: false, allErrors: false, coerceTypes: false, removeAdditional: false, useDefaults: false });
  return ({ schema: s }: { schema: object }) => ajv.compile(s);
}

export function attestationServiceApi(ctx: BrokerContext, core: BrokerCore, auth: AdminAuth): HttpApi {
  const service = new AttestationService(ctx, core);

  /** The admin token, or an owner's: an owner token is looked up by its SHA-256, the admin's compared in constant time. */
  async function caller(req: FastifyRequest): Promise<Caller> {
    const h = req.headers.authorization;
    if (typeof h !== 'string' || !h.startsWith('Bearer ')) throw unauthenticated();
    const token = h.slice(7).trim();
    if (!token || token.length > 512) throw unauthenticated();
    if (auth.checkToken(token)) return { admin: true };
    const owner = await service.ownerForToken(token);
    if (!owner) throw unauthenticated();
    return { admin: false, owner };
  }
  const param = (req: FastifyRequest, k: string) => (req.params as Record<string, unknown>)[k];
  const owner = <T>(rpc: string, fn: (c: Caller, req: FastifyRequest, info: Parameters<Parameters<typeof httpRoute>[2]>[1]) => Promise<T>, status = 200) =>
    httpRoute(ctx, rpc, async (req, info, reply) => {
      const result = await fn(await caller(req), req, info);
      reply.code(status);
      return result;
    });
  const uuidParams = { type: 'object', required: ['uuid'], properties: { uuid: { type: 'string', maxLength: 64 } } };

  const plugin: FastifyPluginAsync = async (app) => {
    app.setValidatorCompiler(validatorCompiler());
    app.addContentTypeParser('application/octet-stream', { parseAs: 'buffer', bodyLimit: FIRMWARE_BODY_LIMIT }, (_req, body, done) => done(null, body));
    app.get('/openapi.json', async (_req, reply) => reply.header('content-type', 'application/json').send(openapiDocument()));
    app.get(
      '/vm',
      { schema: { querystring: { type: 'object', properties: { 'page-token': { type: 'string', maxLength: 64 } } } } },
      owner('GET /sev/v1/vm', (c, req) => service.list(c, (req.query as Record<string, unknown>)['page-token'])),
    );
    app.post(
      '/vm/:uuid',
      { bodyLimit: JSON_BODY_LIMIT, schema: { params: uuidParams, body: schema('VmRegistration') } },
      owner('POST /sev/v1/vm', (c, req, info) => service.register(c, param(req, 'uuid'), req.body, info), 201),
    );
    app.put(
      '/vm/:uuid',
      { bodyLimit: JSON_BODY_LIMIT, schema: { params: uuidParams, body: schema('VmRegistration') } },
      owner('PUT /sev/v1/vm', (c, req, info) => service.replace(c, param(req, 'uuid'), req.body, info)),
    );
    app.get(
      '/vm/:uuid',
      { schema: { params: uuidParams } },
      owner('GET /sev/v1/vm/{uuid}', (c, req) => service.get(c, param(req, 'uuid'))),
    );
    app.delete(
      '/vm/:uuid',
      { schema: { params: uuidParams } },
      owner('DELETE /sev/v1/vm', (c, req, info) => service.remove(c, param(req, 'uuid'), info), 204),
    );
    app.post(
      '/vm/:uuid/launch',
      { schema: { params: uuidParams, body: schema('LaunchRequest') } },
      httpRoute(ctx, 'POST /sev/v1/vm/{uuid}/launch', (req, info) => service.launch(param(req, 'uuid'), req.body, info)),
    );
    app.post(
      '/vm/:uuid/validate',
      { schema: { params: uuidParams, body: schema('ValidateRequest') } },
      httpRoute(ctx, 'POST /sev/v1/vm/{uuid}/validate', (req, info) => service.validate(param(req, 'uuid'), req.body, info)),
    );
    app.post(
      '/firmware',
      { bodyLimit: FIRMWARE_BODY_LIMIT },
      owner('POST /sev/v1/firmware', (c, req, info) => service.addFirmware(c, req.body, info).then(({ sha256 }) => ({ sha256 })), 201),
    );
    app.get(
      '/firmware',
      owner('GET /sev/v1/firmware', () => service.listFirmware()),
    );
    app.delete(
      '/firmware/:sha256',
      { schema: { params: { type: 'object', required: ['sha256'], properties: { sha256: { type: 'string', maxLength: 64 } } } } },
      owner('DELETE /sev/v1/firmware', (c, req, info) => service.deleteFirmware(c, param(req, 'sha256'), info), 204),
    );
  };
  return { prefix: BASE_PATH, plugin };
}
