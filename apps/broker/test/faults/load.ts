import { randomBytes } from 'node:crypto';
import { credentials, Metadata, status, type ServiceError } from '@grpc/grpc-js';
import { keybroker } from '@kb/grpc-api';
import { platformChain } from '@kb/sev-sim';
import { testPlatform } from '../support/broker';
import type { HostClient } from '../support/grpc';
import { prepareLaunch } from '../support/host';

export const KEY = [{ Guid: '736869e5-84f0-4973-92ec-06879ce3da0b', Format: 'binary', SecretType: 'key', Id: 'default/key/disk' }];
export const SECRET_VALUE = 'disk passphrase';

export interface CallRecord {
  rpc: 'GetBundle' | 'GetSecret';
  target: string;
  /** Date.now() when sent, and the round trip */
  at: number;
  ms: number;
  code: status;
  /** the broker's reference, when it answered with a failure */
  ref?: string;
  details?: string;
}

type Prepared = Awaited<ReturnType<typeof prepareLaunch>>;

/** A host's channel to one broker: reconnects quickly after a broker restart (grpc-js backs off up to 2 min by default). */
class TimedHost {
  private readonly raw: keybroker.KeyBrokerServiceClient;
  constructor(
    readonly target: string,
    private readonly load: FaultLoad,
  ) {
    this.raw = new keybroker.KeyBrokerServiceClient(target, credentials.createInsecure(), {
      'grpc.initial_reconnect_backoff_ms': 100,
      'grpc.max_reconnect_backoff_ms': 500,
    });
  }
  getBundle(req: keybroker.BundleRequest): Promise<keybroker.BundleResponse> {
    return this.call('GetBundle', 'getBundle', req);
  }
  getSecret(req: keybroker.SecretRequest): Promise<keybroker.SecretResponse> {
    return this.call('GetSecret', 'getSecret', req);
  }
  private call<Res>(rpc: CallRecord['rpc'], method: string, req: unknown): Promise<Res> {
    const fn = (this.raw as unknown as Record<string, Function>)[method]!;
    const at = Date.now();
    return new Promise((resolve, reject) => {
      fn.call(this.raw, req, new Metadata(), { deadline: at + this.load.deadlineMs }, (err: ServiceError | null, res: Res) => {
        const ref = err?.details?.match(/\(ref ([0-9a-f]+)\)/)?.[1];
        this.load.calls.push({ rpc, target: this.target, at, ms: Date.now() - at, code: err ? err.code : status.OK, ref, details: err?.details });
        if (err) reject(err);
        else resolve(res);
      });
    });
  }
  close(): void {
    this.raw.close();
  }
}

/**
 * Mixed load from several simulated hosts, each on its own gRPC channel(s), recording every call:
 *   - full launches (GetBundle, the simulated SP's LAUNCH_*, GetSecret), each GetSecret sent twice at once (to two
 *     brokers when there are two) — at most one may be answered with the secret;
 *   - GetBundle with a chain that does not verify (a refusal, audited through the queue);
 *   - GetSecret with a wrong measurement (a refusal after the launch id is consumed);
 *   - launches parked after GetBundle, whose GetSecret is sent later (after a restart).
 */
export class FaultLoad {
  readonly calls: CallRecord[] = [];
  /** launch id → GetSecret calls answered with the secret (checked by the simulated guest) */
  readonly delivered = new Map<string, number>();
  /** launch ids handed out by GetBundle */
  readonly bundled = new Set<string>();
  readonly parked: Prepared[] = [];
  /** references of PERMISSION_DENIED answers: each must have its audit entry */
  readonly refusedRefs = new Set<string>();
  /** wrong payloads seen by a guest (must stay empty) */
  readonly corrupt: string[] = [];
  private running = false;
  private loops: Promise<void>[] = [];

  constructor(
    /** the brokers' current addresses (a restarted broker has a new port) */
    private readonly targets: () => string[],
    readonly deadlineMs: number,
    private readonly opts: { clients: number; parkUpTo?: number },
  ) {}

  start(): void {
    this.running = true;
    this.loops = Array.from({ length: this.opts.clients }, (_, i) => this.client(i));
  }

  async stop(): Promise<void> {
    this.running = false;
    await Promise.all(this.loops);
  }

