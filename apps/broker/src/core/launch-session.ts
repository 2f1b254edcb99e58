/**
 * The launch-session service both front-ends use: GetBundle (gRPC, simple-kbs) and `/launch` (the attestation
 * service, issue #15) open sessions here; GetSecret and `/validate` consume them here, exactly once, and prove the
 * measurement against them. The sessions live in the store (sealed TEK/TIK), so they survive restarts and any replica
 * on the same database can finish a launch another one began.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { describePolicy, isSevError, sessionFromAgreement, verifyMeasurement } from '@kb/sev';
import type { AuditEntryInput, ConsumedLaunchSession, JsonValue, LaunchSession, LaunchSessionInput } from '@kb/store';
import { jsonSafe } from '../audit';
import type { BrokerContext } from '../context';
import { BrokerError, denied, timedOut, unavailable } from '../errors';
import type { TrustedPlatform } from './chain-cache';
import type { EcdhPool } from '../keybroker/ecdh-pool';
import type { CallInfo } from '../unary';

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

export interface OpenSessionInput {
  platform: TrustedPlatform;
  policy: number;
  /** the audit event of the front-end ('bundle' for GetBundle, 'vm-launch' for /launch) */
  event: string;
  /** extra audit detail (e.g. the VM) */
  detail?: Record<string, JsonValue>;
  /**
   * The front-end's own write of the session row and its audit entry, instead of store.createLaunchSession (the
   * attestation service writes the session with its VM binding, only while the registration it decided on is current).
   * Resolving undefined means it wrote nothing: open() then rejects with `stale` (and no session exists).
   */
  write?: (session: LaunchSessionInput, audit: AuditEntryInput) => Promise<LaunchSession | undefined>;
  /** what open() rejects with when `write` wrote nothing (the front-end's own error, e.g. to re-decide and retry) */
  stale?: () => Error;
}

export interface OpenedSession {
  launchId: string;
  /** the guest owner's PDH certificate (libvirt `<dhCert>`, GetBundle GuestOwnerPublicKey) */
  godhCert: Buffer;
  /** the launch blob (libvirt `<session>`, GetBundle LaunchBlob) */
  launchBlob: Buffer;
}

export class LaunchSessions {
  private readonly pending: PendingSessions;
  constructor(
    private readonly ctx: BrokerContext,
    private readonly ecdh: EcdhPool,
  ) {
    this.pending = new PendingSessions(ctx);
  }

