import { randomBytes, randomUUID } from 'node:crypto';
import { assertRepresentablePolicy, describePolicy, isSevError, sessionFromAgreement } from '@kb/sev';
import type { keybroker } from '@kb/grpc-api';
import { jsonSafe } from '../audit';
import type { BrokerContext } from '../context';
import { BrokerError, invalid, timedOut, unavailable } from '../errors';
import { peerAddress, RateLimiter } from '../rate-limit';
import type { CallInfo } from '../unary';
import { ChainRefused, type ChainCache } from './chain-cache';
import type { EcdhPool } from './ecdh-pool';
import { base64Field } from './validate';

/** A full Rome+ chain is 11536 bytes; leave room for longer future layouts, nothing more. */
const MAX_CHAIN_BYTES = 16 * 1024;

/**
 * Counts unconsumed sessions without a query per GetBundle: the database count (which other replicas' sessions
 * also reach) is refreshed in the background every few seconds, and sessions created here since are added locally.
 * The cap is therefore approximate by a few seconds' worth of GetBundle calls — which the rate limit bounds.
 *
 * A background refresh that fails (the database away) is logged and retried on a later call, at most once a second:
 * it must never be a rejection nobody handles (that ended the process), and the count it had stays in use meanwhile.
 * Only a first count, which calls wait for, fails their calls (UNAVAILABLE) until one succeeds.
 */
class PendingSessions {
  private count = 0;
  private at = Number.NEGATIVE_INFINITY;
  private failedAt = Number.NEGATIVE_INFINITY;
  private refreshing: Promise<void> | undefined;
  constructor(private readonly ctx: BrokerContext) {}
  async current(): Promise<number> {
    const now = this.ctx.now().getTime();
    // Retries go by the monotonic clock: a failure must not stop them if the wall clock stands still or steps back.
    if (now - this.at >= REFRESH_MS && performance.now() - this.failedAt >= RETRY_MS && !this.refreshing) {
      const refresh = this.ctx.store.countPendingSessions(new Date(now)).then(
        (n) => {
          this.count = n;
          this.at = now;
          if (this.failedAt !== Number.NEGATIVE_INFINITY) this.ctx.logger.info('pending session count refreshed again');
          this.failedAt = Number.NEGATIVE_INFINITY;
        },
        (e: Error) => {
          if (this.failedAt === Number.NEGATIVE_INFINITY) this.ctx.logger.warn('pending session count refresh failed; retrying', { error: e.message });
          this.failedAt = performance.now();
          throw e;
        },
      );
      this.refreshing = refresh.catch(() => undefined).finally(() => (this.refreshing = undefined));
      if (this.at === Number.NEGATIVE_INFINITY) await refresh; // the first call waits for a real count
    } else if (this.at === Number.NEGATIVE_INFINITY && this.refreshing) {
      await this.refreshing; // another call's first count
      if (this.at === Number.NEGATIVE_INFINITY) throw unavailable('no pending session count yet: the database is unreachable');
    } else if (this.at === Number.NEGATIVE_INFINITY) {
      throw unavailable('no pending session count yet: the database was unreachable within the last second');
    }
    return this.count;
  }
  added(): void {
    this.count++;
  }
}

const REFRESH_MS = 5000;
const RETRY_MS = 1000;

export function getBundleHandler(ctx: BrokerContext, chains: ChainCache, ecdh: EcdhPool) {
  const limiter = new RateLimiter({ ratePerSecond: ctx.config.bundleRatePerSecond, burst: ctx.config.bundleBurst });
  const pending = new PendingSessions(ctx);

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
    if ((await pending.current()) >= ctx.config.maxPendingSessions) {
      throw new BrokerError('exhausted', 'too many launches in progress; retry later', 'pending session cap reached');
    }
    // TEK/TIK are random and need nothing from the agreement, so the session is stored while a worker does the ECDH.
    // If the agreement fails, the stored session is consumed at once: never handed out, it is not left pending either.
    const launchId = randomUUID();
    const now = ctx.now();
    // Committed with the session (one statement): a bundle whose session exists is never missing from the trail.
    const issued = {
      event: 'bundle',
      outcome: 'issued',
      launchId,
      peer: info.peer,
      refId: info.refId,
      at: now,
      detail: { policy: req.Policy, policyFlags: describePolicy(req.Policy), generation: platform.generation, trustedBy: platform.trustedBy, chipId: platform.chipId },
    };
    const tek = randomBytes(16);
    const tik = randomBytes(16);
    const [agreed, stored] = await Promise.allSettled([
      ecdh.agree(platform.pdhKey),
      ctx.store.createLaunchSession({
        id: launchId,
        tek,
        tik,
        sevPolicy: req.Policy,
        chipId: platform.chipId,
        generation: platform.generation,
        chainSha256: platform.chainSha256,
        createdAt: now,
        expiresAt: new Date(now.getTime() + ctx.config.sessionTtlSeconds * 1000),
      }, jsonSafe(issued)),
    ]);
    let session;
    try {
      if (stored.status === 'rejected') throw stored.reason;
      if (agreed.status === 'rejected') {
        await ctx.store.consumeLaunchSession(launchId, ctx.now()).catch(() => undefined);
        const reason = `the key agreement failed (${(agreed.reason as Error)?.message}); its session was withdrawn`;
        ctx.audit.record({ event: 'bundle', outcome: 'refused', launchId, peer: info.peer, refId: info.refId, detail: { reason } });
        throw agreed.reason;
      }
      session = sessionFromAgreement({ ...agreed.value, tek, tik, policy: req.Policy });
      session.tek.fill(0);
      session.tik.fill(0);
    } finally {
      // The sealed row holds the only copy of TEK/TIK that outlives this call; Z is never kept.
      for (const b of [tek, tik, agreed.status === 'fulfilled' ? agreed.value.z : undefined]) b?.fill(0);
    }
    if (info.signal.aborted) {
      // Nobody will receive this bundle: withdraw its session rather than leave it pending until it expires.
      await ctx.store.consumeLaunchSession(launchId, ctx.now()).catch(() => undefined);
      const reason = 'the deadline passed or the client went away before the bundle was handed out; its session was withdrawn';
      ctx.audit.record({ event: 'bundle', outcome: 'refused', launchId, peer: info.peer, refId: info.refId, detail: { reason } });
      throw timedOut(reason);
    }
    pending.added();
    return {
      GuestOwnerPublicKey: session.godhCert.toString('base64'),
      LaunchBlob: session.launchBlob.toString('base64'),
      LaunchId: launchId,
    };
  };
}

