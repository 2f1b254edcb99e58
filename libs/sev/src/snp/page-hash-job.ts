/**
 * One parallel page-hash job (page-hashes.ts). The input goes through the pool's shared window a window at a time.
 * Each chunk of a window is FREE (only in the caller's bytes), READY (copied into the window: workers may claim it),
 * CLAIMED or DONE. The calling thread copies chunks just ahead of the workers (a few READY at a time, so they start
 * after one chunk, not a whole window), takes FREE chunks itself when it would otherwise wait (hashing them from the
 * caller's bytes, so only what workers hash is ever copied), and copies every DONE chunk's digests into this job's
 * own (unshared) results as soon as it sees them: from then on nothing a worker does can change a result.
 *
 * The control and output arrays of a window are reused from window to window and job to job (fresh shared memory
 * costs ~70 µs per window in page faults here). Every state word carries the window's generation (gen × 4 + state),
 * so a late worker of an earlier window can claim nothing in a later one; and arrays are only reused when no worker
 * can still write into them (every chunk DONE, none taken over from a worker).
 */
import { SevError } from '../errors';
import { PAGE, pageOf, type PageInput, type Pool, type WindowArrays } from './page-hash-pool';
import { sha384 } from './sha384';

const HASH = 48;
/** How long the calling thread waits for a worker's chunk before hashing it itself (~10 chunks of work). */
const STEAL_AFTER_MS = 1;
// Control words of a window (WindowArrays.ctrl), then one state word per chunk.
const STOP = 0; // 1: the job is closed, workers leave it
const SEQ = 1; // bumped after each chunk a worker publishes, and on failure: what the calling thread waits on
const FAILED = 2; // gen × 4 + 1 a worker threw, + 2 a worker exited mid-job
const BELL = 3; // bumped (and notified) when chunks become READY: what starved workers wait on
const CLAIMS = 4; // chunks workers have claimed in this window
export const HEADER = 5;
const FREE = 0;
const READY = 1;
const CLAIMED = 2;
const DONE = 3;
/** READY chunks the calling thread keeps waiting for the workers (each ~90 µs of hashing). */
const COPY_AHEAD = 4;

export type WorkerFault = 'throw' | 'exit' | 'hang';

interface Window extends WindowArrays {
  firstChunk: number;
  chunks: number;
  /** gen × 4: added to every state this window writes or expects. */
  g4: number;
  /** Shared bytes of the window's pages, or undefined when no worker takes part (nothing to copy). */
  data?: Uint8Array;
  /** The lowest FREE chunk: chunks are made READY or taken by the calling thread in order, only by it. */
  frontier: number;
  /** Chunks made READY, and READY chunks the calling thread took back: what is left for workers is the difference. */
  readied: number;
  tookReady: number;
  /** Chunks taken over from a worker (which may still write them): the arrays are then not reused. */
  stolen: number;
}

export interface ParallelJobOptions {
  chunkPages: number;
  /** Pages per window, a multiple of chunkPages. */
  windowPages: number;
  fault?: WorkerFault;
}

export class ParallelPageHashes {
  readonly parallel = true;
  /** Chunks a worker claimed but the calling thread hashed after waiting STEAL_AFTER_MS (for tests and tuning). */
  stolen = 0;
  private readonly results: Buffer;
  /** Per chunk of the whole input: its digests are in `results`. */
  private readonly copied: Uint8Array;
  private readonly chunkPages: number;
  private readonly windowChunks: number;
  private win: Window | undefined;
  private fault: WorkerFault | undefined;
  private closed = false;

  constructor(
    private readonly pool: Pool,
    private readonly input: PageInput,
    readonly count: number,
    private readonly workers: number,
    o: ParallelJobOptions,
  ) {
    this.chunkPages = o.chunkPages;
    this.windowChunks = o.windowPages / o.chunkPages;
    this.results = Buffer.allocUnsafe(count * HASH);
    this.copied = new Uint8Array(Math.ceil(count / o.chunkPages));
    this.fault = o.fault;
  }

