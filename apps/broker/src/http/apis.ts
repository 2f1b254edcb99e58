import type { AdminAuth } from '../admin/auth';
import { attestationServiceApi } from '../attestation-service/routes';
import type { BrokerContext } from '../context';
import type { BrokerCore } from '../core';
import type { HttpApi } from './server';
import { kbsApi } from '../kbs/api';

/** What the front-ends share with the gRPC ones: the core (sessions, chains) and the admin token's check. */
export interface HttpApiDeps {
  core: BrokerCore;
  auth: AdminAuth;
}

/**
 * The JSON APIs the HTTP listener serves, each under its own prefix (the front-ends register here):
 * - `/sev/v1` — the attestation service libvirt proposed (register a VM once; /launch and /validate for its host);
 * - `/kbs/v0` — the Confidential Containers KBS protocol for SEV-SNP guests.
 * `GET /healthz` is served by the listener itself.
 */
export function httpApis(ctx: BrokerContext, deps: HttpApiDeps): HttpApi[] {
  return [attestationServiceApi(ctx, deps.core, deps.auth), kbsApi(ctx, ctx.kbs)];
}
