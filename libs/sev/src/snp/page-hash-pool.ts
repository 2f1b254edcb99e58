/**
 * The worker threads behind page-hashes.ts and the bytes they share. The worker is an inline script run with
 * `eval: true` and only node:crypto / node:worker_threads, so it works unchanged inside the esbuild bundles of the apps
 * (no worker file to ship or resolve).
 */
import { availableParallelism } from 'node:os';
import type * as WorkerThreads from 'node:worker_threads';
import { SevError } from '../errors';

export const PAGE = 4096;
/** The shared window the input passes through, 1024 pages: bounded memory whatever the image size. */
export const WINDOW_BYTES = 4 * 1024 * 1024;
/** How long an idle worker keeps waiting on the doorbell (no CPU used) before it returns to its event loop. */
const HOT_MS = 500;
/**
 * How long an idle worker polls the doorbell before it sleeps on it: jobs that follow each other (a caller measuring
 * several images, the benchmark) start without a wake-up; between jobs that are further apart it costs 0.2 ms of CPU.
 */
const SPIN_MS = 0.2;

/** One buffer of whole 4 KiB pages, or a list of 4 KiB pages (e.g. IGVM PAGE_DATA). */
export type PageInput = Uint8Array | readonly Uint8Array[];

/**
 * The worker. At start-up the first one touches every page of the pool's window with a no-op compare-exchange (0 → 0,
 * which can never change data the calling thread already copied there): on some machines first-touch page faults cost
 * more than the hashing, and this way the calling thread does not pay them. Then it counts itself ready (pool word 0).
 * Jobs come on its own MessagePort. While jobs keep coming it takes them synchronously, blocked on the pool's doorbell
 * (word 1, bumped and notified after each post; polled for SPIN_MS first), so a job starts within microseconds rather than
 * after an event-loop turn (~200 µs here, 5% of a 4 MiB digest); after HOT_MS without a job it waits in its event loop instead.
 * Per job (words of page-hash-job.ts, states gen × 4 + 0..3): walk the chunks' state words, claim each READY one
 * (1 → 2, compare-exchange; count it in word 4), wait on the bell (word 3) at a FREE one, skip the others, leave at a
 * state of another generation; write each page's digest into the job's output, publish the chunk (DONE, 3, then word
 * 1 bumped and notified). Stop when word 0 says so. Word 2 reports a failure: gen × 4 + 1 if the worker threw, + 2 if
 * it exited during a job. \`fault\` is the tests' way to make it do either, or stall.
 */
const WORKER_SOURCE = `'use strict';
const { workerData, receiveMessageOnPort } = require('node:worker_threads');
const crypto = require('node:crypto');
const hash = crypto.hash ? (b) => crypto.hash('sha384', b, 'buffer') : (b) => crypto.createHash('sha384').update(b).digest();
const pool = new Int32Array(workerData.ctrl);
if (workerData.touch) {
  const w = new Int32Array(workerData.window);
  for (let i = 0; i < w.length; i += ${PAGE / 4}) Atomics.compareExchange(w, i, 0, 0);
}
let current;
const publishFailure = (job, code) => { Atomics.store(job.ctrl, 2, job.gen * 4 + code); Atomics.add(job.ctrl, 1, 1); Atomics.notify(job.ctrl, 1); };
process.on('exit', () => { if (current !== undefined) publishFailure(current, 2); });
function run(m) {
  const ctrl = new Int32Array(m.ctrl);
  current = { ctrl, gen: m.gen };
  try {
    const data = new Uint8Array(m.data, m.offset, m.pages * ${PAGE});
    const out = new Uint8Array(m.out);
    const chunks = Math.ceil(m.pages / m.chunkPages);
    const g4 = m.gen * 4;
    let starved = 0;
    for (let k = 0; k < chunks && Atomics.load(ctrl, 0) === 0; ) {
      const bell = Atomics.load(ctrl, 3);
      const state = Atomics.load(ctrl, 5 + k) - g4;
      if (state < 0 || state > 3) break; // the arrays belong to a later window now
      if (state >= 2) {
        k++;
        continue;
      }
      if (state === 0) {
        // Not copied yet: wait for the bell, but not for ever (a job its caller abandoned must not hold this worker).
        if (++starved > 100) break;
        Atomics.wait(ctrl, 3, bell, 1);
        continue;
      }
      starved = 0;
      if (Atomics.compareExchange(ctrl, 5 + k, g4 + 1, g4 + 2) !== g4 + 1) continue;
      Atomics.add(ctrl, 4, 1);
      if (m.fault === 'throw') throw new Error('injected fault');
      if (m.fault === 'exit') process.exit(1);
      if (m.fault === 'hang') for (;;) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 1000);
      const end = Math.min(m.pages, (k + 1) * m.chunkPages);
      for (let i = k * m.chunkPages; i < end; i++) out.set(hash(data.subarray(i * ${PAGE}, (i + 1) * ${PAGE})), i * 48);
      Atomics.store(ctrl, 5 + k, g4 + 3);
      Atomics.add(ctrl, 1, 1);
      Atomics.notify(ctrl, 1);
      k++;
    }
  } catch {
    publishFailure(current, 1);
  }
  current = undefined;
}
function serve() {
  let idle = Date.now();
  for (;;) {
    const bell = Atomics.load(pool, 1);
    const m = receiveMessageOnPort(workerData.port);
    if (m !== undefined) {
      run(m.message);
      idle = Date.now();
      continue;
    }
    const left = ${HOT_MS} - (Date.now() - idle);
    if (left <= 0) break;
    // Polled for SPIN_MS before sleeping: waking a sleeping thread takes ~0.1 ms on this VM, 2-5 % of a 4 MiB digest.
    const spinUntil = performance.now() + ${SPIN_MS};
    while (Atomics.load(pool, 1) === bell && performance.now() < spinUntil);
    if (Atomics.load(pool, 1) === bell) Atomics.wait(pool, 1, bell, left);
  }
  workerData.port.once('message', (m) => {
    run(m);
    serve();
  });
}
Atomics.add(pool, 0, 1);
serve();
`;