  get(i: number): Buffer {
    if (!Number.isInteger(i) || i < 0 || i >= this.count) throw new SevError('ERR_SEV_RANGE', `page ${i} is not in 0..${this.count - 1}`);
    if (this.closed) throw new SevError('ERR_SEV_ARGUMENT', 'page hashes read after close()');
    const c = Math.floor(i / this.chunkPages);
    if (this.copied[c] === 0) this.fill(c);
    return this.results.subarray(i * HASH, (i + 1) * HASH);
  }

  private fill(c: number): void {
    // A chunk of a window skipped over (read out of order): hashed here, no window needed.
    if (this.win !== undefined && c < this.win.firstChunk) return this.hashInto(c);
    const w = Math.floor(c / this.windowChunks);
    // Earlier windows are complete (finishWindow); move forward to c's window, finishing the current one.
    while (this.win === undefined || this.win.firstChunk < w * this.windowChunks) {
      const next = this.win === undefined ? w : this.win.firstChunk / this.windowChunks + 1;
      if (this.win !== undefined) this.finishWindow();
      this.startWindow(next);
    }
    this.await(c - this.win.firstChunk);
  }

  private startWindow(w: number): void {
    const firstChunk = w * this.windowChunks;
    const chunks = Math.min(this.windowChunks, this.copied.length - firstChunk);
    const firstPage = firstChunk * this.chunkPages;
    const pages = Math.min(this.count, (firstChunk + chunks) * this.chunkPages) - firstPage;
    const arrays = this.pool.lease(HEADER + chunks, pages * HASH);
    const g4 = arrays.gen * 4;
    const win: Window = { ...arrays, firstChunk, chunks, g4, frontier: 0, readied: 0, tookReady: 0, stolen: 0 };
    const ctrl = win.ctrl;
    ctrl.fill(g4 + FREE, HEADER, HEADER + chunks);
    Atomics.store(ctrl, FAILED, 0);
    Atomics.store(ctrl, CLAIMS, 0);
    Atomics.store(ctrl, STOP, 0);
    this.win = win;
    // Workers still starting would only take chunks late: then the calling thread hashes this window alone.
    if (this.pool.ready() === 0) return;
    const input = this.input;
    if (input instanceof Uint8Array && input.buffer instanceof SharedArrayBuffer) {
      // Already shared: a view, every chunk READY at once.
      win.data = input.subarray(firstPage * PAGE, (firstPage + pages) * PAGE);
      ctrl.fill(g4 + READY, HEADER, HEADER + chunks);
      win.frontier = win.readied = chunks;
    } else {
      win.data = this.pool.windowBytes(pages * PAGE);
    }
    const data = win.data;
    const job = { ctrl: ctrl.buffer, out: win.out.buffer, gen: arrays.gen, data: data.buffer, offset: data.byteOffset, pages, chunkPages: this.chunkPages };
    this.pool.post(this.workers, { ...job, fault: this.fault });
    this.fault = undefined;
  }

  /** Copies the lowest FREE chunk into the window and makes it READY, if fewer than COPY_AHEAD wait for workers. */
  private feed(): boolean {
    const win = this.win!;
    if (win.data === undefined || win.frontier >= win.chunks) return false;
    if (win.readied - win.tookReady - Atomics.load(win.ctrl, CLAIMS) >= COPY_AHEAD) return false;
    const k = win.frontier++;
    const first = (win.firstChunk + k) * this.chunkPages;
    const end = Math.min(this.count, first + this.chunkPages);
    const input = this.input;
    const at = k * this.chunkPages * PAGE;
    if (input instanceof Uint8Array) win.data.set(input.subarray(first * PAGE, end * PAGE), at);
    else for (let i = first; i < end; i++) win.data.set(input[i]!, at + (i - first) * PAGE);
    win.readied++;
    Atomics.store(win.ctrl, HEADER + k, win.g4 + READY); // after the bytes: a worker that sees READY sees them
    Atomics.add(win.ctrl, BELL, 1);
    Atomics.notify(win.ctrl, BELL);
    return true;
  }

  /** Claims chunk j if it is READY (a worker may be claiming it at the same moment: compare-exchange). */
  private takeReady(j: number): boolean {
    const win = this.win!;
    if (Atomics.compareExchange(win.ctrl, HEADER + j, win.g4 + READY, win.g4 + CLAIMED) !== win.g4 + READY) return false;
    win.tookReady++;
    return true;
  }

