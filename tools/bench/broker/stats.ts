/**
 * The benchmark's statistics beyond latency percentiles (../harness.ts): CPU shares, paced run lengths, the open-loop
 * p99 goal and the transport floor. Pure functions, unit-tested in tools/test/bench-stats.test.ts.
 */
import { GOAL_LAUNCH_CLIENTS, GOAL_LAUNCH_P99_MS } from './constants';
import { type Options } from './options';
import { type DriverResult, type PacedRate, type PacedResult } from './results';

/** CPU time spent during a result's measured window(s), from CpuMeter.take(). */
export interface CpuShare {
  /** CPU time (user+system) of the broker process during the measured window(s), ms; null when in-process or unknown */
  brokerCpuMs: number | null;
  brokerCpuMsPerOp: number | null;
  /** brokerCpuMs / window, in % of one core */
  brokerCpuPct: number | null;
  /** CPU time of this (bench) process during the same window(s), in % of one core */
  benchCpuPct: number;
  /** CPU time of everything else on the machine (PostgreSQL, other jobs) during the same window(s), in % of one core */
  otherCpuPct: number | null;
}

/** CPU time summed over measured windows, ms (cases.ts CpuMeter.take()); null where it could not be read. */
export interface CpuTaken {
  brokerMs: number | null;
  benchMs: number;
  otherMs: number | null;
}

/** CPU time as shares of the window: per op (ms) and in % of one core (100 % = one core busy all the window). */
export function cpuShare(taken: CpuTaken, windowMs: number, ops: number): CpuShare {
  const { brokerMs, benchMs, otherMs } = taken;
  return {
    brokerCpuMs: brokerMs,
    brokerCpuMsPerOp: brokerMs === null ? null : brokerMs / ops,
    brokerCpuPct: brokerMs === null ? null : (100 * brokerMs) / windowMs,
    benchCpuPct: (100 * benchMs) / windowMs,
    otherCpuPct: otherMs === null ? null : (100 * otherMs) / windowMs,
  };
}

/** How long one paced rate runs: --seconds, or long enough for --min-arrivals arrivals. */
export function pacedSeconds(rate: number, opts: Pick<Options, 'seconds' | 'minArrivals'>): number {
  return Math.max(opts.seconds, opts.minArrivals / rate);
}

/** The launch p99 goal judged open loop (goals.launchP99OpenLoop in --json). */
export interface OpenLoopGoal {
  goalMs: number;
  concurrency: number;
  /** the closed-loop full launch/s at `concurrency` clients */
  closedLoopOpsPerSec: number;
  /** the highest offered launch/s up to which p99 < goalMs at every measured rate; null: not even at the lowest */
  maxRateMet: number | null;
  /** maxRateMet ÷ closedLoopOpsPerSec */
  ratioToCapacity: number | null;
  /** true: the goal held at the highest rate measured too, so the limit lies higher */
  metAtEveryRate: boolean;
  /** the lowest rate whose p99 missed the goal */
  firstMissed: { offeredPerSec: number; p99Ms: number } | null;
  lowest: { offeredPerSec: number; p99Ms: number };
}

/**
 * The launch p99 goal in open loop, from the paced case at GOAL_LAUNCH_CLIENTS clients, for the p99 `p99Of` picks
 * (the whole launch's, or one phase's); null when not measured.
 */
export function openLoopGoal(paced: readonly PacedResult[], p99Of: (r: PacedRate) => number): OpenLoopGoal | null {
  const p = paced.find((x) => x.concurrency === GOAL_LAUNCH_CLIENTS);
  if (!p || p.rates.length === 0) return null;
  // "Holds up to R": every measured rate up to R met the goal (rates are ascending); a pass above a miss is noise.
  const firstMiss = p.rates.findIndex((r) => !(p99Of(r) < GOAL_LAUNCH_P99_MS));
  const held = firstMiss === -1 ? p.rates.at(-1)! : p.rates[firstMiss - 1];
  const missed = firstMiss === -1 ? undefined : p.rates[firstMiss]!;
  return {
    goalMs: GOAL_LAUNCH_P99_MS,
    concurrency: GOAL_LAUNCH_CLIENTS,
    closedLoopOpsPerSec: p.closedLoopOpsPerSec,
    maxRateMet: held?.offeredPerSec ?? null,
    ratioToCapacity: held ? held.offeredPerSec / p.closedLoopOpsPerSec : null,
    metAtEveryRate: firstMiss === -1,
    firstMissed: missed ? { offeredPerSec: missed.offeredPerSec, p99Ms: p99Of(missed) } : null,
    lowest: { offeredPerSec: p.rates[0]!.offeredPerSec, p99Ms: p99Of(p.rates[0]!) },
  };
}

/** The null launch next to the launch goal: what the transport alone takes of it, at GOAL_LAUNCH_CLIENTS clients. */
export interface TransportFloor {
  goalMs: number;
  concurrency: number;
  /** closed loop; null when not measured at that number of clients */
  closedLoop: { opsPerSec: number; p99Ms: number } | null;
  /** at the paced case's rates */
  openLoop: { offeredPerSec: number; p50Ms: number; p99Ms: number }[];
}

export function transportFloor(d: DriverResult): TransportFloor | null {
  const n = d.nullLaunch;
  if (!n) return null;
  const closed = n.closed.find((r) => r.concurrency === GOAL_LAUNCH_CLIENTS);
  return {
    goalMs: GOAL_LAUNCH_P99_MS,
    concurrency: GOAL_LAUNCH_CLIENTS,
    closedLoop: closed ? { opsPerSec: closed.opsPerSec, p99Ms: closed.p99Ms } : null,
    openLoop: n.paced.filter((r) => r.concurrency === GOAL_LAUNCH_CLIENTS).map(({ offeredPerSec, p50Ms, p99Ms }) => ({ offeredPerSec, p50Ms, p99Ms })),
  };
}
