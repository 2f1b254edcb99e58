/**
 * The simulated hosts' Secure Processor for tools/bench/broker.ts: LAUNCH_START … LAUNCH_MEASURE before GetSecret, and
 * LAUNCH_SECRET + LAUNCH_FINISH (checking that the guest reads the expected secret) after it. Inline, on the bench's
 * event loop (the default), or on worker threads (--sp-threads): a real host's LAUNCH_START, with its P-384 ECDH, runs
 * on the AMD SP, not on the CPU that drives gRPC, and on the bench's event loop every simulated host's SP work delays
 * the others' gRPC answers. On a 2-core machine the extra threads cost more than that, so they are not the default.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { parentPort, Worker, workerData } from 'node:worker_threads';
import type { FirmwareVersion, SimulatedPlatform } from '@kb/sev-sim';
import { loadPlatform, savePlatform, SimulatedSecureProcessor } from '@kb/sev-sim';

/** What every simulated launch uses: the guest policy, the measured image, and the secret the guest must receive. */
export interface HostLaunch {
  policy: number;
  firmwareImage: Uint8Array;
  secretGuid: string;
  secretValue: Uint8Array;
}

export interface Started {
  /** the SP that holds the guest (always 0 inline) */
  thread: number;
  handle: number;
  measurement: Buffer;
  firmware: FirmwareVersion;
}

export interface HostSp {
  /** LAUNCH_START + LAUNCH_UPDATE_DATA(firmware image) + LAUNCH_MEASURE; `thread` picks the SP (mod their count). */
  start(thread: number, godhCert: Buffer, launchBlob: Buffer): Promise<Started>;
  /** LAUNCH_SECRET + LAUNCH_FINISH, then checks that the guest reads the expected secret; frees the guest. */
  finish(started: Started, header: Buffer, data: Buffer): Promise<void>;
  close(): Promise<void>;
}

/** The start half of a launch on `sp`, synchronously. */
export function spStart(sp: SimulatedSecureProcessor, launch: HostLaunch, godhCert: Buffer, launchBlob: Buffer): Omit<Started, 'thread'> {
  const handle = sp.launchStart({ policy: launch.policy, godhCert, launchBlob });
  sp.launchUpdateData(handle, Buffer.from(launch.firmwareImage.buffer, launch.firmwareImage.byteOffset, launch.firmwareImage.byteLength));
  return { handle, measurement: sp.launchMeasure(handle), firmware: sp.firmware };
}

/** The finish half of a launch on `sp`, synchronously. */
export function spFinish(sp: SimulatedSecureProcessor, launch: HostLaunch, handle: number, header: Buffer, data: Buffer): void {
  try {
    sp.launchSecret(handle, header, data);
    sp.launchFinish(handle);
    const secrets = sp.guestSecrets(handle);
    if (secrets.length !== 1 || secrets[0]!.guid !== launch.secretGuid || !secrets[0]!.data.equals(launch.secretValue)) {
      throw new Error('benchmark sanity check failed: the guest did not receive the expected secret');
    }
  } finally {
    sp.decommission(handle);
  }
}

/** On the caller's event loop. */
export function inlineSp(sp: SimulatedSecureProcessor, launch: HostLaunch): HostSp {
  return {
    start: async (_thread, godhCert, launchBlob) => ({ thread: 0, ...spStart(sp, launch, godhCert, launchBlob) }),
    finish: async (started, header, data) => spFinish(sp, launch, started.handle, header, data),
    close: async () => undefined,
  };
}

type Call = { op: 'start'; godhCert: Uint8Array; launchBlob: Uint8Array } | { op: 'finish'; handle: number; header: Uint8Array; data: Uint8Array };
type Reply = { id: number; error?: string; handle?: number; measurement?: Uint8Array; firmware?: FirmwareVersion };
interface ThreadSetUp extends HostLaunch {
  platformDir: string;
}

/** On `threads` worker threads, each with its own SimulatedSecureProcessor of the same platform. */
export class SpThreads implements HostSp {
  private readonly workers: Worker[] = [];
  private readonly pending = new Map<number, { resolve(r: Reply): void; reject(e: Error): void }>();
  private readonly dir: string;
  private seq = 0;

  constructor(platform: SimulatedPlatform, launch: HostLaunch, threads: number) {
    this.dir = mkdtempSync(path.join(os.tmpdir(), 'kb-bench-sp-'));
    savePlatform(platform, this.dir);
    const data: ThreadSetUp = { ...launch, platformDir: this.dir };
    for (let i = 0; i < threads; i++) {
      // tsx's loader is not inherited by worker threads: register it in the thread, then load this module there.
      const w = new Worker(`require('tsx/cjs/api').register(); require(${JSON.stringify(__filename)});`, { eval: true, workerData: data });
      w.on('message', (m: Reply) => {
        const p = this.pending.get(m.id);
        if (!p) return;
        this.pending.delete(m.id);
        if (m.error !== undefined) p.reject(new Error(`simulated SP: ${m.error}`));
        else p.resolve(m);
      });
      w.on('error', (e) => this.failAll(e));
      this.workers.push(w);
    }
  }

  get threads(): number {
    return this.workers.length;
  }

  async start(thread: number, godhCert: Buffer, launchBlob: Buffer): Promise<Started> {
    const t = thread % this.workers.length;
    const r = await this.call(t, { op: 'start', godhCert, launchBlob });
    return { thread: t, handle: r.handle!, measurement: Buffer.from(r.measurement!), firmware: r.firmware! };
  }

  async finish(started: Started, header: Buffer, data: Buffer): Promise<void> {
    await this.call(started.thread, { op: 'finish', handle: started.handle, header, data });
  }

  async close(): Promise<void> {
    await Promise.all(this.workers.map((w) => w.terminate()));
    this.failAll(new Error('simulated SP threads closed'));
    rmSync(this.dir, { recursive: true, force: true });
  }

  private call(thread: number, call: Call): Promise<Reply> {
    const id = ++this.seq;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.workers[thread]!.postMessage({ ...call, id });
    });
  }

  private failAll(e: Error): void {
    for (const p of this.pending.values()) p.reject(e);
    this.pending.clear();
  }
}

// ---- a thread of SpThreads -------------------------------------------------------------------------------------------

if (parentPort && workerData && (workerData as ThreadSetUp).platformDir) {
  const launch = workerData as ThreadSetUp;
  const sp = new SimulatedSecureProcessor(loadPlatform(launch.platformDir));
  const port = parentPort;
  port.on('message', (m: Call & { id: number }) => {
    try {
      if (m.op === 'start') {
        port.postMessage({ id: m.id, ...spStart(sp, launch, Buffer.from(m.godhCert), Buffer.from(m.launchBlob)) } satisfies Reply);
      } else {
        spFinish(sp, launch, m.handle, Buffer.from(m.header), Buffer.from(m.data));
        port.postMessage({ id: m.id } satisfies Reply);
      }
    } catch (e) {
      port.postMessage({ id: m.id, error: (e as Error).message } satisfies Reply);
    }
  });
}
