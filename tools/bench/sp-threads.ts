/**
 * The simulated hosts' Secure Processor on worker threads, for the full-launch cases of tools/bench/broker.ts
 * (--sp-threads). A real host's LAUNCH_START (with its P-384 ECDH) runs on the AMD SP, not on the CPU that drives
 * gRPC: on the bench's own event loop, every simulated host's SP work delays the others' gRPC answers and shows up as
 * broker latency. On a 2-core machine the extra thread costs more than that, so it is not the default.
 *
 * Each thread loads the same platform and runs its own SimulatedSecureProcessor; a launch stays on one thread (its
 * handle is that thread's).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { parentPort, Worker, workerData } from 'node:worker_threads';
import type { FirmwareVersion, SimulatedPlatform } from '../../libs/sev-sim/src';
import { loadPlatform, savePlatform, SimulatedSecureProcessor } from '../../libs/sev-sim/src';

interface SetUp {
  platformDir: string;
  policy: number;
  firmwareImage: Uint8Array;
  secretGuid: string;
  secretValue: Uint8Array;
}

export interface Started {
  thread: number;
  handle: number;
  measurement: Buffer;
  firmware: FirmwareVersion;
}

type Call = { op: 'start'; godhCert: Uint8Array; launchBlob: Uint8Array } | { op: 'finish'; handle: number; header: Uint8Array; data: Uint8Array };
type Request = Call & { id: number };
type Reply = { id: number; error?: string; handle?: number; measurement?: Uint8Array; firmware?: FirmwareVersion };

/** Main-thread side: `threads` worker threads, launch work sent to the one the caller names. */
export class SpThreads {
  private readonly workers: Worker[] = [];
  private readonly pending = new Map<number, { resolve(r: Reply): void; reject(e: Error): void }>();
  private readonly dir: string;
  private seq = 0;

  constructor(platform: SimulatedPlatform, setUp: Omit<SetUp, 'platformDir'>, threads: number) {
    this.dir = mkdtempSync(path.join(os.tmpdir(), 'kb-bench-sp-'));
    savePlatform(platform, this.dir);
    const data: SetUp = { ...setUp, platformDir: this.dir };
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

  /** LAUNCH_START + LAUNCH_UPDATE_DATA(firmware image) + LAUNCH_MEASURE on thread `thread` (mod the count). */
  async start(thread: number, godhCert: Buffer, launchBlob: Buffer): Promise<Started> {
    const t = thread % this.workers.length;
    const r = await this.call(t, { op: 'start', godhCert, launchBlob });
    return { thread: t, handle: r.handle!, measurement: Buffer.from(r.measurement!), firmware: r.firmware! };
  }

  /** LAUNCH_SECRET + LAUNCH_FINISH, then checks that the guest reads the expected secret; frees the guest. */
  async finish(started: Started, header: Buffer, data: Buffer): Promise<void> {
    await this.call(started.thread, { op: 'finish', handle: started.handle, header, data });
  }

  async close(): Promise<void> {
    await Promise.all(this.workers.map((w) => w.terminate()));
    this.failAll(new Error('simulated SP threads closed'));
    rmSync(this.dir, { recursive: true, force: true });
  }

  private call(thread: number, req: Call): Promise<Reply> {
    const id = ++this.seq;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.workers[thread]!.postMessage({ ...req, id });
    });
  }

  private failAll(e: Error): void {
    for (const p of this.pending.values()) p.reject(e);
    this.pending.clear();
  }
}

// ---- the thread ----------------------------------------------------------------------------------------------------

if (parentPort && workerData && (workerData as SetUp).platformDir) {
  const setUp = workerData as SetUp;
  const sp = new SimulatedSecureProcessor(loadPlatform(setUp.platformDir));
  const image = Buffer.from(setUp.firmwareImage);
  const secretValue = Buffer.from(setUp.secretValue);
  const port = parentPort;
  port.on('message', (m: Request) => {
    try {
      if (m.op === 'start') {
        const handle = sp.launchStart({ policy: setUp.policy, godhCert: Buffer.from(m.godhCert), launchBlob: Buffer.from(m.launchBlob) });
        sp.launchUpdateData(handle, image);
        port.postMessage({ id: m.id, handle, measurement: sp.launchMeasure(handle), firmware: sp.firmware } satisfies Reply);
        return;
      }
      try {
        sp.launchSecret(m.handle, Buffer.from(m.header), Buffer.from(m.data));
        sp.launchFinish(m.handle);
        const secrets = sp.guestSecrets(m.handle);
        if (secrets.length !== 1 || secrets[0]!.guid !== setUp.secretGuid || !secrets[0]!.data.equals(secretValue)) {
          throw new Error('benchmark sanity check failed: the guest did not receive the expected secret');
        }
      } finally {
        sp.decommission(m.handle);
      }
      port.postMessage({ id: m.id } satisfies Reply);
    } catch (e) {
      port.postMessage({ id: m.id, error: (e as Error).message } satisfies Reply);
    }
  });
}
