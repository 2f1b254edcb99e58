/**
 * The CONTENTS field of every NORMAL page of an SNP launch digest (../shared/specs/launch-digest.md §4.1: SHA-384 of
 * the 4 KiB page), computed by a small pool of worker threads while the caller runs the PAGE_INFO chain in order.
 *
 * Why: an SNP digest costs two node:crypto calls per page, and only the second (LD_{i+1} = SHA-384(PAGE_INFO(LD_i,
 * CONTENTS_i, …))) is sequential. The page hashes are independent, so workers hash chunks of pages into shared memory
 * while the calling thread chains each page as soon as its chunk is published (Atomics), and hashes chunks itself
 * whenever it would otherwise wait. The API stays synchronous, so the digest functions keep their signatures.
 *
 * Safety: a worker that throws or exits marks the job failed, which ends in a SevError ERR_SEV_WORKER and a discarded
 * pool; a silent (stalled, descheduled, killed) one has its chunk hashed by the calling thread after a short wait.
 * Never a hang, never a wrong digest. The workers are unref()ed: they never keep a process alive.
 */
import { SevError } from '../errors';
import { ParallelPageHashes, type WorkerFault } from './page-hash-job';
import { autoThreads, inputPages, PAGE, pageOf, Pool, WINDOW_BYTES, type PageInput } from './page-hash-pool';
import { sha384 } from './sha384';

export type { PageInput, WorkerFault };

/** Pages claimed and published at once: 16 pages (~90 µs of hashing) keeps the chain fed and the atomics rare. */
export const PAGE_HASH_CHUNK_PAGES = 16;
/** Below this many pages a running pool costs more (waking a worker, copying) than it saves: measured, see README. */
export const PAGE_HASH_MIN_PAGES = 64;
/**
 * Without a pool yet, one is started only for inputs this large (128 MiB): below that a one-shot process (kbctl
 * measure) loses more to starting a worker (~60 ms here) and ending it at exit than it gains (measured, see README).
 */
export const PAGE_HASH_COLD_MIN_PAGES = 32768;
const MAX_THREADS = 8;

export interface PageHashOptions {
  /**
   * 0: hash every page on the calling thread (the sequential path). N > 0: up to N worker threads (at most 8) whatever
   * the size. Default: availableParallelism() − 1 workers for inputs of PAGE_HASH_MIN_PAGES pages or more once the
   * pool runs (warmPageHashPool, or an earlier input of PAGE_HASH_COLD_MIN_PAGES pages), else 0.
   */
  threads?: number;
  /** Tests only: pages per chunk (default PAGE_HASH_CHUNK_PAGES). */
  chunkPages?: number;
  /** Tests only: pages per shared window (default 1024, rounded up to whole chunks). */
  windowPages?: number;
}

/** SHA-384 of each page of an input, read with get(i) (in order is fastest); close() when done, also on error. */
export interface PageHashes {
  readonly count: number;
  /** Whether worker threads take part (false: the sequential path). */
  readonly parallel: boolean;
  /** The 48-byte CONTENTS of page i (a view: copy it to keep it past the next get). */
  get(i: number): Buffer;
  close(): void;
}

let nextFault: WorkerFault | undefined;
/** Test hook (not exported from the package): the next job's workers misbehave after claiming a chunk. */
export function injectPageHashFault(fault: WorkerFault | undefined): void {
  nextFault = fault;
}

let pool: Pool | undefined;

/** Ends the worker pool (the next parallel job starts a new one). The workers never keep a process alive anyway. */
export async function shutdownPageHashPool(): Promise<void> {
  const p = pool;
  pool = undefined;
  await p?.terminate();
}

/**
 * Starts the pool ahead of time, e.g. in a long-running process before its first digest; resolves true once every
 * worker is ready (false on one core, or if they are not within `timeoutMs`). Digests need not wait for it.
 */
export async function warmPageHashPool(threads = autoThreads(), timeoutMs = 10_000): Promise<boolean> {
  if (threads <= 0) return false;
  const p = poolWith(Math.min(threads, MAX_THREADS));
  const until = Date.now() + timeoutMs;
  while (p.ready() < p.workers.length && !p.broken && Date.now() < until) await new Promise((r) => setTimeout(r, 2));
  return p.ready() >= p.workers.length && !p.broken;
}

function poolWith(threads: number): Pool {
  if (pool?.broken) void shutdownPageHashPool();
  pool ??= new Pool();
  pool.grow(threads);
  return pool;
}

class SequentialPageHashes implements PageHashes {
  readonly parallel = false;
  constructor(
    private readonly input: PageInput,
    readonly count: number,
  ) {}
  get(i: number): Buffer {
    if (!Number.isInteger(i) || i < 0 || i >= this.count) throw new SevError('ERR_SEV_RANGE', `page ${i} is not in 0..${this.count - 1}`);
    return sha384(pageOf(this.input, i));
  }
  close(): void {}
}

/**
 * A copy of `data` in shared memory (a Buffer over a SharedArrayBuffer). The worker pool reads such an input where it
 * lies; any other buffer is copied into the pool's shared window chunk by chunk on the calling thread (~0.1x of a 4 MiB
 * digest here, see README "Benchmarks"). Worth it for an image measured more than once (one copy, then none).
 */
export function sharedPageBuffer(data: Uint8Array): Buffer {
  const out = Buffer.from(new SharedArrayBuffer(data.length));
  out.set(data);
  return out;
}

/** The default thread count for `count` pages (PageHashOptions.threads). */
function defaultThreads(count: number): number {
  if (count < PAGE_HASH_MIN_PAGES) return 0;
  const warm = pool !== undefined && !pool.broken;
  return warm || count >= PAGE_HASH_COLD_MIN_PAGES ? autoThreads() : 0;
}

function positive(what: string, n: number): number {
  if (!Number.isSafeInteger(n) || n < 1) throw new SevError('ERR_SEV_ARGUMENT', `${what} must be a positive integer, got ${String(n)}`);
  return n;
}

/**
 * The SHA-384 of every 4 KiB page of `data` (one buffer of whole pages, or a list of 4 KiB pages): on worker threads
 * when that pays off (PageHashOptions.threads), else on the calling thread as each is read.
 */
export function pageHashes(data: PageInput, opts: PageHashOptions = {}): PageHashes {
  const count = inputPages(data);
  const threads = opts.threads ?? defaultThreads(count);
  if (threads !== 0) positive('threads', threads);
  const chunkPages = positive('chunkPages', opts.chunkPages ?? PAGE_HASH_CHUNK_PAGES);
  const windowChunks = Math.ceil(positive('windowPages', opts.windowPages ?? WINDOW_BYTES / PAGE) / chunkPages);
  if (threads === 0 || count === 0 || pool?.busy) return new SequentialPageHashes(data, count);
  const p = poolWith(Math.min(threads, MAX_THREADS));
  const fault = nextFault;
  nextFault = undefined;
  return new ParallelPageHashes(p, data, count, p.acquire(Math.min(threads, MAX_THREADS)), { chunkPages, windowPages: windowChunks * chunkPages, fault });
}
