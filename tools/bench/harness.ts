/**
 * Small timing helpers shared by the micro-benchmarks (tools/bench/*.ts). Node built-ins only.
 *
 * Each case is warmed up (JIT, lazy crypto initialisation, caches) and then run for a fixed wall-clock time; the
 * clock is read once per batch, with the batch sized from the warm-up so that the timer itself costs ~nothing even
 * for sub-microsecond operations.
 */
import { performance } from 'node:perf_hooks';

export interface MeasureOptions {
  /** Measured run time, seconds (default 1.5). */
  seconds?: number;
  /** Warm-up time before measuring, milliseconds (default 200). */
  warmupMs?: number;
}

export interface MeasureResult {
  name: string;
  /** Operations completed in the measured window. */
  ops: number;
  /** Measured window, seconds. */
  seconds: number;
  opsPerSec: number;
  /** Mean wall-clock time per operation, microseconds. */
  meanUs: number;
}

export interface MeasureAsyncOptions extends MeasureOptions {
  /** Operations kept in flight at once (default 1). */
  concurrency?: number;
  /** Called right before and right after the measured window (not around the warm-up). */
  window?: WindowHooks;
}

/** Callbacks around a measured window, e.g. to sample CPU time consumed during exactly that window. */
export interface WindowHooks {
  start(): void;
  end(): void;
}

export interface MeasureAsyncResult extends MeasureResult {
  concurrency: number;
  /** Latency percentiles of single operations, milliseconds. */
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
}

const DEFAULT_SECONDS = 1.5;
const DEFAULT_WARMUP_MS = 200;
/** Target duration of one timed batch in measure(). */
const BATCH_TARGET_MS = 2;

/** Results are stored here so that no benchmarked call can be treated as dead code. */
export let sink: unknown;

function checkOptions(o: MeasureOptions): { seconds: number; warmupMs: number } {
  const seconds = o.seconds ?? DEFAULT_SECONDS;
  const warmupMs = o.warmupMs ?? DEFAULT_WARMUP_MS;
  if (!(seconds > 0) || !Number.isFinite(seconds)) throw new RangeError(`seconds must be > 0, got ${seconds}`);
  if (!(warmupMs >= 0) || !Number.isFinite(warmupMs)) throw new RangeError(`warmupMs must be >= 0, got ${warmupMs}`);
  return { seconds, warmupMs };
}

/** Run a synchronous operation repeatedly for a fixed time and report its throughput. */
export function measure(name: string, fn: () => unknown, opts: MeasureOptions = {}): MeasureResult {
  const { seconds, warmupMs } = checkOptions(opts);

  // Warm-up: at least one call, also used to size the timed batches.
  let warmOps = 0;
  const w0 = performance.now();
  let wElapsed = 0;
  do {
    sink = fn();
    warmOps++;
    wElapsed = performance.now() - w0;
  } while (wElapsed < warmupMs);
  const perOpMs = wElapsed / warmOps;
  const batch = Math.max(1, Math.floor(BATCH_TARGET_MS / Math.max(perOpMs, 1e-6)));

  const budgetMs = seconds * 1000;
  let ops = 0;
  const t0 = performance.now();
  let elapsed = 0;
  do {
    for (let i = 0; i < batch; i++) sink = fn();
    ops += batch;
    elapsed = performance.now() - t0;
  } while (elapsed < budgetMs);

  return { name, ops, seconds: elapsed / 1000, opsPerSec: (ops * 1000) / elapsed, meanUs: (elapsed * 1000) / ops };
}

/** Nearest-rank percentile of an ascending array. */
export function percentile(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return NaN;
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[rank]!;
}

/** Format a number with a sensible number of significant digits and thousands separators. */
export function fmt(n: number, digits = 3): string {
  if (!Number.isFinite(n)) return String(n);
  const abs = Math.abs(n);
  if (abs >= 1000) return Math.round(n).toLocaleString('en-US');
  const decimals = abs === 0 ? 0 : Math.max(0, digits - 1 - Math.floor(Math.log10(abs)));
  return n.toFixed(Math.min(decimals, 6));
}

/** Render rows as an aligned text table; columns listed in `right` are right-aligned. */
export function table(header: readonly string[], rows: readonly (readonly string[])[], right: ReadonlySet<number> = new Set()): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: readonly string[]) =>
    cells
      .map((c, i) => (right.has(i) ? c.padStart(widths[i]!) : c.padEnd(widths[i]!)))
      .join('  ')
      .trimEnd();
  return [line(header), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)].join('\n');
}

