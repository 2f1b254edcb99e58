/** Reporting: the goals and tables as text. */
import { GOAL_LAUNCH_CLIENTS } from './constants';
import { fmt, table } from '../harness';
import { type DriverResult, type NullLaunchResult, type PacedResult } from './results';
import { type CpuShare, type OpenLoopGoal, type TransportFloor } from './stats';

export function openLoopGoalText(g: OpenLoopGoal | null): string {
  if (!g) return `not measured (add paced to --cases and ${GOAL_LAUNCH_CLIENTS} to --concurrency)`;
  if (g.maxRateMet === null || g.ratioToCapacity === null)
    return `not met at any measured rate (lowest: ${fmt(g.lowest.offeredPerSec)}/s, p99 ${fmt(g.lowest.p99Ms)} ms)`;
  const held =
    `holds up to ${fmt(g.maxRateMet)} launches/s (${(100 * g.ratioToCapacity).toFixed(0)} % of the closed-loop ${g.concurrency}-client capacity of ` +
    `${fmt(g.closedLoopOpsPerSec)}/s)`;
  return g.firstMissed ? `${held}; p99 ${fmt(g.firstMissed.p99Ms)} ms at ${fmt(g.firstMissed.offeredPerSec)}/s` : `${held}, the highest rate measured`;
}

export function transportFloorText(f: TransportFloor | null): string {
  const what = `transport floor (null launch: the same two calls to a broker doing nothing) at ${GOAL_LAUNCH_CLIENTS} clients`;
  if (!f || (!f.closedLoop && f.openLoop.length === 0)) return `${what}: not measured (add null to --cases and ${GOAL_LAUNCH_CLIENTS} to --concurrency)`;
  const parts: string[] = [];
  if (f.closedLoop) parts.push(`closed loop ${fmt(f.closedLoop.opsPerSec)}/s, p99 ${fmt(f.closedLoop.p99Ms)} ms`);
  if (f.openLoop.length > 0) parts.push(`open loop p99 ${f.openLoop.map((r) => `${fmt(r.p99Ms)} ms at ${fmt(r.offeredPerSec)}/s`).join(', ')}`);
  return `${what}: ${parts.join('; ')}`;
}

/** The null case as a table: closed loop at each number of clients, then the paced rates. */
export function nullTable(n: NullLaunchResult): string {
  const pct = (x: number | null) => (x === null ? '-' : `${x.toFixed(0)} %`);
  const cpu = (r: CpuShare) => [r.brokerCpuMsPerOp === null ? '-' : fmt(r.brokerCpuMsPerOp), pct(r.brokerCpuPct), pct(r.benchCpuPct), pct(r.otherCpuPct)];
  const rows = [
    ...n.closed.map((r) => ['closed loop', String(r.concurrency), '-', fmt(r.opsPerSec), fmt(r.p50Ms), fmt(r.p99Ms), fmt(r.maxMs), '-', ...cpu(r)]),
    ...n.paced.map((r) => [
      'paced',
      String(r.concurrency),
      fmt(r.offeredPerSec),
      fmt(r.achievedPerSec),
      fmt(r.p50Ms),
      fmt(r.p99Ms),
      fmt(r.maxMs),
      fmt(r.releaseLagP99Ms),
      ...cpu(r),
    ]),
  ];
  const header = [
    'null launch',
    'clients',
    'offered/s',
    'launches/s',
    'p50 ms',
    'p99 ms',
    'max ms',
    'lag p99 ms',
    'server CPU ms/op',
    'server CPU',
    'bench CPU',
    'other CPU',
  ];
  return table(header, rows, new Set([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]));
}

/** The paced results as a table; the number of clients and the capacity only on the first row of each group. */
export function pacedTable(paced: readonly PacedResult[]): string {
  const pct = (x: number | null) => (x === null ? '-' : `${x.toFixed(0)} %`);
  const rows = paced.flatMap((p) =>
    p.rates.map((r, i) => [
      i === 0 ? String(p.concurrency) : '',
      i === 0 ? `${fmt(p.closedLoopOpsPerSec)}${p.closedLoopSource === 'probe' ? ' (probe)' : ''}` : '',
      fmt(r.offeredPerSec),
      r.ratioToCapacity.toFixed(2),
      String(r.arrivals),
      fmt(r.achievedPerSec),
      fmt(r.p50Ms),
      fmt(r.p99Ms),
      fmt(r.maxMs),
      fmt(r.meanWaitMs),
      pct(r.waitedPct),
      fmt(r.releaseLagP99Ms),
      r.brokerCpuMsPerOp === null ? '-' : fmt(r.brokerCpuMsPerOp),
      pct(r.brokerCpuPct),
      pct(r.benchCpuPct),
      pct(r.otherCpuPct),
    ]),
  );
  const header = [
    'clients',
    'closed-loop/s',
    'offered/s',
    '÷ closed',
    'arrivals',
    'achieved/s',
    'p50 ms',
    'p99 ms',
    'max ms',
    'wait ms',
    'waited',
    'lag p99 ms',
  ];
  header.push('broker CPU ms/op', 'broker CPU', 'bench CPU', 'other CPU');
  return table(header, rows, new Set(header.keys()));
}

/**
 * The REST launch (/sev/v1) against the gRPC launch of the same run: closed-loop capacity at each number of clients
 * (goal ≥ 0.9 ×), and p50/p99 at each paced rate both ran (goal ≤ 1.1 ×).
 */
export function restVsGrpcLines(d: DriverResult): string[] {
  const out = ['REST (/sev/v1) vs gRPC full launch, same run (goals: capacity ≥ 0.9 ×, paced p50/p99 ≤ 1.1 ×):'];
  for (const r of d.results.filter((x) => x.case === 'rest')) {
    const g = d.results.find((x) => x.case === 'launch' && x.concurrency === r.concurrency);
    if (g)
      out.push(
        `  closed loop, ${r.concurrency} client(s): REST ${fmt(r.opsPerSec)}/s vs gRPC ${fmt(g.opsPerSec)}/s = ${(r.opsPerSec / g.opsPerSec).toFixed(2)} ×`,
      );
  }
  for (const rp of d.restPaced) {
    const gp = d.paced.find((p) => p.concurrency === rp.concurrency);
    for (const r of rp.rates) {
      const g = gp?.rates.find((x) => x.offeredPerSec === r.offeredPerSec);
      if (!g) continue;
      out.push(
        `  paced ${rp.concurrency} client(s) at ${fmt(r.offeredPerSec)}/s: p50 ${fmt(r.p50Ms)} vs ${fmt(g.p50Ms)} ms = ${(r.p50Ms / g.p50Ms).toFixed(2)} ×, ` +
          `p99 ${fmt(r.p99Ms)} vs ${fmt(g.p99Ms)} ms = ${(r.p99Ms / g.p99Ms).toFixed(2)} ×`,
      );
    }
  }
  return out;
}
