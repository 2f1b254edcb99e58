import { percentile, summarizeLatencies } from '../bench/harness';
import { GOAL_LAUNCH_CLIENTS, GOAL_LAUNCH_P99_MS } from '../bench/broker/constants';
import type { DriverResult, PacedRate, PacedResult } from '../bench/broker/results';
import { cpuShare, openLoopGoal, pacedSeconds, transportFloor } from '../bench/broker/stats';

const sorted = (xs: number[]) => Float64Array.from(xs).sort();

describe('percentiles (nearest rank)', () => {
  it('p50/p99/p100 of 1..100 are the 50th, 99th and 100th values', () => {
    const xs = sorted(Array.from({ length: 100 }, (_, i) => 100 - i)); // given in reverse: sorting is part of it
    expect([percentile(xs, 50), percentile(xs, 99), percentile(xs, 100)]).toEqual([50, 99, 100]);
  });

  it('rounds the rank up: p99 of 10 samples is the largest, p50 of 3 the middle one, p0 the smallest', () => {
    const ten = sorted([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    expect(percentile(ten, 99)).toBe(10);
    expect(percentile(ten, 90)).toBe(9);
    expect(percentile(sorted([3, 1, 2]), 50)).toBe(2);
    expect(percentile(ten, 0)).toBe(1);
  });

  it('one sample is every percentile; none is NaN', () => {
    expect(percentile(sorted([7]), 1)).toBe(7);
    expect(percentile(sorted([7]), 99)).toBe(7);
    expect(percentile(new Float64Array(0), 50)).toBeNaN();
  });

  it('summarizeLatencies sorts numerically (not as strings) and reports the maximum', () => {
    // as strings, "10" < "9": a lexicographic sort would make 9 the maximum
    expect(summarizeLatencies([9, 10, 100, 2, 1000])).toEqual({ p50Ms: 10, p99Ms: 1000, maxMs: 1000 });
    const none = summarizeLatencies([]);
    expect([none.p50Ms, none.p99Ms, none.maxMs].every(Number.isNaN)).toBe(true);
  });
});

describe('rates and CPU shares', () => {
  it('CPU per op and in % of one core over the window', () => {
    // 500 ms of broker CPU over a 2 s window and 250 ops: 2 ms/op, a quarter of a core
    expect(cpuShare({ brokerMs: 500, benchMs: 1000, otherMs: 200 }, 2000, 250)).toEqual({
      brokerCpuMs: 500,
      brokerCpuMsPerOp: 2,
      brokerCpuPct: 25,
      benchCpuPct: 50,
      otherCpuPct: 10,
    });
  });

  it('keeps unknown CPU times unknown (in-process broker, no /proc)', () => {
    expect(cpuShare({ brokerMs: null, benchMs: 300, otherMs: null }, 1000, 10)).toEqual({
      brokerCpuMs: null,
      brokerCpuMsPerOp: null,
      brokerCpuPct: null,
      benchCpuPct: 30,
      otherCpuPct: null,
    });
  });

  it('a paced rate runs --seconds, or long enough for --min-arrivals arrivals at that rate', () => {
    expect(pacedSeconds(100, { seconds: 3, minArrivals: 300 })).toBe(3); // 300 arrivals take exactly 3 s at 100/s
    expect(pacedSeconds(10, { seconds: 3, minArrivals: 300 })).toBe(30);
    expect(pacedSeconds(1000, { seconds: 3, minArrivals: 300 })).toBe(3);
  });
});

/** A paced rate with only what the goal reads. */
const rate = (offeredPerSec: number, p99Ms: number) => ({ offeredPerSec, p99Ms }) as PacedRate;
const pacedAt = (concurrency: number, closedLoopOpsPerSec: number, rates: PacedRate[]): PacedResult => ({
  concurrency,
  closedLoopOpsPerSec,
  closedLoopSource: 'launch',
  rates,
});
const p99 = (r: PacedRate) => r.p99Ms;

describe('the open-loop p99 goal', () => {
  const under = GOAL_LAUNCH_P99_MS - 1;
  const over = GOAL_LAUNCH_P99_MS + 5;

  it('holds up to the last rate before the first miss, as a share of the closed-loop capacity', () => {
    const g = openLoopGoal([pacedAt(GOAL_LAUNCH_CLIENTS, 200, [rate(20, under), rate(40, under), rate(60, over), rate(80, under)])], p99)!;
    expect(g.maxRateMet).toBe(40);
    expect(g.ratioToCapacity).toBeCloseTo(0.2);
    expect(g.metAtEveryRate).toBe(false);
    // a pass above the first miss is noise, not a higher limit
    expect(g.firstMissed).toEqual({ offeredPerSec: 60, p99Ms: over });
    expect(g.lowest).toEqual({ offeredPerSec: 20, p99Ms: under });
  });

  it('a p99 equal to the goal misses it (the goal is "below")', () => {
    const g = openLoopGoal([pacedAt(GOAL_LAUNCH_CLIENTS, 100, [rate(10, GOAL_LAUNCH_P99_MS)])], p99)!;
    expect(g.maxRateMet).toBeNull();
    expect(g.ratioToCapacity).toBeNull();
  });

  it("met at every rate; and not measured at the goal's number of clients", () => {
    const g = openLoopGoal([pacedAt(GOAL_LAUNCH_CLIENTS, 100, [rate(10, under), rate(50, under)])], p99)!;
    expect([g.maxRateMet, g.metAtEveryRate, g.firstMissed]).toEqual([50, true, null]);
    expect(openLoopGoal([pacedAt(GOAL_LAUNCH_CLIENTS + 1, 100, [rate(10, under)])], p99)).toBeNull();
    expect(openLoopGoal([pacedAt(GOAL_LAUNCH_CLIENTS, 100, [])], p99)).toBeNull();
  });
});

describe('the transport floor', () => {
  it("takes the null launch at the goal's number of clients, closed and open loop", () => {
    const nullLaunch = {
      pid: 1,
      closed: [
        { concurrency: 1, opsPerSec: 900, p99Ms: 2 },
        { concurrency: GOAL_LAUNCH_CLIENTS, opsPerSec: 3000, p99Ms: 9 },
      ],
      paced: [
        { concurrency: GOAL_LAUNCH_CLIENTS, offeredPerSec: 100, p50Ms: 1, p99Ms: 3, extra: 'dropped' },
        { concurrency: 1, offeredPerSec: 100, p50Ms: 5, p99Ms: 6 },
      ],
    };
    const f = transportFloor({ nullLaunch } as unknown as DriverResult)!;
    expect(f).toEqual({
      goalMs: GOAL_LAUNCH_P99_MS,
      concurrency: GOAL_LAUNCH_CLIENTS,
      closedLoop: { opsPerSec: 3000, p99Ms: 9 },
      openLoop: [{ offeredPerSec: 100, p50Ms: 1, p99Ms: 3 }],
    });
    expect(transportFloor({ nullLaunch: null } as DriverResult)).toBeNull();
  });
});