export interface LatencySummary {
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
}

/** Nearest-rank p50/p99/max of latency samples in milliseconds (NaN when there are none). */
export function summarizeLatencies(samplesMs: ArrayLike<number>): LatencySummary {
  const sorted = Float64Array.from(samplesMs).sort();
  return { p50Ms: percentile(sorted, 50), p99Ms: percentile(sorted, 99), maxMs: sorted.length > 0 ? sorted[sorted.length - 1]! : NaN };
}

/** Growable Float64Array of latency samples. */
class Samples {
  private buf = new Float64Array(1024);
  length = 0;
  push(v: number): void {
    if (this.length === this.buf.length) {
      const grown = new Float64Array(this.buf.length * 2);
      grown.set(this.buf);
      this.buf = grown;
    }
    this.buf[this.length++] = v;
  }
  values(): Float64Array {
    return this.buf.subarray(0, this.length);
  }
}

function concurrencyOf(opts: { concurrency?: number }): number {
  const concurrency = opts.concurrency ?? 1;
  if (!Number.isInteger(concurrency) || concurrency < 1) throw new RangeError(`concurrency must be an integer >= 1, got ${concurrency}`);
  return concurrency;
}

function asyncResult(name: string, ops: number, elapsedMs: number, concurrency: number, samples: Samples): MeasureAsyncResult {
  return {
    name,
    ops,
    seconds: elapsedMs / 1000,
    opsPerSec: (ops * 1000) / elapsedMs,
    meanUs: ops > 0 ? (elapsedMs * 1000) / ops : NaN,
    concurrency,
    ...summarizeLatencies(samples.values()),
  };
}

/**
 * Run an asynchronous operation with `concurrency` calls in flight for a fixed time; `fn` gets its worker index
 * (0 … concurrency-1) so each simulated client can keep its own connection. Reports throughput over the whole window
 * (meanUs = window / ops: inverse throughput, not latency once concurrency > 1) and single-call latency (p50/p99/max).
 * Every call started before the deadline is counted; the window ends when the last of them completes.
 */
export async function measureAsync(name: string, fn: (worker: number) => Promise<unknown>, opts: MeasureAsyncOptions = {}): Promise<MeasureAsyncResult> {
  const { seconds, warmupMs } = checkOptions(opts);
  const concurrency = concurrencyOf(opts);
  const run = async (durationMs: number, samples: Samples | undefined) => {
    let ops = 0;
    const t0 = performance.now();
    const deadline = t0 + durationMs;
    const worker = async (w: number) => {
      do {
        const s = performance.now();
        sink = await fn(w);
        samples?.push(performance.now() - s);
        ops++;
      } while (performance.now() < deadline); // at least one call per worker, even with a 0 ms warm-up
    };
    await Promise.all(Array.from({ length: concurrency }, (_, w) => worker(w)));
    return { ops, elapsedMs: performance.now() - t0 };
  };
  await run(warmupMs, undefined);
  const samples = new Samples();
  opts.window?.start();
  const { ops, elapsedMs } = await run(seconds * 1000, samples);
  opts.window?.end();
  return asyncResult(name, ops, elapsedMs, concurrency, samples);
}

export interface MeasureEachResult extends MeasureAsyncResult {
  /** Latency of every call, milliseconds, in completion order (to merge several batches). */
  latenciesMs: Float64Array;
}

/**
 * Calls `fn` once per item, `concurrency` calls in flight, and times exactly those calls: for operations that consume
 * an input prepared beforehand, untimed (a one-shot token, a session). The window runs from the first start to the
 * last completion, so a batch should be large against `concurrency` to keep the drain at its end negligible.
 */
export async function measureEach<T>(
  name: string,
  items: readonly T[],
  fn: (item: T, worker: number) => Promise<unknown>,
  opts: { concurrency?: number; window?: WindowHooks } = {},
): Promise<MeasureEachResult> {
  const concurrency = concurrencyOf(opts);
  const samples = new Samples();
  let next = 0;
  opts.window?.start();
  const t0 = performance.now();
  const worker = async (w: number) => {
    while (next < items.length) {
      const item = items[next++]!;
      const s = performance.now();
      sink = await fn(item, w);
      samples.push(performance.now() - s);
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, Math.max(1, items.length)) }, (_, w) => worker(w)));
  const elapsedMs = performance.now() - t0;
  opts.window?.end();
  return { ...asyncResult(name, samples.length, elapsedMs, concurrency, samples), latenciesMs: Float64Array.from(samples.values()) };
}