  /** Sends the parked launches' GetSecret (once each); returns how many got their secret. */
  async completeParked(): Promise<{ sent: number; ok: number; failures: string[] }> {
    const hosts = new Hosts(this);
    const failures: string[] = [];
    let ok = 0;
    const parked = this.parked.splice(0);
    await Promise.all(
      parked.map(async (p) => {
        try {
          await this.finish(p, await hosts.get(this.pick(0)).getSecret(p.request));
          ok++;
        } catch (e) {
          failures.push(`${p.bundle.LaunchId}: ${(e as ServiceError).details ?? (e as Error).message}`);
        }
      }),
    );
    hosts.close();
    return { sent: parked.length, ok, failures };
  }

  private pick(n: number): string {
    const t = this.targets();
    return t[n % t.length]!;
  }

  private finish(p: Prepared, res: keybroker.SecretResponse): void {
    p.sp.launchSecret(p.handle, Buffer.from(res.LaunchSecretHeader, 'base64'), Buffer.from(res.LaunchSecretData, 'base64'));
    p.sp.launchFinish(p.handle);
    const data = p.sp.guestSecrets(p.handle)[0]?.data.toString();
    if (data !== SECRET_VALUE) this.corrupt.push(p.bundle.LaunchId);
    this.delivered.set(p.bundle.LaunchId, (this.delivered.get(p.bundle.LaunchId) ?? 0) + 1);
  }

  private async client(n: number): Promise<void> {
    const platform = testPlatform();
    const hosts = new Hosts(this);
    const badChain = Buffer.from(platformChain(platform)); // a copy: the good chain stays as it is
    const at = badChain.length - 100; // inside the ARK's signature: well formed, not trusted
    badChain[at] = badChain[at]! ^ 0xff;
    for (let i = n; this.running; i++) {
      try {
        const host = hosts.get(this.pick(n + i));
        const kind = i % 10;
        if (kind === 0) {
          await host.getBundle({ CertificateChain: badChain.toString('base64'), Policy: 0x1 }).catch((e: ServiceError) => {
            const ref = e.details?.match(/\(ref ([0-9a-f]+)\)/)?.[1];
            if (e.code === status.PERMISSION_DENIED && ref) this.refusedRefs.add(ref);
          });
          continue;
        }
        const p = await prepareLaunch(host as unknown as HostClient, platform, { policy: 0x1, requests: KEY });
        this.bundled.add(p.bundle.LaunchId);
        if (kind === 1 && this.parked.length < (this.opts.parkUpTo ?? 0)) {
          this.parked.push(p);
          continue;
        }
        if (kind === 2) {
          const wrong = { ...p.request, LaunchMeasurement: randomBytes(48).toString('base64') };
          await host.getSecret(wrong).then(
            () => this.corrupt.push(`${p.bundle.LaunchId}: a wrong measurement was answered with a secret`),
            (e: ServiceError) => {
              const ref = e.details?.match(/\(ref ([0-9a-f]+)\)/)?.[1];
              if (e.code === status.PERMISSION_DENIED && ref) this.refusedRefs.add(ref);
            },
          );
          continue;
        }
        // the same GetSecret twice at once (on two brokers when there are two): one launch id, one release
        const other = hosts.get(this.pick(n + i + 1));
        const results = await Promise.allSettled([host.getSecret(p.request), other.getSecret(p.request)]);
        for (const r of results) {
          if (r.status === 'fulfilled') this.finish(p, r.value);
          else if (r.reason.code === status.PERMISSION_DENIED) {
            const ref = (r.reason as ServiceError).details?.match(/\(ref ([0-9a-f]+)\)/)?.[1];
            if (ref) this.refusedRefs.add(ref);
          }
        }
      } catch {
        // a failed GetBundle (recorded); back off a little so a broker that is down is not spun on
        await new Promise((r) => setTimeout(r, 50));
      }
    }
    hosts.close();
  }
}

class Hosts {
  private readonly byTarget = new Map<string, TimedHost>();
  constructor(private readonly load: FaultLoad) {}
  get(target: string): TimedHost {
    let h = this.byTarget.get(target);
    if (!h) this.byTarget.set(target, (h = new TimedHost(target, this.load)));
    return h;
  }
  close(): void {
    for (const h of this.byTarget.values()) h.close();
  }
}

/** Outcome counts, e.g. { GetBundle: { OK: 120, UNAVAILABLE: 8 }, ... } */
export function tally(calls: CallRecord[]): Record<string, Record<string, number>> {
  const out: Record<string, Record<string, number>> = {};
  for (const c of calls) {
    const byCode = (out[c.rpc] ??= {});
    const name = status[c.code] + (c.code !== status.OK && !c.ref ? ' (no ref)' : '');
    byCode[name] = (byCode[name] ?? 0) + 1;
  }
  return out;
}
