import type { BrokerContext } from '../context';
import type { HttpApi } from './server';

/**
 * The JSON APIs the HTTP listener serves, each under its own prefix (the front-ends register here):
 * - `/sev/v1` — the attestation service libvirt proposed (register a VM once; /launch and /validate for its host);
 * - `/kbs/v0` — the Confidential Containers KBS protocol for SEV-SNP guests.
 * `GET /healthz` is served by the listener itself.
 */
export function httpApis(_ctx: BrokerContext): HttpApi[] {
  return [];
}