  /**
   * Opens a session for a verified platform: random TEK/TIK, stored sealed (with its audit row, one statement) while a
   * worker does the ECDH with the PDH. If the agreement fails or nobody will receive the answer, the stored session
   * is consumed at once: never handed out, it is not left pending either.
   */
  async open(input: OpenSessionInput, info: CallInfo): Promise<OpenedSession> {
    const { ctx } = this;
    const { platform, policy, event } = input;
    if ((await this.pending.current()) >= ctx.config.maxPendingSessions) {
      throw new BrokerError('exhausted', 'too many launches in progress; retry later', 'pending session cap reached');
    }
    const launchId = randomUUID();
    const now = ctx.now();
    const expiresAt = new Date(now.getTime() + ctx.config.sessionTtlSeconds * 1000);
    // Committed with the session (one statement): a bundle whose session exists is never missing from the trail.
    const issued = {
      event,
      outcome: 'issued',
      launchId,
      peer: info.peer,
      refId: info.refId,
      at: now,
      detail: {
        policy,
        policyFlags: describePolicy(policy),
        generation: platform.generation,
        trustedBy: platform.trustedBy,
        chipId: platform.chipId,
        ...input.detail,
      },
    };
    const tek = randomBytes(16);
    const tik = randomBytes(16);
    const row: LaunchSessionInput = {
      id: launchId,
      tek,
      tik,
      sevPolicy: policy,
      chipId: platform.chipId,
      generation: platform.generation,
      chainSha256: platform.chainSha256,
      createdAt: now,
      expiresAt,
    };
    const [agreed, stored] = await Promise.allSettled([
      this.ecdh.agree(platform.pdhKey),
      input.write ? input.write(row, jsonSafe(issued)) : ctx.store.createLaunchSession(row, jsonSafe(issued)),
    ]);
    let session;
    try {
      if (stored.status === 'rejected') throw stored.reason;
      if (stored.value === undefined) throw input.stale?.() ?? new Error('the launch session was not written');
      if (agreed.status === 'rejected') {
        await ctx.store.consumeLaunchSession(launchId, ctx.now()).catch(() => undefined);
        const reason = `the key agreement failed (${(agreed.reason as Error)?.message}); its session was withdrawn`;
        ctx.audit.record({ event, outcome: 'refused', launchId, peer: info.peer, refId: info.refId, detail: { reason } });
        throw agreed.reason;
      }
      session = sessionFromAgreement({ ...agreed.value, tek, tik, policy });
      session.tek.fill(0);
      session.tik.fill(0);
    } finally {
      // The sealed row holds the only copy of TEK/TIK that outlives this call; Z is never kept.
      for (const b of [tek, tik, agreed.status === 'fulfilled' ? agreed.value.z : undefined]) b?.fill(0);
    }
    if (info.signal.aborted) {
      // Nobody will receive this answer: withdraw its session rather than leave it pending until it expires.
      await ctx.store.consumeLaunchSession(launchId, ctx.now()).catch(() => undefined);
      const reason = 'the deadline passed or the client went away before the session was handed out; its session was withdrawn';
      ctx.audit.record({ event, outcome: 'refused', launchId, peer: info.peer, refId: info.refId, detail: { reason } });
      throw timedOut(reason);
    }
    this.pending.added();
    return { launchId, godhCert: session.godhCert, launchBlob: session.launchBlob };
  }
}

/** Consumes a session (atomically, on any replica: exactly one caller gets it); undefined if unknown, expired or used. */
export function consumeSession(ctx: BrokerContext, launchId: string): Promise<ConsumedLaunchSession | undefined> {
  return ctx.store.consumeLaunchSession(launchId, ctx.now());
}

export interface MeasurementClaims {
  policy: number;
  apiMajor: number;
  apiMinor: number;
  buildId: number;
  measurement: Buffer;
}

/**
 * Proves a launch: the policy the host claims must be the one the session was opened for, and the measurement must
 * be the firmware's HMAC (under the session's TIK) of one of `digests` — the host's claimed digest (GetSecret) or
 * the digests the broker computed from a registration (/validate). Returns the digest proven and the MEASURE value
 * the secret packet needs; anything else is a refusal whose reason is for the audit trail only.
 */
export function proveMeasurement(
  session: ConsumedLaunchSession,
  claims: MeasurementClaims,
  digests: readonly Buffer[],
  what: string,
): { digest: Buffer; measure: Buffer } {
  if (claims.policy !== session.sevPolicy) {
    throw denied(`policy mismatch: the session was opened for 0x${session.sevPolicy.toString(16)}, ${what} claims 0x${claims.policy.toString(16)}`);
  }
  const failures: string[] = [];
  for (const digest of digests) {
    try {
      const measure = verifyMeasurement({
        tik: session.tik,
        apiMajor: claims.apiMajor,
        apiMinor: claims.apiMinor,
        build: claims.buildId,
        policy: session.sevPolicy,
        digest,
        measurement: claims.measurement,
      });
      return { digest, measure };
    } catch (e) {
      if (!isSevError(e)) throw e;
      failures.push(`${digest.toString('hex')}: ${e.message}`);
    }
  }
  throw denied(
    `launch measurement does not verify for ${digests.length === 1 ? 'digest' : `any of ${digests.length} digests`} (${failures.join('; ') || 'none computed'}), API ${claims.apiMajor}.${claims.apiMinor} build ${claims.buildId}`,
  );
}
