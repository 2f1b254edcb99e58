/** Command-line options of tools/bench/broker.ts (--help text and parsing). */
import { mkdirSync } from 'node:fs';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import { type BrokerMode, type CaseId, CASES, DEFAULT_MIN_ARRIVALS, type Driver, GOAL_LAUNCH_P99_MS, PACED_FRACTIONS, PROBE_SECONDS } from './constants';

export const USAGE = `Usage: npx tsx tools/bench/broker.ts [options]

End-to-end broker benchmark over gRPC on loopback, next to the node:crypto ECDH P-384 keygen+derive floor measured
in the same run. By default the broker runs as its own process (kb-broker, as deployed) and this process runs the
simulated clients and Secure Processor.

Options:
  --broker MODE         process (default): kb-broker as its own process (tsx apps/broker/src/main.ts), seeded through
                        the admin API, PGlite on disk in its --data-dir; inprocess: the broker in this process
  --driver D            pglite | pg | both (default: both when a PostgreSQL URL is known, else pglite)
  --database-url URL    PostgreSQL server whose role may CREATE DATABASE (default: KB_BENCH_DATABASE_URL, then
                        KB_TEST_DATABASE_URL); a fresh database is created for the run and dropped afterwards
  --pglite-dir DIR      --broker inprocess only: PGlite data directory, "memory" (default) or "tmp" (a fresh
                        temporary directory on disk). A broker process always uses a fresh --data-dir on disk.
  --seconds N           measured time per case (paced: per rate), seconds (default 3)
  --warmup-ms N         warm-up per case (paced: per rate), milliseconds (default 300; GetSecret: one batch of
                        max(2×clients, 32))
  --concurrency LIST    concurrent clients, comma-separated (default 1,16,64)
  --cases LIST          any of bundle,secret,launch,paced,rest,null (default: all six); rest = the same full launch
                        through the attestation service (/launch, /validate over HTTP), closed loop and at the
                        paced case's rates, each right after its gRPC run (interleaved)
                          bundle  GetBundle alone
                          secret  GetSecret alone (its launches prepared untimed)
                          launch  full launches, closed loop: each client sends its next launch when the previous one
                                  returns; measures capacity (launches/s at saturation)
                          paced   the same full launches, open loop: Poisson arrivals at offered rates, served by the
                                  clients (FIFO queue when all are busy), latency from the scheduled arrival; measures
                                  the latency hosts see at a given launch rate
                          null    the transport floor: a launch's two calls (GetBundle, GetSecret; the same requests
                                  and clients, no SP work) against a null broker process that answers with canned
                                  responses and does nothing else; closed loop at every --concurrency, and open loop
                                  at the rates the paced case ran, once the broker under test has stopped
  --rates LIST          paced: offered rates, launches/s, comma-separated, each run after --warmup-ms for --seconds
                        or, if longer, for --min-arrivals arrivals;
                        auto (default): ${PACED_FRACTIONS.join(',')} × the closed-loop full launch/s at the same
                        clients (from the launch case, or else a ${PROBE_SECONDS} s closed-loop probe), stopping
                        one rate after the first whose p99 ≥ ${GOAL_LAUNCH_P99_MS} ms
  --sp-threads N        full launches: run the simulated hosts' Secure Processor on N worker threads, as a real host's
                        SP is not the CPU that runs its gRPC client (default 0: on this process's event loop, where
                        it delays other hosts' gRPC answers; on a 2-core machine the extra thread costs more)
  --min-arrivals N      paced: at least N arrivals per rate (default ${DEFAULT_MIN_ARRIVALS}), so that p99 is not just the maximum
                        of a few dozen launches: a low rate runs longer than --seconds
  --cpu-prof DIR        --broker process only: start the broker under node's --cpu-prof --cpu-prof-dir=DIR; each
                        broker process writes one .cpuprofile per thread (main, ECDH workers, tsx's loader) when it
                        exits after its cases (open them in Chrome DevTools or speedscope). Profiling slows the broker.
                        For --broker inprocess, profile the bench itself instead:
                        node --cpu-prof --cpu-prof-dir=DIR --import tsx tools/bench/broker.ts --broker inprocess …
  --json                print one JSON object instead of the tables
  -h, --help            print this help
`;

export interface Options {
  broker: BrokerMode;
  drivers: Driver[];
  driverNote?: string;
  databaseUrl?: string;
  pgliteDir: 'memory' | 'tmp';
  seconds: number;
  warmupMs: number;
  /** paced: a rate runs for at least this many expected arrivals */
  minArrivals: number;
  /** full launches: threads for the simulated SP (0: the bench's event loop) */
  spThreads: number;
  concurrency: number[];
  cases: CaseId[];
  /** paced: offered launches/s, ascending; undefined = auto (PACED_FRACTIONS of the closed-loop capacity) */
  rates?: number[];
  /** --cpu-prof: absolute directory for the broker process's CPU profiles */
  cpuProf?: string;
  json: boolean;
}

export function usageError(msg: string): never {
  process.stderr.write(`${msg}\n\n${USAGE}`);
  process.exit(2);
}