  /** Something for the calling thread to hash instead of waiting: the lowest FREE chunk, else a READY one after k. */
  private takeWork(k: number): number {
    const win = this.win!;
    if (win.frontier < win.chunks) {
      const j = win.frontier++;
      Atomics.store(win.ctrl, HEADER + j, win.g4 + CLAIMED); // workers skip it
      return j;
    }
    for (let j = k + 1; j < win.chunks; j++) if (this.takeReady(j)) return j;
    return -1;
  }

  private finishWindow(): void {
    const win = this.win!;
    for (let k = 0; k < win.chunks; k++) if (this.copied[win.firstChunk + k] === 0) this.await(k);
    this.leaveWindow();
  }

  /** Ends the window for the workers; gives its arrays back when no worker can write into them any more. */
  private leaveWindow(): void {
    const win = this.win!;
    Atomics.store(win.ctrl, STOP, 1);
    Atomics.notify(win.ctrl, BELL);
    let settled = win.stolen === 0;
    for (let k = 0; settled && k < win.chunks; k++) settled = Atomics.load(win.ctrl, HEADER + k) === win.g4 + DONE;
    if (settled) this.pool.giveBack(win);
  }

  /**
   * Returns once chunk k of the window is in `results`. Meanwhile the calling thread keeps the workers fed and hashes
   * unclaimed chunks itself; when a worker holds k it waits at most STEAL_AFTER_MS, then hashes k itself: a
   * descheduled, stalled or killed worker costs time, never a hang or a wrong digest.
   */
  private await(k: number): void {
    const win = this.win!;
    const ctrl = win.ctrl;
    let deadline = 0;
    for (;;) {
      const state = Atomics.load(ctrl, HEADER + k) - win.g4;
      if (state === DONE) break;
      this.checkFailed();
      const seq = Atomics.load(ctrl, SEQ);
      // Workers first (feed), then other work (k itself is the workers' next), then k if no worker took it.
      if (this.feed()) continue;
      const j = this.takeWork(k);
      if (j >= 0 || (state === READY && this.takeReady(k))) {
        this.hashChunk(j >= 0 ? j : k);
        continue;
      }
      const now = performance.now();
      if (deadline === 0) deadline = now + STEAL_AFTER_MS;
      if (now >= deadline) {
        this.stolen++;
        win.stolen++;
        this.hashChunk(k);
      } else Atomics.wait(ctrl, SEQ, seq, deadline - now);
    }
    this.checkFailed();
    const c = win.firstChunk + k;
    if (this.copied[c] === 0) {
      // Published by a worker: its digests are complete (DONE is stored after the writes), copy them out.
      const from = k * this.chunkPages * HASH;
      const to = Math.min(win.out.length, from + this.chunkPages * HASH);
      this.results.set(win.out.subarray(from, to), c * this.chunkPages * HASH);
      this.copied[c] = 1;
    }
  }

  /** Chunk j of the window on the calling thread, published so that the loop in await sees it. */
  private hashChunk(j: number): void {
    this.hashInto(this.win!.firstChunk + j);
    Atomics.store(this.win!.ctrl, HEADER + j, this.win!.g4 + DONE);
  }

  /** Chunk c of the input on the calling thread, from the caller's own bytes straight into `results`. */
  private hashInto(c: number): void {
    const end = Math.min(this.count, (c + 1) * this.chunkPages);
    for (let i = c * this.chunkPages; i < end; i++) this.results.set(sha384(pageOf(this.input, i)), i * HASH);
    this.copied[c] = 1;
  }

  private checkFailed(): void {
    const f = Atomics.load(this.win!.ctrl, FAILED) - this.win!.g4;
    if (f === 1) this.fail('a page-hash worker thread failed');
    if (f === 2) this.fail('a page-hash worker thread exited in the middle of a job');
  }

  private fail(message: string): never {
    // The pool cannot be trusted after this; the caller gets no digest rather than a wrong one.
    this.pool.broken = true;
    this.close();
    throw new SevError('ERR_SEV_WORKER', `${message}; the SNP digest was not computed`);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    // Workers leave the job after their current chunk (which only touches this window's arrays).
    if (this.win !== undefined) this.leaveWindow();
    this.pool.release();
  }
}