export interface MeasureOpenLoopOptions extends MeasureOptions {
  /** Offered arrival rate, operations per second: the mean of a Poisson process. */
  ratePerSec: number;
  /** Clients (servers): operations in flight at most; an arrival finding all of them busy waits in a FIFO queue. */
  concurrency?: number;
  /** Called when the measured window opens and when it closes (not around the warm-up or the drain). */
  window?: WindowHooks;
  /** Uniform random numbers in [0, 1) for the inter-arrival times (default Math.random), e.g. a seeded source. */
  random?: () => number;
}

export interface MeasureOpenLoopResult extends LatencySummary {
  name: string;
  concurrency: number;
  /** The rate asked for, operations/s. */
  offeredPerSec: number;
  /** Arrivals scheduled in the measured window; each is timed to its completion, even one after the window. */
  arrivals: number;
  /** arrivals ÷ window: the rate actually offered (a Poisson count is noisy: ± √arrivals). */
  arrivalsPerSec: number;
  /** Operations (any arrival's) completed inside the measured window. */
  completed: number;
  /** completed ÷ window: throughput, ≈ arrivalsPerSec below capacity, the capacity above it. */
  achievedPerSec: number;
  /** Measured window, seconds (from when the window hooks actually ran). */
  seconds: number;
  /** Mean time an arrival spent in the FIFO queue because all clients were busy, ms, over all arrivals (0 for most). */
  meanWaitMs: number;
  /** % of arrivals that found all clients busy and had to queue. */
  waitedPct: number;
  /** p99 of how late the event loop released an arrival after its scheduled time, ms (part of the latency). */
  releaseLagP99Ms: number;
}

/** setTimeout's longest delay (a longer one fires at once); a sleep that long just wakes up and sleeps again. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/** One arrival: its scheduled time, and whether it belongs to the measured window. */
interface Arrival {
  at: number;
  measured: boolean;
  queuedAt?: number;
}

/**
 * Open-loop (paced) measurement: operations arrive as a Poisson process at `ratePerSec`, whatever the state of the
 * system under test, as requests from independent hosts do, and are served by `concurrency` clients (`fn` gets the
 * client's index, 0 … concurrency-1); an arrival that finds every client busy waits in a FIFO queue.
 *
 * Latency runs from an arrival's *scheduled* time to its completion, so time spent queued (and any lateness of this
 * event loop) counts: no coordinated omission. Arrivals are scheduled on absolute times from performance.now(), so
 * timer drift does not accumulate; when the event loop falls behind, every arrival already due is released at once,
 * with its original timestamp.
 *
 * Arrivals during the first `warmupMs` and after the window are served but not recorded. Arrivals keep coming after
 * the window until the last measured one completes, so that the measured ones see a steadily loaded system to the end;
 * operations still in flight then are awaited (not recorded), and arrivals still queued are dropped. Above capacity
 * the queue grows for the whole window, and draining it takes about (offered ÷ capacity − 1) × the window.
 * The first error thrown by `fn` stops the arrivals and is rethrown once the operations in flight have settled.
 */
