/**
 * Where a full launch's time goes, as the simulated host sees it: the broker's two round trips, and the simulated
 * Secure Processor's work between and after them (which a real host does on its own AMD SP, not on the broker's
 * machine). Used by tools/bench/broker.ts for the closed-loop and the paced full launches.
 */
import { performance } from 'node:perf_hooks';
import { fmt, summarizeLatencies, table, type LatencySummary, type WindowHooks } from './harness';

export const PHASES = [
  { id: 'bundle', label: 'GetBundle' },
  { id: 'hostStart', label: 'SP start…measure' },
  { id: 'secret', label: 'GetSecret' },
  { id: 'hostFinish', label: 'SP secret+finish' },
  { id: 'broker', label: 'broker: both calls' },
] as const;

export type PhaseId = (typeof PHASES)[number]['id'];
/** Per phase, latency percentiles over the launches that began in the measured window. */
export type PhaseSummary = Record<PhaseId, LatencySummary>;

/** The timer of one launch: `lap(phase)` ends that phase (and starts the next) now. */
export interface LaunchTimer {
  lap(phase: Exclude<PhaseId, 'broker'>): void;
}

const IGNORED: LaunchTimer = { lap: () => undefined };

/**
 * Records the phases of launches that begin inside a measured window (also when they end after it, as the open-loop
 * runs time every arrival of the window to completion). A WindowHooks, to be driven with the CPU meter's window.
 */
export class LaunchPhases implements WindowHooks {
  private recording = false;
  private samples = new Map<PhaseId, number[]>();

  start(): void {
    this.samples = new Map();
    this.recording = true;
  }

  end(): void {
    this.recording = false;
  }

  launch(): LaunchTimer {
    if (!this.recording) return IGNORED;
    const samples = this.samples;
    let last = performance.now();
    const laps: Partial<Record<PhaseId, number>> = {};
    return {
      lap: (phase) => {
        const now = performance.now();
        laps[phase] = now - last;
        last = now;
        push(samples, phase, laps[phase]!);
        if (phase === 'secret') push(samples, 'broker', laps.bundle! + laps.secret!);
      },
    };
  }

  /** The window's phases; null when no launch began in it. */
  summary(): PhaseSummary | null {
    if (!this.samples.has('bundle')) return null;
    return Object.fromEntries(PHASES.map(({ id }) => [id, summarizeLatencies(this.samples.get(id) ?? [])])) as PhaseSummary;
  }
}

function push(samples: Map<PhaseId, number[]>, phase: PhaseId, ms: number): void {
  let list = samples.get(phase);
  if (!list) samples.set(phase, (list = []));
  list.push(ms);
}

/** Several window hooks as one (the CPU meter and the phase recorder share their windows). */
export function windows(...hooks: WindowHooks[]): WindowHooks {
  return { start: () => hooks.forEach((h) => h.start()), end: () => hooks.forEach((h) => h.end()) };
}

/** Rows labelled by the caller (e.g. clients and rate), one "p50 / p99" cell per phase. */
export function phaseTable(labels: string[], rows: { label: string[]; phases: PhaseSummary | null | undefined }[]): string {
  const cell = (s: LatencySummary) => `${fmt(s.p50Ms)} / ${fmt(s.p99Ms)}`;
  return table(
    [...labels, ...PHASES.map((p) => p.label)],
    rows.map((r) => [...r.label, ...PHASES.map(({ id }) => (r.phases ? cell(r.phases[id]) : '-'))]),
    new Set(Array.from({ length: labels.length + PHASES.length }, (_, i) => i)),
  );
}
