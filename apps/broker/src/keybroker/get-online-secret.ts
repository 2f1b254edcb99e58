import { createCipheriv, randomBytes } from 'node:crypto';
import type { keybroker } from '@kb/grpc-api';
import type { BrokerContext } from '../context';
import { BrokerError, denied, fromStore } from '../errors';
import { encodeBincodeMap } from '../secret-types/bincode';
import { checkDeadline, type CallInfo } from '../unary';
import { authorize, readRelease } from '../core/release';
import { secretRequests, uuidField } from './validate';

/**
 * `connection` is not served online: in simple-kbs anyone holding a client id could mint new connections with it.
 * A running guest asks for keys and resources (the online KBC), bundles and reports.
 */
const ONLINE_TYPES = ['key', 'resource', 'bundle', 'report'] as const;

/**
 * GetOnlineSecret: policies are evaluated against the launch facts stored with the connection (proven at GetSecret
 * time), and the answer is bincode {request GUID → payload} under AES-256-GCM with the connection key — the layout
 * the online SEV KBC decrypts (random 96-bit IV, no AAD, tag appended).
 */
export function getOnlineSecretHandler(ctx: BrokerContext) {
  return async (req: keybroker.OnlineSecretRequest, info: CallInfo): Promise<keybroker.OnlineSecretResponse> => {
    const clientId = uuidField('ClientId', req.ClientId);
    const items = secretRequests(req.SecretRequests, ctx.config.maxSecretsPerRequest, ONLINE_TYPES);
    const requested = items.map((i) => ({ guid: i.guid, type: i.type, id: i.id }));
    const base = { clientId, peer: info.peer, refId: info.refId };
    try {
      const found = ctx.store.getValidConnection(clientId, ctx.now());
      const reads = readRelease(ctx, items); // overlaps the lookup; used only for a valid connection
      const conn = await found;
      if (!conn) throw denied('connection unknown, expired or revoked');
      const release = await authorize(ctx, conn, await reads);
      const plain = encodeBincodeMap(items.map((it, i) => [it.guid, release.payloads[i]!] as const));
      checkDeadline(info, 'the release');
      await release.commit({ ...base, launchId: conn.launchId, event: 'online-secret', outcome: 'released', detail: { requested } });
      const iv = randomBytes(12);
      const cipher = createCipheriv('aes-256-gcm', conn.key, iv);
      const ct = Buffer.concat([cipher.update(plain), cipher.final(), cipher.getAuthTag()]);
      conn.key.fill(0);
      return { Payload: ct.toString('base64'), IV: iv.toString('base64') };
    } catch (e) {
      // the database lost after the launch id was consumed is recorded too: that launch needs a new GetBundle
      const err = fromStore(e);
      if (err instanceof BrokerError && (err.kind === 'denied' || err.kind === 'timeout' || err.kind === 'unavailable')) {
        ctx.audit.record({ ...base, event: 'online-secret', outcome: 'refused', detail: { reason: err.detail, requested } });
      }
      throw err;
    }
  };
}
