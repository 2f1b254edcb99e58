import { assertRepresentablePolicy, isSevError } from '@kb/sev';
import type { keybroker } from '@kb/grpc-api';
import type { BrokerContext } from '../context';
import type { LaunchSessions } from '../core/launch-session';
import { BrokerError, invalid } from '../errors';
import { peerAddress, RateLimiter } from '../rate-limit';
import type { CallInfo } from '../unary';
import { ChainRefused, type ChainCache } from '../core/chain-cache';
import { base64Field } from './validate';

/** A full Rome+ chain is 11536 bytes; leave room for longer future layouts, nothing more. */
export const MAX_CHAIN_BYTES = 16 * 1024;

/** GetBundle: the simple-kbs front-end of the launch-session service (core/launch-session.ts). */
export function getBundleHandler(ctx: BrokerContext, chains: ChainCache, sessions: LaunchSessions) {
  const limiter = new RateLimiter({ ratePerSecond: ctx.config.bundleRatePerSecond, burst: ctx.config.bundleBurst });

  return async (req: keybroker.BundleRequest, info: CallInfo): Promise<keybroker.BundleResponse> => {
    if (!limiter.take(peerAddress(info.peer))) throw new BrokerError('exhausted', 'too many GetBundle requests from this peer; retry later');
    const chain = base64Field('CertificateChain', req.CertificateChain, { max: MAX_CHAIN_BYTES });
    try {
      assertRepresentablePolicy(req.Policy);
    } catch (e) {
      if (isSevError(e)) throw invalid(`Policy: ${e.message}`);
      throw e;
    }
    let platform;
    try {
      platform = chains.verify(chain);
    } catch (e) {
      if (!(e instanceof ChainRefused)) throw e;
      ctx.audit.record({ event: 'bundle', outcome: 'refused', peer: info.peer, refId: info.refId, detail: { reason: e.message, code: e.reason.code } });
      if (e.malformed) throw invalid(`CertificateChain is not a SEV certificate chain: ${e.message}`);
      throw new BrokerError('denied', 'certificate chain not trusted', e.message);
    }
    const session = await sessions.open({ platform, policy: req.Policy, event: 'bundle' }, info);
    return {
      GuestOwnerPublicKey: session.godhCert.toString('base64'),
      LaunchBlob: session.launchBlob.toString('base64'),
      LaunchId: session.launchId,
    };
  };
}