/** The control words and output of one window of a job, reused while no worker can still write into them. */
export interface WindowArrays {
  ctrl: Int32Array;
  out: Uint8Array;
  /** Tags this use of the arrays (page-hash-job.ts). */
  gen: number;
}

/**
 * node:worker_threads costs ~5 ms to load on this VM, so it is loaded with the first pool: a process that never starts
 * one (kbctl measure on a 4 MiB image) does not pay it. require() exists wherever this code runs (CommonJS sources
 * under jest and tsx, and the banner of the esbuild bundles).
 */
let workerThreads: typeof WorkerThreads | undefined;
function loadWorkerThreads(): typeof WorkerThreads {
  return (workerThreads ??= require('node:worker_threads') as typeof WorkerThreads);
}

/** Workers a job uses by default: all cores but the calling thread's (which hashes too), none on one core. */
export function autoThreads(): number {
  return Math.max(0, availableParallelism() - 1);
}

export class Pool {
  readonly workers: WorkerThreads.Worker[] = [];
  /** Set when a worker failed, errored or exited: the pool is replaced before the next job. */
  broken = false;
  /** A job is running (a nested pageHashes call, e.g. from a progress callback, takes the sequential path). */
  busy = false;
  /** Word 0: workers started (a job gives nothing to workers still booting: the calling thread does it all); 1: doorbell. */
  private readonly ctrl = new Int32Array(new SharedArrayBuffer(8));
  /** This side of each worker's job port. */
  private readonly ports: WorkerThreads.MessagePort[] = [];
  private window = new SharedArrayBuffer(WINDOW_BYTES);
  private spare: { ctrl: Int32Array; out: Uint8Array } | undefined;
  private gen = 0;

  grow(n: number): void {
    while (this.workers.length < n) {
      const { MessageChannel, Worker } = loadWorkerThreads();
      const { port1, port2 } = new MessageChannel();
      port1.unref();
      const workerData = { ctrl: this.ctrl.buffer, window: this.window, touch: this.workers.length === 0, port: port2 };
      // execArgv: [] — the worker needs no loader (e.g. tsx's --import), which would only slow its start.
      const w = new Worker(WORKER_SOURCE, { eval: true, name: 'sev-page-hash', workerData, transferList: [port2], execArgv: [] });
      this.ports.push(port1);
      w.unref(); // never keeps the process alive
      // Seen only when the calling thread's event loop runs; during a job the shared failure word rules.
      w.on('error', () => (this.broken = true));
      w.on('exit', () => (this.broken = true));
      this.workers.push(w);
    }
  }

  ready(): number {
    return Atomics.load(this.ctrl, 0);
  }

  /** Marks the pool busy; a job may use up to n workers. */
  acquire(n: number): number {
    this.busy = true;
    return Math.min(n, this.workers.length);
  }

  /** Gives a job to the first n workers and rings the doorbell. */
  post(n: number, job: object): void {
    for (const port of this.ports.slice(0, n)) port.postMessage(job);
    Atomics.add(this.ctrl, 1, 1);
    Atomics.notify(this.ctrl, 1);
  }

  release(): void {
    this.busy = false;
  }

  /**
   * Shared bytes for one window of a job's input, the same for every job (a late worker of an earlier job that reads
   * it only hashes garbage into that job's own output, which nobody reads any more).
   */
  windowBytes(length: number): Uint8Array {
    if (this.window.byteLength < length) this.window = new SharedArrayBuffer(length);
    return new Uint8Array(this.window, 0, length);
  }

  /** Arrays for one window: the spare ones if large enough (their words are reset by the job), else new ones. */
  lease(ctrlWords: number, outBytes: number): WindowArrays {
    let a = this.spare;
    this.spare = undefined;
    if (a === undefined || a.ctrl.length < ctrlWords || a.out.length < outBytes) {
      a = { ctrl: new Int32Array(new SharedArrayBuffer(4 * ctrlWords)), out: new Uint8Array(new SharedArrayBuffer(outBytes)) };
    }
    this.gen = (this.gen % 0x0fff_ffff) + 1; // gen × 4 + 3 stays an int32
    return { ctrl: a.ctrl, out: a.out.subarray(0, outBytes), gen: this.gen };
  }

  /** Takes back arrays no worker will write into again. */
  giveBack(a: WindowArrays): void {
    this.spare = { ctrl: a.ctrl, out: new Uint8Array(a.out.buffer) };
  }

  async terminate(): Promise<void> {
    this.broken = true;
    for (const port of this.ports) port.close();
    await Promise.all(this.workers.map((w) => w.terminate()));
  }
}

export function inputPages(data: PageInput): number {
  if (data instanceof Uint8Array) {
    if (data.length % PAGE !== 0) throw new SevError('ERR_SEV_LENGTH', `measured data must be a multiple of ${PAGE} bytes, got ${data.length}`);
    return data.length / PAGE;
  }
  for (const p of data) {
    if (!(p instanceof Uint8Array) || p.length !== PAGE) throw new SevError('ERR_SEV_LENGTH', `every page must be ${PAGE} bytes`);
  }
  return data.length;
}

export function pageOf(data: PageInput, i: number): Uint8Array {
  return data instanceof Uint8Array ? data.subarray(i * PAGE, (i + 1) * PAGE) : data[i]!;
}