export function parseOptions(): Options {
  let values;
  try {
    ({ values } = parseArgs({
      options: {
        broker: { type: 'string' },
        driver: { type: 'string' },
        'database-url': { type: 'string' },
        'pglite-dir': { type: 'string' },
        seconds: { type: 'string' },
        'warmup-ms': { type: 'string' },
        'min-arrivals': { type: 'string' },
        'sp-threads': { type: 'string' },
        concurrency: { type: 'string' },
        cases: { type: 'string' },
        rates: { type: 'string' },
        'cpu-prof': { type: 'string' },
        json: { type: 'boolean', default: false },
        help: { type: 'boolean', short: 'h', default: false },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (e) {
    usageError((e as Error).message);
  }
  if (values.help) {
    process.stdout.write(USAGE);
    process.exit(0);
  }
  const num = (flag: string, raw: string | undefined, dflt: number, allowZero: boolean): number => {
    if (raw === undefined) return dflt;
    const n = Number(raw);
    if (raw.trim() === '' || !Number.isFinite(n) || n < 0 || (n === 0 && !allowZero)) {
      usageError(`--${flag} must be a number ${allowZero ? '>= 0' : '> 0'}, got ${JSON.stringify(raw)}`);
    }
    return n;
  };
  const concurrency = (values.concurrency ?? '1,16,64').split(',').map((s) => {
    const n = Number(s);
    if (s.trim() === '' || !Number.isInteger(n) || n < 1 || n > 1024)
      usageError(`--concurrency takes integers 1..1024, got ${JSON.stringify(values.concurrency)}`);
    return n;
  });
  const cases = (values.cases ?? CASES.map((c) => c.id).join(',')).split(',').map((s) => {
    const id = s.trim() as CaseId;
    if (!CASES.some((c) => c.id === id)) usageError(`--cases takes bundle, secret, launch, paced, rest and/or null, got ${JSON.stringify(values.cases)}`);
    return id;
  });
  const databaseUrl = values['database-url'] ?? process.env.KB_BENCH_DATABASE_URL ?? process.env.KB_TEST_DATABASE_URL ?? undefined;
  let drivers: Driver[];
  let driverNote: string | undefined;
  switch (values.driver) {
    case undefined:
      drivers = databaseUrl ? ['pglite', 'pg'] : ['pglite'];
      if (!databaseUrl) driverNote = 'PostgreSQL skipped: no --database-url, KB_BENCH_DATABASE_URL or KB_TEST_DATABASE_URL.';
      break;
    case 'pglite':
    case 'pg':
      drivers = [values.driver];
      break;
    case 'both':
      drivers = ['pglite', 'pg'];
      break;
    default:
      usageError(`--driver must be pglite, pg or both, got ${JSON.stringify(values.driver)}`);
  }
  if (drivers.includes('pg') && !databaseUrl) usageError('--driver pg/both needs --database-url, KB_BENCH_DATABASE_URL or KB_TEST_DATABASE_URL');
  const broker = values.broker ?? 'process';
  if (broker !== 'process' && broker !== 'inprocess') usageError(`--broker must be process or inprocess, got ${JSON.stringify(broker)}`);
  const pgliteDir = values['pglite-dir'] ?? (broker === 'process' ? 'tmp' : 'memory');
  if (pgliteDir !== 'memory' && pgliteDir !== 'tmp') usageError(`--pglite-dir must be memory or tmp, got ${JSON.stringify(pgliteDir)}`);
  if (broker === 'process' && pgliteDir !== 'tmp')
    usageError('--pglite-dir memory needs --broker inprocess: a broker process keeps PGlite in its --data-dir, on disk');
  const rates = parseRates(values.rates);
  const cpuProf = values['cpu-prof'] === undefined ? undefined : path.resolve(values['cpu-prof']);
  if (cpuProf !== undefined && broker !== 'process') {
    usageError('--cpu-prof needs --broker process; to profile an in-process broker, run the bench itself under node --cpu-prof --import tsx');
  }
  if (cpuProf !== undefined) mkdirSync(cpuProf, { recursive: true });
  return {
    broker,
    drivers,
    driverNote,
    databaseUrl,
    pgliteDir,
    seconds: num('seconds', values.seconds, 3, false),
    warmupMs: num('warmup-ms', values['warmup-ms'], 300, true),
    minArrivals: Math.ceil(num('min-arrivals', values['min-arrivals'], DEFAULT_MIN_ARRIVALS, true)),
    spThreads: spThreadsOf(values['sp-threads']),
    concurrency: [...new Set(concurrency)],
    cases: CASES.map((c) => c.id).filter((id) => cases.includes(id)),
    rates,
    cpuProf,
    json: values.json === true,
  };
}

/** --rates: "auto" or absent = undefined; else positive launches/s, deduplicated and ascending (the goal is "up to"). */
export function spThreadsOf(raw: string | undefined): number {
  if (raw === undefined) return 0;
  const n = Number(raw);
  if (raw.trim() === '' || !Number.isInteger(n) || n < 0 || n > 64) usageError(`--sp-threads takes an integer 0..64, got ${JSON.stringify(raw)}`);
  return n;
}

export function parseRates(raw: string | undefined): number[] | undefined {
  if (raw === undefined || raw.trim() === 'auto') return undefined;
  const rates = raw.split(',').map((s) => {
    const n = Number(s);
    if (s.trim() === '' || !Number.isFinite(n) || n <= 0) usageError(`--rates takes launches/s > 0, comma-separated, or auto; got ${JSON.stringify(raw)}`);
    return n;
  });
  return [...new Set(rates)].sort((a, b) => a - b);
}