export async function measureOpenLoop(name: string, fn: (worker: number) => Promise<unknown>, opts: MeasureOpenLoopOptions): Promise<MeasureOpenLoopResult> {
  const { seconds, warmupMs } = checkOptions(opts);
  const concurrency = concurrencyOf(opts);
  const rate = opts.ratePerSec;
  if (!(rate > 0) || !Number.isFinite(rate)) throw new RangeError(`ratePerSec must be > 0, got ${rate}`);
  const random = opts.random ?? Math.random;
  const meanGapMs = 1000 / rate;
  // Exponential inter-arrival times; 1 − u is in (0, 1], so the logarithm stays finite.
  const gapMs = () => -Math.log(1 - random()) * meanGapMs;

  const latencies = new Samples();
  const lags = new Samples();
  let arrivals = 0;
  let waited = 0;
  let waitSumMs = 0;
  let pendingMeasured = 0;
  let completed = 0;
  let inWindow = false;
  let windowStart = NaN;
  let windowEnd = Infinity; // until the window has actually closed
  let stopped = false;
  let failure: { error: unknown } | undefined;

  const free = Array.from({ length: concurrency }, (_, w) => w);
  const queue: Arrival[] = [];
  let queueHead = 0; // queue[queueHead…] are waiting; consumed entries are dropped in bulk, not shift()ed one by one
  let inFlight = 0;
  let wake: (() => void) | undefined;
  let idle: (() => void) | undefined;

  const start = (a: Arrival, w: number) => {
    const now = performance.now();
    if (a.measured && a.queuedAt !== undefined) waitSumMs += now - a.queuedAt;
    inFlight++;
    // A synchronous throw from fn becomes a rejection like any other failure.
    new Promise<unknown>((resolve) => resolve(fn(w))).then(
      (v) => {
        sink = v;
        complete(a, w);
      },
      (e: unknown) => {
        failure ??= { error: e };
        stop();
        complete(a, w);
      },
    );
  };
  const complete = (a: Arrival, w: number) => {
    const now = performance.now();
    inFlight--;
    if (inWindow) completed++;
    if (a.measured) {
      latencies.push(now - a.at);
      if (--pendingMeasured === 0 && now >= windowEnd) stop();
    }
    if (!stopped && queueHead < queue.length) {
      start(queue[queueHead++]!, w);
      if (queueHead > 1024 && queueHead * 2 > queue.length) (queue.splice(0, queueHead), (queueHead = 0));
    } else {
      free.push(w);
    }
    if (stopped && inFlight === 0) idle?.();
  };
  const release = (a: Arrival, now: number) => {
    if (a.measured) {
      arrivals++;
      pendingMeasured++;
      lags.push(now - a.at);
    }
    const w = free.shift(); // oldest free client first, so that every connection stays in use
    if (w !== undefined) return start(a, w);
    if (a.measured) waited++;
    a.queuedAt = now;
    queue.push(a);
  };
  function stop(): void {
    stopped = true;
    wake?.();
  }

  const tBegin = performance.now();
  const t0 = tBegin + warmupMs;
  const t1 = t0 + seconds * 1000;
  let next = tBegin + gapMs();
  while (!stopped) {
    const now = performance.now();
    if (!inWindow && Number.isNaN(windowStart) && now >= t0) {
      opts.window?.start();
      windowStart = performance.now();
      inWindow = true;
    }
    // Everything due is released before the window may close, so no measured arrival is left behind by a late wake-up.
    for (; next <= now; next += gapMs()) release({ at: next, measured: next >= t0 && next < t1 }, now);
    if (inWindow && now >= t1) {
      windowEnd = performance.now();
      inWindow = false;
      opts.window?.end();
      if (pendingMeasured === 0) break;
    }
    // Sleep until the next arrival or window edge; a completion that ends the run (or an error) wakes the loop early.
    const until = Math.min(next, inWindow ? t1 : Number.isNaN(windowStart) ? t0 : Infinity);
    await new Promise<void>((resolve) => {
      const timer = setTimeout(() => ((wake = undefined), resolve()), Math.min(MAX_TIMER_MS, Math.max(0, until - performance.now())));
      wake = () => (clearTimeout(timer), (wake = undefined), resolve());
    });
  }
  stopped = true;
  if (inWindow) {
    // only after an error inside the window
    windowEnd = performance.now();
    inWindow = false;
    opts.window?.end();
  }
  if (inFlight > 0) await new Promise<void>((resolve) => (idle = resolve));
  if (failure) throw failure.error;

  const windowMs = windowEnd - windowStart;
  return {
    name,
    concurrency,
    offeredPerSec: rate,
    arrivals,
    arrivalsPerSec: (arrivals * 1000) / windowMs,
    completed,
    achievedPerSec: (completed * 1000) / windowMs,
    seconds: windowMs / 1000,
    ...summarizeLatencies(latencies.values()),
    meanWaitMs: arrivals > 0 ? waitSumMs / arrivals : NaN,
    waitedPct: arrivals > 0 ? (100 * waited) / arrivals : NaN,
    releaseLagP99Ms: summarizeLatencies(lags.values()).p99Ms,
  };
}
