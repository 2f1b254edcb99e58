/** What a run produces: the result records of each case and database driver (the --json output). */
import { type CaseId, type Driver } from './constants';
import { type MeasureOpenLoopResult, type MeasureResult } from '../harness';
import { type PhaseSummary } from '../launch-phases';
import { type CpuShare } from './stats';

/** A closed-loop run at one concurrency. */
export interface ClosedLoop extends CpuShare {
  concurrency: number;
  ops: number;
  seconds: number;
  opsPerSec: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
}

/** A closed-loop case at one concurrency. */
export interface CaseResult extends ClosedLoop {
  case: Exclude<CaseId, 'paced' | 'null'>;
  name: string;
  /** opsPerSec / ECDH floor ops/s */
  ratioToFloor: number;
  /** full launch: where its time went (launches begun in the window) */
  phases?: PhaseSummary | null;
}

/** The paced case at one offered rate (see measureOpenLoop); CPU ms/op is per launch completed in the window. */
export interface PacedRate extends Omit<MeasureOpenLoopResult, 'name' | 'concurrency'>, CpuShare {
  /** offeredPerSec ÷ the closed-loop full launch/s at the same number of clients */
  ratioToCapacity: number;
  /** p99Ms < GOAL_LAUNCH_P99_MS */
  goalMet: boolean;
  /** where a launch's time went once a client took it (queue wait excluded), launches begun in the window */
  phases: PhaseSummary | null;
}

/** The paced case at one number of clients. */
export interface PacedResult {
  concurrency: number;
  /** Closed-loop full launch/s at the same number of clients: the capacity the rates are compared with. */
  closedLoopOpsPerSec: number;
  /** where closedLoopOpsPerSec comes from: the launch case, or a short closed-loop probe when that case was not run */
  closedLoopSource: 'launch' | 'probe';
  /** ascending offered rates */
  rates: PacedRate[];
}

/** The null case at one paced rate (CPU ms/op per null launch completed in the window). */
export interface NullPaced extends Omit<MeasureOpenLoopResult, 'name'>, CpuShare {}

/** The null case: the transport floor (null-broker.ts). */
export interface NullLaunchResult {
  /** the null broker process */
  pid: number;
  /** closed loop at each number of clients (CPU share: the null broker's, in the broker fields) */
  closed: ClosedLoop[];
  /** at the rates (and numbers of clients) the paced case ran */
  paced: NullPaced[];
}

export interface EcdhFloor {
  opsPerSec: number;
  meanUs: number;
  method: string;
  candidates: MeasureResult[];
}

export interface DriverResult {
  driver: Driver;
  label: string;
  broker:
    | { mode: 'inprocess'; pid: number }
    | {
        mode: 'process';
        pid: number;
        wrapperPid: number;
        command: string;
        exit: { code: number | null; signal: string | null } | null;
        unexpectedLog: string[];
        /** --cpu-prof: the profiles the broker process wrote, one per thread; null without --cpu-prof */
        cpuProfiles: string[] | null;
      };
  /** measured right before this driver's cases */
  ecdhFloor: EcdhFloor;
  setupMs: number;
  /** closed-loop cases */
  results: CaseResult[];
  /** the paced (open-loop) case, per number of clients */
  paced: PacedResult[];
  /** the rest case at the paced case's rates (same clients, same offered launches/s), for comparison with `paced` */
  restPaced: PacedResult[];
  /** the null case, measured after this driver's broker stopped; null when not run */
  nullLaunch: NullLaunchResult | null;
}
