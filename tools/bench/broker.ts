/**
 * End-to-end benchmark of the broker: simulated SEV hosts (libs/sev-sim) calling it over real gRPC on loopback, on
 * PGlite and on PostgreSQL, with the node:crypto ECDH P-384 floor measured in the same run.
 *
 * By default the broker runs as its own process, as deployed (`tsx apps/broker/src/main.ts`, seeded through the admin
 * API; PGlite on disk in its --data-dir), while this process runs the simulated clients, the simulated Secure
 * Processor and the floor. `--broker inprocess` starts it in this process instead (apps/broker/src/broker.ts).
 *
 *   npx tsx tools/bench/broker.ts [--broker process|inprocess] [--driver pglite|pg|both] [--seconds N] [--concurrency 1,16,64]
 *                                 [--cases bundle,secret,launch,paced,null] [--rates auto|R1,R2,…] [--cpu-prof DIR] [--json]
 *
 * Cases, each at every concurrency (one gRPC connection per simulated client):
 *   GetBundle           GetBundle alone, the same certificate chain every time (chain verdict cached by the broker)
 *   GetSecret           GetSecret alone: launches are prepared untimed beforehand (GetBundle + LAUNCH_START/UPDATE/MEASURE
 *                       on the simulated Secure Processor), then only their GetSecret calls are timed
 *   full launch         GetBundle + LAUNCH_START/UPDATE/MEASURE + GetSecret + LAUNCH_SECRET/FINISH, checked end to end;
 *                       closed loop (each client sends its next launch when the previous one returns): capacity
 *   full launch, paced  the same launches arriving open loop, as a Poisson process at given rates, served by the
 *                       clients (FIFO queue when all are busy), latency from the scheduled arrival: the latency a host
 *                       sees at a given launch rate, which is what the p99 goal is about (closed loop, 16 clients can
 *                       only see p99 < 20 ms at > 800 launches/s, several times what two P-384 ECDHs per launch allow
 *                       on a small machine)
 *   null launch         the transport floor: a launch's two calls (same requests, same clients) against a broker process
 *                       that answers with canned responses and does nothing else (null-broker.ts), closed loop and at
 *                       the paced rates, after the broker under test has stopped
 * Full launches are also timed by phase (launch-phases.ts): the broker's two round trips apart from the simulated SP's
 * work, which a real host does on its AMD Secure Processor rather than on the broker's machine.
 */
import { spawn } from 'node:child_process';
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { credentials, Metadata, type ServiceError } from '@grpc/grpc-js';
import { Client as PgClient } from 'pg';
import { parseConfig, silentLogger, startBroker, type BrokerConfig, type RunningBroker } from '@kb/broker';
import { admin, keybroker } from '@kb/grpc-api';
import { sevPublicKey } from '@kb/sev';
import { createPlatform, encodeRootFile, platformChain, platformRoot, SimulatedSecureProcessor, type SimulatedPlatform } from '@kb/sev-sim';
import { openStore, PGLITE_MEMORY, type Store } from '@kb/store';
import { ecdhFloorCandidates, machineInfo } from './ecdh-floor';
import { LaunchPhases, phaseTable, windows, type PhaseSummary } from './launch-phases';
import { startNullBroker, type CannedResponses } from './null-broker';
import { cpuMsOf, machineBusyMs, processTree, ticksPerSecond } from './proc-stat';
import { inlineSp, spFinish, spStart, SpThreads, type HostLaunch, type HostSp } from './host-sp';
import {
  fmt,
  measure,
  measureAsync,
  measureEach,
  measureOpenLoop,
  summarizeLatencies,
  table,
  type MeasureAsyncResult,
  type MeasureOpenLoopResult,
  type MeasureResult,
  type WindowHooks,
} from './harness';

type Driver = 'pglite' | 'pg';
type BrokerMode = 'process' | 'inprocess';
type CaseId = 'bundle' | 'secret' | 'launch' | 'paced' | 'null';
const CASES: { id: CaseId; name: string }[] = [
  { id: 'bundle', name: 'GetBundle' },
  { id: 'secret', name: 'GetSecret' },
  { id: 'launch', name: 'full launch' },
  { id: 'paced', name: 'full launch, paced' },
  { id: 'null', name: 'null launch' },
];

const POLICY = 0x1; // NODBG
const FIRMWARE = randomBytes(64 * 1024); // what the simulated SP measures; only its digest matters to the broker
const DIGEST = createHash('sha256').update(FIRMWARE).digest();
const SECRET_ID = 'bench/key/disk';
const SECRET_VALUE = randomBytes(32);
const SECRET_GUID = randomUUID();
/** What each simulated host launches and checks (host-sp.ts). */
const HOST_LAUNCH: HostLaunch = { policy: POLICY, firmwareImage: FIRMWARE, secretGuid: SECRET_GUID, secretValue: SECRET_VALUE };
const MASTER_KEY = randomBytes(32);
const ADMIN_TOKEN = randomBytes(24).toString('hex');
/** The repository root (tools/bench/..). */
const ROOT = path.resolve(__dirname, '../..');
/** kb-broker's start-up, at most (tsx compiles on the fly). */
const BROKER_START_TIMEOUT_MS = 60_000;
/** The V8 flag `npm start` and the Dockerfile run kb-broker with (package.json). */
const BROKER_NODE_FLAG = '--max-semi-space-size=32';
/** After SIGTERM, how long the broker process may take to exit before it is killed. */
const BROKER_STOP_TIMEOUT_MS = 15_000;
const PG_POOL = 10; // openStore's default, which is what `kb-broker --database-url` uses
const CALL_DEADLINE_MS = 60_000;
/** Clients used to prepare GetSecret's launches (untimed), at least. */
const PREPARE_CONCURRENCY = 16;
/** GetBundle responses kept for GetSecret's preparation, at most. */
const MAX_KEPT_BUNDLES = 50_000;
/** Per floor candidate, before each driver (capped by --seconds). */
const FLOOR_SECONDS = 1;
const GOAL_BUNDLE_RATIO = 0.7;
const GOAL_LAUNCH_P99_MS = 20;
const GOAL_LAUNCH_CLIENTS = 16;
/** Default paced rates: these fractions of the closed-loop full launch/s at the same number of clients, in order. */
const PACED_FRACTIONS = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8];
/** Paced: a p99 over fewer than a few hundred arrivals is about their maximum, so low rates run longer. */
const DEFAULT_MIN_ARRIVALS = 300;
/** The closed-loop probe giving the paced case its capacity when the launch case is not run, seconds at most. */
const PROBE_SECONDS = 2;

const USAGE = `Usage: npx tsx tools/bench/broker.ts [options]

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
  --cases LIST          any of bundle,secret,launch,paced,null (default: all five)
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

interface Options {
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

function usageError(msg: string): never {
  process.stderr.write(`${msg}\n\n${USAGE}`);
  process.exit(2);
}

function parseOptions(): Options {
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
    if (s.trim() === '' || !Number.isInteger(n) || n < 1 || n > 1024) usageError(`--concurrency takes integers 1..1024, got ${JSON.stringify(values.concurrency)}`);
    return n;
  });
  const cases = (values.cases ?? CASES.map((c) => c.id).join(',')).split(',').map((s) => {
    const id = s.trim() as CaseId;
    if (!CASES.some((c) => c.id === id)) usageError(`--cases takes bundle, secret, launch, paced and/or null, got ${JSON.stringify(values.cases)}`);
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
  if (broker === 'process' && pgliteDir !== 'tmp') usageError('--pglite-dir memory needs --broker inprocess: a broker process keeps PGlite in its --data-dir, on disk');
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
function spThreadsOf(raw: string | undefined): number {
  if (raw === undefined) return 0;
  const n = Number(raw);
  if (raw.trim() === '' || !Number.isInteger(n) || n < 0 || n > 64) usageError(`--sp-threads takes an integer 0..64, got ${JSON.stringify(raw)}`);
  return n;
}

function parseRates(raw: string | undefined): number[] | undefined {
  if (raw === undefined || raw.trim() === 'auto') return undefined;
  const rates = raw.split(',').map((s) => {
    const n = Number(s);
    if (s.trim() === '' || !Number.isFinite(n) || n <= 0) usageError(`--rates takes launches/s > 0, comma-separated, or auto; got ${JSON.stringify(raw)}`);
    return n;
  });
  return [...new Set(rates)].sort((a, b) => a - b);
}

// ---- a minimal simulated host ---------------------------------------------------------------------------------------

/** One simulated host: its own gRPC channel and connection (no subchannel sharing between hosts). */
class Host {
  private readonly client: keybroker.KeyBrokerServiceClient;
  constructor(address: string) {
    this.client = new keybroker.KeyBrokerServiceClient(address, credentials.createInsecure(), { 'grpc.use_local_subchannel_pool': 1 });
  }
  getBundle(req: keybroker.BundleRequest): Promise<keybroker.BundleResponse> {
    return new Promise((resolve, reject) =>
      this.client.getBundle(req, new Metadata(), { deadline: Date.now() + CALL_DEADLINE_MS }, (err: ServiceError | null, res?: keybroker.BundleResponse) =>
        err || !res ? reject(err ?? new Error('GetBundle: empty response')) : resolve(res),
      ),
    );
  }
  getSecret(req: keybroker.SecretRequest): Promise<keybroker.SecretResponse> {
    return new Promise((resolve, reject) =>
      this.client.getSecret(req, new Metadata(), { deadline: Date.now() + CALL_DEADLINE_MS }, (err: ServiceError | null, res?: keybroker.SecretResponse) =>
        err || !res ? reject(err ?? new Error('GetSecret: empty response')) : resolve(res),
      ),
    );
  }
  close(): void {
    this.client.close();
  }
}

interface Prepared {
  handle: number;
  request: keybroker.SecretRequest;
  response?: keybroker.SecretResponse;
}

/** The host up to GetSecret: GetBundle, then LAUNCH_START / LAUNCH_UPDATE_DATA / LAUNCH_MEASURE on the simulated SP. */
async function prepareLaunch(host: Host, sp: SimulatedSecureProcessor, bundleRequest: keybroker.BundleRequest): Promise<Prepared> {
  return launchUpToSecret(sp, await host.getBundle(bundleRequest));
}

/** LAUNCH_START / LAUNCH_UPDATE_DATA / LAUNCH_MEASURE with a bundle, and the GetSecret request the host would send. */
function launchUpToSecret(sp: SimulatedSecureProcessor, bundle: keybroker.BundleResponse): Prepared {
  const { handle, measurement, firmware } = spStart(sp, HOST_LAUNCH, b64(bundle.GuestOwnerPublicKey), b64(bundle.LaunchBlob));
  return { handle, request: secretRequest(bundle, measurement, firmware) };
}

/** The GetSecret request of a host whose SP measured `measurement` after GetBundle gave it `bundle`. */
function secretRequest(bundle: keybroker.BundleResponse, measurement: Buffer, fw: { apiMajor: number; apiMinor: number; build: number }): keybroker.SecretRequest {
  return {
    LaunchMeasurement: measurement.toString('base64'),
    LaunchId: bundle.LaunchId,
    Policy: POLICY,
    ApiMajor: fw.apiMajor,
    ApiMinor: fw.apiMinor,
    BuildId: fw.build,
    FwDigest: DIGEST.toString('base64'),
    LaunchDescription: 'bench',
    SecretRequests: [{ Guid: SECRET_GUID, Format: 'binary', SecretType: 'key', Id: SECRET_ID }],
  };
}

/** LAUNCH_SECRET + LAUNCH_FINISH, then checks that the guest reads the secret; frees the simulated guest. */
function finishLaunch(sp: SimulatedSecureProcessor, p: Prepared, res: keybroker.SecretResponse): void {
  spFinish(sp, HOST_LAUNCH, p.handle, b64(res.LaunchSecretHeader), b64(res.LaunchSecretData));
}

function b64(s: string): Buffer {
  return Buffer.from(s, 'base64');
}

// ---- databases and the broker ---------------------------------------------------------------------------------------

interface Database {
  label: string;
  /** In-process broker: opens the store. */
  open(): Promise<Store>;
  /** Broker process: the environment telling kb-broker where its database is (PGlite: none, it uses --data-dir). */
  brokerEnv: Record<string, string>;
  drop(): Promise<void>;
}

async function adminQuery(url: string, sql: string): Promise<void> {
  const c = new PgClient({ connectionString: url });
  await c.connect();
  try {
    await c.query(sql);
  } finally {
    await c.end();
  }
}

/** `brokerDir`: the broker process's --data-dir (process mode), where PGlite then lives. */
async function benchDatabase(driver: Driver, opts: Options, brokerDir: string | undefined): Promise<Database> {
  if (driver === 'pglite') {
    if (brokerDir !== undefined) {
      return {
        label: `PGlite (on disk in ${path.join(brokerDir, 'pgdata')}, WASM in the broker process: what kb-broker --data-dir does in production)`,
        open: () => Promise.reject(new Error('a broker process opens its own PGlite')),
        brokerEnv: {},
        drop: async () => undefined, // the directory goes with the broker's
      };
    }
    if (opts.pgliteDir === 'memory') {
      return {
        label: 'PGlite (memory://, WASM in the bench process)',
        open: () => openStore({ driver: 'pglite', dataDir: PGLITE_MEMORY, masterKey: MASTER_KEY }),
        brokerEnv: {},
        drop: async () => undefined,
      };
    }
    const dir = mkdtempSync(path.join(os.tmpdir(), 'kb-bench-'));
    return {
      label: `PGlite (on disk in ${dir}, WASM in the bench process)`,
      open: () => openStore({ driver: 'pglite', dataDir: dir, masterKey: MASTER_KEY }),
      brokerEnv: {},
      drop: async () => rmSync(dir, { recursive: true, force: true }),
    };
  }
  const base = opts.databaseUrl!;
  const name = `kb_bench_${randomBytes(6).toString('hex')}`;
  await adminQuery(base, `CREATE DATABASE "${name}"`);
  const url = new URL(base);
  url.pathname = `/${name}`;
  let dropped = false;
  return {
    label: `PostgreSQL (${url.host}, fresh database ${name}, pool ${PG_POOL} in the ${brokerDir !== undefined ? 'broker' : 'bench'} process)`,
    open: () => openStore({ driver: 'pg', url: url.toString(), masterKey: MASTER_KEY, maxConnections: PG_POOL }),
    brokerEnv: { KB_DATABASE_URL: url.toString(), KB_MASTER_KEY: MASTER_KEY.toString('base64') },
    drop: async () => {
      if (dropped) return;
      dropped = true;
      await adminQuery(base, `DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
    },
  };
}

function brokerConfig(): BrokerConfig {
  const base = parseConfig(['--listen', '127.0.0.1:0', '--admin-listen', '127.0.0.1:0', '--data-dir', path.join(os.tmpdir(), 'kb-bench-unused')], {});
  if (base === 'help') throw new Error('unreachable');
  return { ...base, adminToken: ADMIN_TOKEN, bundleRatePerSecond: 0, maxPendingSessions: 1_000_000_000 };
}

/** Undo steps run once, last registered first (also from the SIGINT handler, concurrently with the run's own). */
class Cleanups {
  private readonly steps: (() => Promise<void>)[] = [];
  private running: Promise<void> | undefined;
  add(step: () => Promise<void>): void {
    this.steps.push(step);
  }
  run(): Promise<void> {
    return (this.running ??= (async () => {
      for (const step of this.steps.reverse()) {
        try {
          await step();
        } catch (e) {
          process.stderr.write(`cleanup: ${(e as Error).message}\n`);
        }
      }
    })());
  }
}

/** The broker under test, wherever it runs. */
interface BrokerTarget {
  address: string;
  /** Process mode: the broker process (the node process running main.ts) and its tsx wrapper. */
  proc?: {
    pid: number;
    wrapperPid: number;
    command: string;
    /** utime+stime of the tsx wrapper and its descendants, ms; undefined without /proc */
    cpuMs(): number | undefined;
    /** warn/error log lines other than the expected start-up warnings */
    unexpectedLog: string[];
    /** set once the process has exited */
    exit?: { code: number | null; signal: NodeJS.Signals | null };
    logTail(): string;
  };
}

/** The policy document and secret the broker serves, seeded before anything is timed. */
const DEFAULT_POLICY_DOC = { version: 1, allowedDigests: [DIGEST.toString('hex')] };

async function startInProcess(db: Database, platform: SimulatedPlatform, cleanups: Cleanups): Promise<BrokerTarget> {
  const store = await db.open();
  cleanups.add(() => store.close());
  await store.putPolicy('default', DEFAULT_POLICY_DOC);
  await store.putSecret({ id: SECRET_ID, value: SECRET_VALUE });
  const broker: RunningBroker = await startBroker(brokerConfig(), { store, logger: silentLogger, extraRoots: [platformRoot(platform)] });
  cleanups.add(() => broker.close());
  return { address: broker.address };
}

/** Start-up warnings a benchmark broker logs by design: the sev-sim root, and no policy until it is seeded. */
const EXPECTED_WARNINGS = ['TRUSTING A NON-AMD ROOT', 'no tenant default policy'];

/**
 * kb-broker as its own process, as deployed: `tsx apps/broker/src/main.ts` (like apps/broker/test/support/process.ts)
 * with a fresh --data-dir, the sev-sim root as --trust-root, the tenant default policy and the secret put through the
 * admin API. Registers its SIGTERM (and, failing that, SIGKILL) with `cleanups` as soon as it is spawned.
 * `cpuProfDir`: run it under node's CPU profiler (tsx hands node flags before the script to the node it starts).
 */
async function startProcess(db: Database, dir: string, platform: SimulatedPlatform, cleanups: Cleanups, cpuProfDir: string | undefined): Promise<BrokerTarget> {
  const rootFile = path.join(dir, 'root.cert');
  writeFileSync(rootFile, encodeRootFile(platform));
  const args = [
    BROKER_NODE_FLAG, // as `npm start` and the image run it
    ...(cpuProfDir !== undefined ? ['--cpu-prof', `--cpu-prof-dir=${cpuProfDir}`] : []),
    path.join(ROOT, 'apps/broker/src/main.ts'),
    '--listen', '127.0.0.1:0',
    '--admin-listen', '127.0.0.1:0',
    '--data-dir', dir,
    '--trust-root', `sev-sim=${rootFile}`,
    '--bundle-rate', '0',
    '--max-pending-sessions', '1000000',
    // info, not warn: 'broker listening' (the bound addresses) is an info line. The request path logs nothing at info.
    '--log-level', 'info',
  ]; // prettier-ignore
  const tsx = path.join(ROOT, 'node_modules/.bin/tsx');
  const child = spawn(tsx, args, {
    cwd: ROOT,
    env: { ...process.env, ...db.brokerEnv, KB_ADMIN_TOKEN: ADMIN_TOKEN, NODE_OPTIONS: '' },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  const command = ['tsx', ...args].map((a) => path.relative(ROOT, a).startsWith('apps') ? path.relative(ROOT, a) : a).join(' ');
  const tail: string[] = [];
  const unexpectedLog: string[] = [];
  let pids: number[] = child.pid !== undefined ? [child.pid] : [];
  const proc: NonNullable<BrokerTarget['proc']> = {
    pid: child.pid ?? -1,
    wrapperPid: child.pid ?? -1,
    command,
    unexpectedLog,
    cpuMs: () => cpuMsOf(pids),
    logTail: () => tail.join('\n'),
  };
  // One 'close' listener for the whole life of the process ('close': exited and its stderr drained).
  const closed = new Promise<void>((resolve) =>
    child.once('close', (code, signal) => {
      proc.exit = { code, signal };
      resolve();
    }),
  );
  const spawnError = new Promise<never>((_, reject) => child.once('error', reject));
  spawnError.catch(() => undefined);
  cleanups.add(async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
    let timer: NodeJS.Timeout | undefined;
    const killed = new Promise<void>((resolve) => {
      timer = setTimeout(() => {
        process.stderr.write(`broker process ${proc.pid} did not exit ${BROKER_STOP_TIMEOUT_MS / 1000} s after SIGTERM: killing it\n`);
        for (const pid of [...pids].reverse()) {
          try {
            process.kill(pid, 'SIGKILL');
          } catch {
            // already gone
          }
        }
        resolve();
      }, BROKER_STOP_TIMEOUT_MS);
    });
    await Promise.race([closed, killed.then(() => closed)]);
    clearTimeout(timer);
  });

  // The log (JSON lines on stderr) is read for the whole run: a pipe nobody drains would block the broker.
  let listening: (addresses: { keybroker: string; admin: string }) => void = () => undefined;
  const ready = new Promise<{ keybroker: string; admin: string }>((resolve) => (listening = resolve));
  let partial = '';
  child.stderr!.on('data', (chunk: Buffer) => {
    partial += chunk.toString();
    const lines = partial.split('\n');
    partial = lines.pop()!;
    for (const line of lines) {
      if (line.trim() === '') continue;
      tail.push(line);
      if (tail.length > 50) tail.shift();
      let m: { msg?: string; level?: string; keybroker?: string; admin?: string };
      try {
        m = JSON.parse(line) as typeof m;
      } catch {
        if (unexpectedLog.length < 20) unexpectedLog.push(line);
        continue;
      }
      if (m.msg === 'broker listening' && m.keybroker && m.admin) listening({ keybroker: m.keybroker, admin: m.admin });
      else if ((m.level === 'warn' || m.level === 'error') && !EXPECTED_WARNINGS.some((w) => m.msg?.startsWith(w)) && unexpectedLog.length < 20) {
        unexpectedLog.push(line);
      }
    }
  });

  let timer: NodeJS.Timeout | undefined;
  const addresses = await Promise.race([
    ready,
    spawnError,
    closed.then(() => Promise.reject(new Error(`the broker process exited (${proc.exit?.code ?? proc.exit?.signal}) before listening:\n${proc.logTail()}`))),
    new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`the broker process did not start in ${BROKER_START_TIMEOUT_MS / 1000} s:\n${proc.logTail()}`)), BROKER_START_TIMEOUT_MS))),
  ]).finally(() => clearTimeout(timer));

  // tsx runs main.ts in a node child of its own: that child is the broker; both are counted for CPU time.
  pids = processTree(child.pid!);
  proc.pid = pids[1] ?? child.pid!; // BFS order: the wrapper's first (only) child

  const client = new admin.BrokerAdminClient(addresses.admin, credentials.createInsecure());
  try {
    const md = new Metadata();
    md.set('authorization', `Bearer ${ADMIN_TOKEN}`);
    const deadline = () => ({ deadline: Date.now() + CALL_DEADLINE_MS });
    await new Promise((resolve, reject) =>
      client.putPolicy({ name: 'default', document_json: JSON.stringify(DEFAULT_POLICY_DOC) }, md, deadline(), (e, r) => (e ? reject(e) : resolve(r))),
    );
    await new Promise((resolve, reject) =>
      client.putSecret({ id: SECRET_ID, value: SECRET_VALUE, policy_name: '' }, md, deadline(), (e, r) => (e ? reject(e) : resolve(r))),
    );
  } finally {
    client.close();
  }
  return { address: addresses.keybroker, proc };
}

// ---- the run --------------------------------------------------------------------------------------------------------

/** CPU time spent during a result's measured window(s), from CpuMeter.take(). */
interface CpuShare {
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

function cpuShare(taken: ReturnType<CpuMeter['take']>, windowMs: number, ops: number): CpuShare {
  const { brokerMs, benchMs, otherMs } = taken;
  return {
    brokerCpuMs: brokerMs,
    brokerCpuMsPerOp: brokerMs === null ? null : brokerMs / ops,
    brokerCpuPct: brokerMs === null ? null : (100 * brokerMs) / windowMs,
    benchCpuPct: (100 * benchMs) / windowMs,
    otherCpuPct: otherMs === null ? null : (100 * otherMs) / windowMs,
  };
}

/** A closed-loop run at one concurrency. */
interface ClosedLoop extends CpuShare {
  concurrency: number;
  ops: number;
  seconds: number;
  opsPerSec: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
}

/** A closed-loop case at one concurrency. */
interface CaseResult extends ClosedLoop {
  case: Exclude<CaseId, 'paced' | 'null'>;
  name: string;
  /** opsPerSec / ECDH floor ops/s */
  ratioToFloor: number;
  /** full launch: where its time went (launches begun in the window) */
  phases?: PhaseSummary | null;
}

/** The paced case at one offered rate (see measureOpenLoop); CPU ms/op is per launch completed in the window. */
interface PacedRate extends Omit<MeasureOpenLoopResult, 'name' | 'concurrency'>, CpuShare {
  /** offeredPerSec ÷ the closed-loop full launch/s at the same number of clients */
  ratioToCapacity: number;
  /** p99Ms < GOAL_LAUNCH_P99_MS */
  goalMet: boolean;
  /** where a launch's time went once a client took it (queue wait excluded), launches begun in the window */
  phases: PhaseSummary | null;
}

/** The paced case at one number of clients. */
interface PacedResult {
  concurrency: number;
  /** Closed-loop full launch/s at the same number of clients: the capacity the rates are compared with. */
  closedLoopOpsPerSec: number;
  /** where closedLoopOpsPerSec comes from: the launch case, or a short closed-loop probe when that case was not run */
  closedLoopSource: 'launch' | 'probe';
  /** ascending offered rates */
  rates: PacedRate[];
}

/** The null case at one paced rate (CPU ms/op per null launch completed in the window). */
interface NullPaced extends Omit<MeasureOpenLoopResult, 'name'>, CpuShare {}

/** The null case: the transport floor (null-broker.ts). */
interface NullLaunchResult {
  /** the null broker process */
  pid: number;
  /** closed loop at each number of clients (CPU share: the null broker's, in the broker fields) */
  closed: ClosedLoop[];
  /** at the rates (and numbers of clients) the paced case ran */
  paced: NullPaced[];
}

interface EcdhFloor {
  opsPerSec: number;
  meanUs: number;
  method: string;
  candidates: MeasureResult[];
}

interface DriverResult {
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
  /** the null case, measured after this driver's broker stopped; null when not run */
  nullLaunch: NullLaunchResult | null;
}

/** CPU time of the broker process and of this process, summed over measured windows (WindowHooks) until taken. */
class CpuMeter implements WindowHooks {
  private brokerMs = 0;
  private benchMs = 0;
  private machineMs = 0;
  private broker0: number | undefined;
  private bench0: NodeJS.CpuUsage | undefined;
  private machine0: number | undefined;
  constructor(private readonly brokerCpuMs: (() => number | undefined) | undefined) {}
  start(): void {
    this.machine0 = machineBusyMs();
    this.broker0 = this.brokerCpuMs?.();
    this.bench0 = process.cpuUsage();
  }
  end(): void {
    const bench = process.cpuUsage(this.bench0);
    this.benchMs += (bench.user + bench.system) / 1000;
    const broker = this.brokerCpuMs?.();
    this.brokerMs = broker === undefined || this.broker0 === undefined ? NaN : this.brokerMs + (broker - this.broker0);
    const machine = machineBusyMs();
    this.machineMs = machine === undefined || this.machine0 === undefined ? NaN : this.machineMs + (machine - this.machine0);
  }
  /** Sums since the last take(); otherMs = the machine's busy time not spent in the broker or bench process. */
  take(): { brokerMs: number | null; benchMs: number; otherMs: number | null } {
    const brokerMs = this.brokerCpuMs && Number.isFinite(this.brokerMs) ? this.brokerMs : null;
    const otherMs = Number.isFinite(this.machineMs) && (brokerMs !== null || !this.brokerCpuMs) ? Math.max(0, this.machineMs - (brokerMs ?? 0) - this.benchMs) : null;
    const r = { brokerMs, benchMs: this.benchMs, otherMs };
    this.brokerMs = 0;
    this.benchMs = 0;
    this.machineMs = 0;
    return r;
  }
}

async function runDriver(
  driver: Driver,
  platform: SimulatedPlatform,
  opts: Options,
  floor: EcdhFloor,
  progress: (msg: string) => void,
  registerCleanup: (fn: (() => Promise<void>) | undefined) => void,
): Promise<DriverResult> {
  const t0 = performance.now();
  const cleanups = new Cleanups();
  registerCleanup(() => cleanups.run());
  let target: BrokerTarget | undefined;
  const hosts: Host[] = [];
  try {
    let brokerDir: string | undefined;
    if (opts.broker === 'process') {
      const dir = mkdtempSync(path.join(os.tmpdir(), 'kb-bench-broker-'));
      cleanups.add(async () => rmSync(dir, { recursive: true, force: true }));
      brokerDir = dir;
    }
    const db = await benchDatabase(driver, opts, brokerDir);
    cleanups.add(() => db.drop());
    target = brokerDir !== undefined ? await startProcess(db, brokerDir, platform, cleanups, opts.cpuProf) : await startInProcess(db, platform, cleanups);
    if (target.proc) progress(`  ${driver}: broker process pid ${target.proc.pid} listening on ${target.address}\n`);
    for (let i = 0; i < Math.max(...opts.concurrency, PREPARE_CONCURRENCY); i++) hosts.push(new Host(target.address));
    const sp = new SimulatedSecureProcessor(platform);
    // Full launches' SP work: inline on `sp`, or on threads of its own (--sp-threads); GetSecret's untimed preparation uses `sp`.
    const spThreads = opts.spThreads > 0 && (opts.cases.includes('launch') || opts.cases.includes('paced')) ? new SpThreads(platform, HOST_LAUNCH, opts.spThreads) : undefined;
    const hostSp: HostSp = spThreads ?? inlineSp(sp, HOST_LAUNCH);
    cleanups.add(() => hostSp.close());
    const bundleRequest: keybroker.BundleRequest = { CertificateChain: platformChain(platform).toString('base64'), Policy: POLICY };
    /** Bundles issued by the timed GetBundle case, reused (in order) to prepare GetSecret's launches. */
    const bundles: keybroker.BundleResponse[] = [];

    // One launch end to end before anything is timed; its requests and responses are the null case's.
    const setupBundle = await hosts[0]!.getBundle(bundleRequest);
    const setupLaunch = launchUpToSecret(sp, setupBundle);
    const setupSecret = await hosts[0]!.getSecret(setupLaunch.request);
    finishLaunch(sp, setupLaunch, setupSecret);
    const setupMs = performance.now() - t0;

    const cpu = new CpuMeter(target.proc ? () => target!.proc!.cpuMs() : undefined);
    const results: CaseResult[] = [];
    const phases = new LaunchPhases();
    const push = (id: CaseResult['case'], r: MeasureAsyncResult, launchPhases?: PhaseSummary | null) => {
      const name = CASES.find((c) => c.id === id)!.name;
      results.push({
        case: id,
        name,
        concurrency: r.concurrency,
        ops: r.ops,
        seconds: r.seconds,
        opsPerSec: r.opsPerSec,
        p50Ms: r.p50Ms,
        p99Ms: r.p99Ms,
        maxMs: r.maxMs,
        ratioToFloor: r.opsPerSec / floor.opsPerSec,
        ...(launchPhases !== undefined ? { phases: launchPhases } : {}),
        ...cpuShare(cpu.take(), r.seconds * 1000, r.ops),
      });
    };
    /** One full launch by client w: the work of both the closed-loop launch case and the paced one. */
    const fullLaunch = async (w: number): Promise<void> => {
      const timer = phases.launch();
      const bundle = await hosts[w]!.getBundle(bundleRequest);
      timer.lap('bundle');
      const started = await hostSp.start(w, b64(bundle.GuestOwnerPublicKey), b64(bundle.LaunchBlob));
      timer.lap('hostStart');
      const res = await hosts[w]!.getSecret(secretRequest(bundle, started.measurement, started.firmware));
      timer.lap('secret');
      await hostSp.finish(started, b64(res.LaunchSecretHeader), b64(res.LaunchSecretData));
      timer.lap('hostFinish');
    };
    const note = (msg: string) => progress(`  ${driver}: ${msg}\n`);
    // one launch through each SP thread before anything is timed (a thread loads its modules on first use)
    for (let t = 0; t < (spThreads?.threads ?? 0); t++) await fullLaunch(t);

    for (const c of opts.cases.includes('bundle') ? opts.concurrency : []) {
      progress(`  ${driver}: GetBundle, ${c} client(s)\n`);
      push(
        'bundle',
        await measureAsync(
          'GetBundle',
          async (w) => {
            const b = await hosts[w]!.getBundle(bundleRequest);
            if (b.LaunchId.length !== 36) throw new Error('GetBundle returned no launch id');
            if (bundles.length < MAX_KEPT_BUNDLES) bundles.push(b);
            return b;
          },
          { seconds: opts.seconds, warmupMs: opts.warmupMs, concurrency: c, window: cpu },
        ),
      );
    }

    for (const c of opts.cases.includes('secret') ? opts.concurrency : []) {
      progress(`  ${driver}: GetSecret, ${c} client(s) (launches prepared untimed)\n`);
      push('secret', await measureGetSecret(hosts, sp, bundleRequest, bundles, c, opts, cpu));
    }

    for (const c of opts.cases.includes('launch') ? opts.concurrency : []) {
      note(`full launch, ${c} client(s)`);
      const r = await measureAsync('full launch', fullLaunch, { seconds: opts.seconds, warmupMs: opts.warmupMs, concurrency: c, window: windows(cpu, phases) });
      push('launch', r, phases.summary());
    }

    // After the closed-loop launches, whose launch/s at the same number of clients sets the default rates.
    const paced: PacedResult[] = [];
    for (const c of opts.cases.includes('paced') ? opts.concurrency : []) {
      const capacity = await closedLoopCapacity(results, c, fullLaunch, opts, note);
      paced.push(await measurePaced(fullLaunch, c, capacity, opts, cpu, phases, note));
    }
    for (const h of hosts.splice(0)) h.close();
    await cleanups.run(); // stops the broker, so that its exit status is known (and, profiled, its profiles written)
    const nullLaunch = opts.cases.includes('null')
      ? await measureNullLaunch({ bundle: setupBundle, secret: setupSecret }, bundleRequest, setupLaunch.request, paced, opts, note)
      : null;
    const p = target.proc;
    const broker: DriverResult['broker'] = p
      ? {
          mode: 'process',
          pid: p.pid,
          wrapperPid: p.wrapperPid,
          command: p.command,
          exit: p.exit ?? null,
          unexpectedLog: p.unexpectedLog,
          cpuProfiles: opts.cpuProf !== undefined ? cpuProfilesOf(opts.cpuProf, p.pid) : null,
        }
      : { mode: 'inprocess', pid: process.pid };
    return { driver, label: db.label, broker, ecdhFloor: floor, setupMs, results, paced, nullLaunch };
  } catch (e) {
    const p = target?.proc;
    if (p?.exit && e instanceof Error) e.message += `\nthe broker process exited (${p.exit.code ?? p.exit.signal}); its last log lines:\n${p.logTail()}`;
    throw e;
  } finally {
    for (const h of hosts) h.close();
    await cleanups.run();
    registerCleanup(undefined);
  }
}

/** The profiles node's --cpu-prof wrote in `dir` for process `pid`: CPU.<date>.<time>.<pid>.<thread>.<seq>.cpuprofile. */
function cpuProfilesOf(dir: string, pid: number): string[] {
  return readdirSync(dir)
    .filter((f) => f.endsWith('.cpuprofile') && f.split('.')[3] === String(pid))
    .sort()
    .map((f) => path.join(dir, f));
}

/**
 * Closed-loop full launch/s at c clients, which the paced rates are compared with: the launch case's result, or, when
 * that case was not run, a short closed-loop probe's (not reported as a case).
 */
async function closedLoopCapacity(
  results: readonly CaseResult[],
  c: number,
  launch: (worker: number) => Promise<void>,
  opts: Options,
  note: (msg: string) => void,
): Promise<{ opsPerSec: number; source: PacedResult['closedLoopSource'] }> {
  const measured = results.find((r) => r.case === 'launch' && r.concurrency === c);
  if (measured) return { opsPerSec: measured.opsPerSec, source: 'launch' };
  note(`full launch, ${c} client(s), closed-loop probe for the paced rates`);
  const probe = await measureAsync('full launch (probe)', launch, { seconds: Math.min(opts.seconds, PROBE_SECONDS), warmupMs: opts.warmupMs, concurrency: c });
  return { opsPerSec: probe.opsPerSec, source: 'probe' };
}

/** How long one paced rate runs: --seconds, or long enough for --min-arrivals arrivals. */
function pacedSeconds(rate: number, opts: Options): number {
  return Math.max(opts.seconds, opts.minArrivals / rate);
}

/**
 * The paced case at c clients, one open-loop run per rate. Auto rates climb PACED_FRACTIONS of the closed-loop capacity
 * and stop one rate after the first whose p99 misses the goal: those two show the knee, and higher rates would only
 * queue longer (and take longer to drain). Explicit --rates all run.
 */
async function measurePaced(
  launch: (worker: number) => Promise<void>,
  c: number,
  capacity: { opsPerSec: number; source: PacedResult['closedLoopSource'] },
  opts: Options,
  cpu: CpuMeter,
  phases: LaunchPhases,
  note: (msg: string) => void,
): Promise<PacedResult> {
  // Three significant digits, so that an auto rate can be given back to --rates as printed.
  const rates = opts.rates ?? PACED_FRACTIONS.map((f) => Number((f * capacity.opsPerSec).toPrecision(3)));
  const out: PacedRate[] = [];
  for (const rate of rates) {
    note(`full launch, paced, ${c} client(s): ${fmt(rate)}/s (${(rate / capacity.opsPerSec).toFixed(2)} × closed loop)`);
    const { name: _name, concurrency: _c, ...r } = await measureOpenLoop('full launch, paced', launch, {
      ratePerSec: rate,
      concurrency: c,
      seconds: pacedSeconds(rate, opts),
      warmupMs: opts.warmupMs,
      window: windows(cpu, phases),
    });
    out.push({
      ...r,
      ratioToCapacity: rate / capacity.opsPerSec,
      goalMet: r.p99Ms < GOAL_LAUNCH_P99_MS,
      phases: phases.summary(),
      ...cpuShare(cpu.take(), r.seconds * 1000, r.completed),
    });
    const firstMiss = out.findIndex((x) => !x.goalMet);
    if (opts.rates === undefined && firstMiss !== -1 && out.length > firstMiss + 1) break;
  }
  return { concurrency: c, closedLoopOpsPerSec: capacity.opsPerSec, closedLoopSource: capacity.source, rates: out };
}

/**
 * The null case: a full launch's two calls, with its requests, against the null broker (null-broker.ts), closed loop
 * at every --concurrency and open loop at every rate the paced case ran. What is left of a launch's latency when the
 * broker does nothing: the floor its figures are to be read against.
 */
async function measureNullLaunch(
  canned: CannedResponses,
  bundleRequest: keybroker.BundleRequest,
  secretRequest: keybroker.SecretRequest,
  paced: readonly PacedResult[],
  opts: Options,
  note: (msg: string) => void,
): Promise<NullLaunchResult> {
  note('null broker: starting');
  const server = await startNullBroker(canned, [BROKER_NODE_FLAG]);
  const hosts: Host[] = [];
  try {
    for (let i = 0; i < Math.max(...opts.concurrency); i++) hosts.push(new Host(server.address)); // paced ran at these too
    const launch = async (w: number): Promise<void> => {
      const bundle = await hosts[w]!.getBundle(bundleRequest);
      if (bundle.LaunchId !== canned.bundle.LaunchId) throw new Error('null broker: not the canned GetBundle response');
      await hosts[w]!.getSecret(secretRequest);
    };
    await launch(0);
    const cpu = new CpuMeter(() => server.cpuMs());
    const closed: ClosedLoop[] = [];
    for (const c of opts.concurrency) {
      note(`null launch, ${c} client(s)`);
      const r = await measureAsync('null launch', launch, { seconds: opts.seconds, warmupMs: opts.warmupMs, concurrency: c, window: cpu });
      const { ops, seconds, opsPerSec, p50Ms, p99Ms, maxMs } = r;
      closed.push({ concurrency: c, ops, seconds, opsPerSec, p50Ms, p99Ms, maxMs, ...cpuShare(cpu.take(), seconds * 1000, ops) });
    }
    const open: NullPaced[] = [];
    for (const p of paced) {
      for (const { offeredPerSec } of p.rates) {
        note(`null launch, paced, ${p.concurrency} client(s): ${fmt(offeredPerSec)}/s`);
        const { name: _name, ...r } = await measureOpenLoop('null launch, paced', launch, {
          ratePerSec: offeredPerSec,
          concurrency: p.concurrency,
          seconds: pacedSeconds(offeredPerSec, opts),
          warmupMs: opts.warmupMs,
          window: cpu,
        });
        open.push({ ...r, ...cpuShare(cpu.take(), r.seconds * 1000, r.completed) });
      }
    }
    return { pid: server.pid, closed, paced: open };
  } finally {
    for (const h of hosts) h.close();
    await server.stop();
  }
}

/**
 * GetSecret alone. Launch ids are single-use, so batches of launches are prepared untimed, then only their GetSecret
 * calls are timed (c in flight); batches are sized from the rate seen so far until `seconds` are measured. Every
 * response is then checked by LAUNCH_SECRET on the simulated SP (untimed).
 */
async function measureGetSecret(
  hosts: Host[],
  sp: SimulatedSecureProcessor,
  bundleRequest: keybroker.BundleRequest,
  bundles: keybroker.BundleResponse[],
  c: number,
  opts: Options,
  window: WindowHooks,
): Promise<MeasureAsyncResult> {
  // Preparation is untimed. It first uses the sessions the GetBundle case left pending (saving their GetBundle), then
  // calls GetBundle with at least PREPARE_CONCURRENCY clients even when c is smaller.
  const prepare = async (n: number): Promise<Prepared[]> => {
    const out = bundles.splice(0, n).map((b) => launchUpToSecret(sp, b));
    n -= out.length;
    if (n === 0) return out;
    const pc = Math.min(hosts.length, Math.max(c, PREPARE_CONCURRENCY));
    await measureEach('prepare', Array.from({ length: n }), async (_, w) => out.push(await prepareLaunch(hosts[w]!, sp, bundleRequest)), { concurrency: pc });
    return out;
  };
  const batch = async (n: number, hooks?: WindowHooks) => {
    const items = await prepare(n);
    const r = await measureEach('GetSecret', items, async (p, w) => (p.response = await hosts[w]!.getSecret(p.request)), { concurrency: c, window: hooks });
    for (const p of items) finishLaunch(sp, p, p.response!);
    return r;
  };
  // A timed batch holds at least 8 calls per client, so the drain at its end (fewer than c in flight) stays small.
  const minBatch = Math.max(8 * c, 64);
  // A small warm-up batch (not recorded; the broker is already warm from GetBundle) gives the first rate estimate.
  // Every launch costs a GetBundle and an SP-side ECDH to prepare, so warming up for a full warmupMs would be dear.
  let rate = opts.warmupMs > 0 ? (await batch(Math.max(2 * c, 32))).opsPerSec : 100;
  const target = opts.seconds;
  let ops = 0;
  let seconds = 0;
  const latencies: Float64Array[] = [];
  while (seconds < target * 0.95) {
    const n = Math.min(100_000, Math.max(minBatch, Math.ceil(rate * (target - seconds) * 1.02)));
    const r = await batch(n, window);
    ops += r.ops;
    seconds += r.seconds;
    latencies.push(r.latenciesMs);
    rate = r.opsPerSec;
  }
  const all = new Float64Array(latencies.reduce((s, l) => s + l.length, 0));
  latencies.reduce((off, l) => (all.set(l, off), off + l.length), 0);
  return { name: 'GetSecret', ops, seconds, opsPerSec: ops / seconds, meanUs: (seconds * 1e6) / ops, concurrency: c, ...summarizeLatencies(all) };
}

// ---- main -----------------------------------------------------------------------------------------------------------

async function main(): Promise<void> {
  const opts = parseOptions();
  const progress = (msg: string) => {
    if (process.stderr.isTTY) process.stderr.write(msg);
  };
  const tStart = performance.now();

  let cleanup: (() => Promise<void>) | undefined;
  const onSignal = (signal: NodeJS.Signals) => {
    if (interrupted) return;
    interrupted = true;
    process.stderr.write(`\n${signal}: ${opts.broker === 'process' ? 'stopping the broker process, ' : ''}dropping the benchmark database\n`);
    void (cleanup ?? (async () => undefined))().finally(() => process.exit(signal === 'SIGINT' ? 130 : 143));
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);

  progress('setup: generating a sev-sim platform…\n');
  const tSim = performance.now();
  const platform = createPlatform({ name: 'bench-sim' });
  const simSetupMs = performance.now() - tSim;

  // ECDH floor: the same work as the broker's per-GetBundle key agreement, against the same PDH. Measured right before
  // each driver's cases, since throughput on a shared VM drifts by ±10–15 % within a minute.
  const candidates = ecdhFloorCandidates(sevPublicKey(platform.pdh));
  const floorSeconds = Math.min(opts.seconds, FLOOR_SECONDS);
  const measureFloor = (): EcdhFloor => {
    const measured: MeasureResult[] = candidates.map((c) => measure(c.method, c.fn, { seconds: floorSeconds }));
    const best = measured.reduce((a, b) => (b.opsPerSec > a.opsPerSec ? b : a));
    return { opsPerSec: best.opsPerSec, meanUs: best.meanUs, method: best.name, candidates: measured };
  };

  const drivers: DriverResult[] = [];
  for (const d of opts.drivers) {
    progress(`${d}: ECDH P-384 floor\n`);
    const floor = measureFloor();
    progress(`${d}: starting the broker${opts.broker === 'process' ? ' process' : ''}\n`);
    drivers.push(await runDriver(d, platform, opts, floor, progress, (fn) => (cleanup = fn)));
  }
  const totalSeconds = (performance.now() - tStart) / 1000;

  const machine = machineInfo();
  const cores = machine.cores;
  const goals = drivers.map((d) => {
    const bundle = d.results.filter((r) => r.case === 'bundle').map((r) => ({ concurrency: r.concurrency, ratio: r.ratioToFloor, met: r.ratioToFloor >= GOAL_BUNDLE_RATIO }));
    const l = d.results.find((r) => r.case === 'launch' && r.concurrency === GOAL_LAUNCH_CLIENTS);
    return {
      driver: d.driver,
      bundleRatio: { goal: GOAL_BUNDLE_RATIO, byConcurrency: bundle },
      launchP99: l ? { goalMs: GOAL_LAUNCH_P99_MS, concurrency: GOAL_LAUNCH_CLIENTS, p99Ms: l.p99Ms, met: l.p99Ms < GOAL_LAUNCH_P99_MS } : null,
      launchP99OpenLoop: openLoopGoal(d.paced, (r) => r.p99Ms),
      // the same, for the broker's part alone: a launch's GetBundle + GetSecret round trips, without the simulated SP
      brokerShareP99OpenLoop: openLoopGoal(d.paced, (r) => r.phases?.broker.p99Ms ?? NaN),
      transportFloor: transportFloor(d),
    };
  });
  const notes = [
    ...(opts.broker === 'process'
      ? [
          `Processes (${cores} cores, shared): the bench process (pid ${process.pid}) runs the simulated hosts (gRPC clients), the simulated Secure Processor and the ECDH floor; the broker process (kb-broker: tsx apps/broker/src/main.ts, a fresh one per database; pid in each heading) runs the broker, its gRPC servers and, with PGlite, the database (on disk in its --data-dir, as in production); PostgreSQL runs in its server's own processes. Clients, PostgreSQL and the broker still share the same ${cores} cores.`,
          'The broker process is started with --bundle-rate 0 --max-pending-sessions 1000000 --log-level info ("broker listening" is an info line; nothing is logged per request), the sev-sim root as --trust-root, KB_ADMIN_TOKEN (and KB_DATABASE_URL + KB_MASTER_KEY for PostgreSQL); the tenant default policy and the secret are put through the admin API (BrokerAdmin PutPolicy/PutSecret), then stopped with SIGTERM.',
          `broker CPU = utime+stime of the broker process (from /proc/<pid>/stat of the tsx wrapper and its node child, ${ticksPerSecond()} ticks/s) over the measured windows only: ms/op = that ÷ ops, % = that ÷ wall time (100 % = one core). bench CPU = process.cpuUsage() of the bench process over the same windows; other CPU = the rest of the machine's busy time (/proc/stat) over them: PostgreSQL, and anything else running, which skews the run.`,
        ]
      : [
          `The broker, its gRPC server, every simulated client and the simulated Secure Processor run in this one Node process (pid ${process.pid}, one JS thread) on a ${cores}-core machine; PGlite also runs on that thread, a PostgreSQL server in its own processes. Client-side work (protobuf, SP-side ECDH in LAUNCH_START, LAUNCH_SECRET) competes with the broker for the same CPU, so these are lower bounds on a dedicated broker. bench CPU = process.cpuUsage() over the measured windows (100 % = one core), broker included; other CPU = the rest of the machine's busy time (/proc/stat): PostgreSQL, and anything else running, which skews the run.`,
        ]),
    `ECDH floor = node:crypto P-384 keygen+derive against the platform PDH, single-threaded in the bench process, measured right before each database's cases (before its broker starts); the faster of generateKeyPairSync + diffieHellman and createECDH.generateKeys + computeSecret. ÷ floor = case ops/s divided by that driver's floor (GetBundle does one such keygen+derive per call; a full launch two, the second in the simulated SP).`,
    `GetBundle: the same certificate chain each call (the broker caches the chain verdict); rate limit off (bundle rate 0), max pending sessions ${opts.broker === 'process' ? '1e6' : '1e9'}.`,
    'GetSecret: only the GetSecret calls are timed; their launches (GetBundle + LAUNCH_START/UPDATE/MEASURE) are prepared untimed in batches beforehand, first from the sessions the GetBundle case issued, and each response is checked by LAUNCH_SECRET afterwards. One 32-byte key under the tenant default policy.',
    `full launch: GetBundle + LAUNCH_START/UPDATE(64 KiB)/MEASURE + GetSecret + LAUNCH_SECRET/FINISH, the guest secret checked each time; the simulated SP's part ${opts.spThreads > 0 ? `on ${opts.spThreads} worker thread(s) of the bench process (--sp-threads), as a real host's SP is not the CPU running its gRPC client` : "on the bench's event loop (--sp-threads 0)"}.`,
    'One gRPC connection per client (no subchannel sharing). Closed loop (first table): each client sends its next call as soon as the previous one returns, so the broker is saturated and mean latency ≈ clients ÷ ops/s (Little\'s law): ops/s is capacity. p50/p99/max are single-call latencies; ops/s over the whole window.',
    ...(opts.cases.includes('paced')
      ? [
          `Open loop (full launch, paced): launches arrive as a Poisson process at the offered rate however the broker keeps up, as from independent hosts, each taken by a free client (FIFO queue when all are busy); latency runs from the scheduled arrival, so queueing, and any lateness of the bench's event loop, counts (no coordinated omission): the latency a host sees at that launch rate. Rates: ${opts.rates === undefined ? `${PACED_FRACTIONS.join(', ')} × the closed-loop full launch/s at the same clients, stopping one rate after the first whose p99 ≥ ${GOAL_LAUNCH_P99_MS} ms` : 'from --rates'}; each for ${opts.seconds} s, or longer for at least ${opts.minArrivals} arrivals, after ${opts.warmupMs} ms of arrivals at that rate.`,
          `paced columns: closed-loop/s = the full launch case's launch/s at those clients (or, marked "probe", a ${PROBE_SECONDS} s closed-loop run when that case was not run), ÷ closed = offered ÷ that; arrivals = launches scheduled in the window, each timed to completion (few at low rates: p99 is then about the max); achieved/s = launches completed within the window ÷ its length; wait ms = mean time in the queue over all arrivals; waited = % of arrivals that found every client busy; lag p99 ms = how late the bench's event loop released arrivals (busy with other simulated hosts' gRPC${opts.spThreads > 0 ? '' : ' and SP work, which real hosts would do on their own machines'}), part of the latency; broker CPU ms/op per completed launch.`,
        ]
      : []),
    ...(opts.cases.includes('launch') || opts.cases.includes('paced')
      ? [
          'full launch by phase: GetBundle and GetSecret = each call\'s round trip as the host sees it (gRPC both ways, the broker\'s work, and any wait for the bench\'s own busy event loop); SP start…measure = LAUNCH_START (with the SP side\'s P-384 ECDH) + LAUNCH_UPDATE_DATA (64 KiB) + LAUNCH_MEASURE on the simulated SP, SP secret+finish = LAUNCH_SECRET + LAUNCH_FINISH + the guest-side check (with --sp-threads, each including its hop to the SP thread and back), where a real host uses its AMD Secure Processor; broker: both calls = GetBundle + GetSecret of one launch (percentiles of that sum). Each column\'s percentiles are taken on their own, so they do not add up to the launch\'s.',
        ]
      : []),
    ...(opts.cases.includes('null')
      ? [
          `null launch (the transport floor): once each broker under test has stopped, the same clients send a full launch's two calls, with its very requests, to a null broker (tools/bench/null-broker.ts: a process of its own, grpc-js with kb-broker's server options and V8 flag) that answers each with the responses of one real launch and does nothing else — no chain check, no ECDH, no database — and no SP work runs between the calls. Closed loop at every number of clients, and open loop at the rates the paced case ran. Its latency is what any broker on grpc-js pays on this machine before its own work (protobuf, HTTP/2, loopback TCP, two processes waking up); compare it with the broker's share of the paced launches. server CPU = the null broker process's.`,
        ]
      : []),
    ...(opts.cpuProf !== undefined
      ? [`--cpu-prof: each broker process ran under node's CPU profiler (--cpu-prof --cpu-prof-dir=${opts.cpuProf}), which costs it CPU: its figures are below an unprofiled run's. The profiles are listed in each heading.`]
      : []),
  ];
  if (opts.driverNote) notes.push(opts.driverNote);
  for (const d of drivers) {
    if (d.broker.mode !== 'process') continue;
    const exit = d.broker.exit;
    if (!exit || exit.code !== 0) notes.push(`${d.driver}: the broker process did not exit cleanly after SIGTERM (${exit ? `code ${exit.code}, signal ${exit.signal}` : 'still running'}).`);
    if (d.broker.unexpectedLog.length > 0) notes.push(`${d.driver}: the broker process logged ${d.broker.unexpectedLog.length} unexpected warning/error line(s), e.g. ${d.broker.unexpectedLog[0]}`);
    if (d.broker.cpuProfiles?.length === 0) notes.push(`${d.driver}: --cpu-prof: no .cpuprofile for broker pid ${d.broker.pid} in ${opts.cpuProf} (node writes it only on a clean exit).`);
  }

  if (opts.json) {
    process.stdout.write(
      JSON.stringify(
        {
          benchmark: 'broker',
          machine,
          settings: {
            broker: opts.broker,
            seconds: opts.seconds,
            warmupMs: opts.warmupMs,
            minArrivals: opts.minArrivals,
            spThreads: opts.spThreads,
            concurrency: opts.concurrency,
            cases: opts.cases,
            rates: opts.rates ?? { auto: PACED_FRACTIONS, stop: `one rate after the first with p99 >= ${GOAL_LAUNCH_P99_MS} ms` },
            cpuProf: opts.cpuProf ?? null,
            drivers: opts.drivers,
            pgliteDir: opts.pgliteDir,
            pgPool: PG_POOL,
            firmwareBytes: FIRMWARE.length,
            policy: POLICY,
          },
          drivers,
          goals,
          setup: { simPlatformMs: Math.round(simSetupMs), driversMs: Object.fromEntries(drivers.map((d) => [d.driver, Math.round(d.setupMs)])) },
          totalSeconds,
          notes,
        },
        null,
        2,
      ) + '\n',
    );
    return;
  }

  const out: string[] = [];
  out.push(
    opts.broker === 'process'
      ? `broker end-to-end benchmark (gRPC on loopback; broker: its own process, kb-broker; clients, simulated SP and ECDH floor: this process, pid ${process.pid})`
      : `broker end-to-end benchmark (gRPC on loopback; broker, clients, simulated SP and ECDH floor all in this process, pid ${process.pid})`,
  );
  out.push(`cpu:  ${machine.cpu} (${cores} cores)   node: ${machine.node}   ${machine.platform}`);
  out.push(`date: ${machine.date}   ${opts.seconds} s per case (paced: per rate) after ${opts.warmupMs} ms warm-up`);
  for (const d of drivers) {
    out.push('');
    out.push(`${d.label}`);
    out.push(
      d.broker.mode === 'process'
        ? `broker process: pid ${d.broker.pid} (tsx wrapper ${d.broker.wrapperPid}): ${d.broker.command}`
        : `broker: in the bench process (pid ${d.broker.pid})`,
    );
    if (d.broker.mode === 'process' && d.broker.cpuProfiles) out.push(`CPU profiles: ${d.broker.cpuProfiles.join(' ') || 'none written'}`);
    out.push(
      `ECDH P-384 keygen+derive floor: ${fmt(d.ecdhFloor.opsPerSec)} ops/s (${fmt(d.ecdhFloor.meanUs)} µs/op; ` +
        d.ecdhFloor.candidates.map((c) => `${c.name} ${fmt(c.opsPerSec)}/s`).join(', ') +
        ')',
    );
    if (d.results.length > 0) {
      out.push(
        table(
          ['case', 'clients', 'ops/s', 'p50 ms', 'p99 ms', 'max ms', '÷ floor', 'broker CPU ms/op', 'broker CPU', 'bench CPU', 'other CPU'],
          d.results.map((r) => [
            r.name,
            String(r.concurrency),
            fmt(r.opsPerSec),
            fmt(r.p50Ms),
            fmt(r.p99Ms),
            fmt(r.maxMs),
            r.ratioToFloor.toFixed(2),
            r.brokerCpuMsPerOp === null ? '-' : fmt(r.brokerCpuMsPerOp),
            r.brokerCpuPct === null ? '-' : `${r.brokerCpuPct.toFixed(0)} %`,
            `${r.benchCpuPct.toFixed(0)} %`,
            r.otherCpuPct === null ? '-' : `${r.otherCpuPct.toFixed(0)} %`,
          ]),
          new Set([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]),
        ),
      );
    }
    if (d.paced.length > 0) out.push('', 'full launch, paced (open loop: Poisson arrivals at the offered rate; latency from the scheduled arrival)', pacedTable(d.paced));
    const phaseRows = [
      ...d.results.filter((r) => r.case === 'launch').map((r) => ({ label: ['closed loop', String(r.concurrency), '-'], phases: r.phases })),
      ...d.paced.flatMap((p) => p.rates.map((r) => ({ label: ['paced', String(p.concurrency), fmt(r.offeredPerSec)], phases: r.phases }))),
    ];
    if (phaseRows.length > 0) {
      out.push('', 'full launch by phase, as the host sees it: p50 / p99 ms (paced: from when a client takes the launch, queue wait excluded)');
      out.push(phaseTable(['full launch', 'clients', 'offered/s'], phaseRows));
    }
    if (d.nullLaunch) {
      out.push('', `null launch, the transport floor: a launch's two calls answered with canned responses by a process doing nothing else (pid ${d.nullLaunch.pid}), no SP work`);
      out.push(nullTable(d.nullLaunch));
    }
  }
  out.push('');
  out.push('goals:');
  for (const g of goals) {
    const b = g.bundleRatio.byConcurrency.map((x) => `${x.concurrency}: ${x.ratio.toFixed(2)} ${x.met ? 'ok' : 'MISSED'}`).join(', ');
    out.push(`  ${g.driver.padEnd(6)} GetBundle ÷ floor ≥ ${GOAL_BUNDLE_RATIO.toFixed(2)} — ${b || 'not measured (add bundle to --cases)'}`);
    const launchGoal = `  ${g.driver.padEnd(6)} full launch p99 < ${GOAL_LAUNCH_P99_MS} ms at ${GOAL_LAUNCH_CLIENTS} clients`;
    out.push(
      `${launchGoal}, closed loop (saturation): ` +
        (g.launchP99 ? `${fmt(g.launchP99.p99Ms)} ms ${g.launchP99.met ? 'ok' : 'MISSED'}` : `not measured (add launch to --cases and ${GOAL_LAUNCH_CLIENTS} to --concurrency)`),
    );
    out.push(`${launchGoal}, open loop: ${openLoopGoalText(g.launchP99OpenLoop)}`);
    out.push(`  ${''.padEnd(6)} the broker's part alone (GetBundle + GetSecret round trips, no SP work), open loop: ${openLoopGoalText(g.brokerShareP99OpenLoop)}`);
    out.push(`  ${''.padEnd(6)} ${transportFloorText(g.transportFloor)}`);
  }
  for (const d of drivers) {
    // Where the broker's CPU goes: with one core for the broker, GetBundle ÷ floor cannot exceed floor time ÷ broker CPU per op.
    const r = d.results.filter((x) => x.case === 'bundle' && x.brokerCpuMsPerOp !== null).at(-1);
    if (!r) continue;
    const floorMs = d.ecdhFloor.meanUs / 1000;
    out.push(
      `  ${d.driver.padEnd(6)} GetBundle at ${r.concurrency} clients: the broker process spends ${fmt(r.brokerCpuMsPerOp!)} ms CPU per call = ` +
        `${(r.brokerCpuMsPerOp! / floorMs).toFixed(2)}× the floor's ${fmt(floorMs)} ms (ECDH ≈ ${((100 * floorMs) / r.brokerCpuMsPerOp!).toFixed(0)} % of it), at ${r.brokerCpuPct!.toFixed(0)} % of a core`,
    );
  }
  out.push('');
  for (const n of notes) out.push(`- ${n}`);
  out.push(`- setup: sev-sim platform ${fmt(simSetupMs / 1000)} s; ${drivers.map((d) => `${d.driver} ${fmt(d.setupMs / 1000)} s`).join(', ')}; whole run ${fmt(totalSeconds)} s.`);
  process.stdout.write(out.join('\n') + '\n');
}

/** The launch p99 goal judged open loop (goals.launchP99OpenLoop in --json). */
interface OpenLoopGoal {
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
function openLoopGoal(paced: readonly PacedResult[], p99Of: (r: PacedRate) => number): OpenLoopGoal | null {
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

function openLoopGoalText(g: OpenLoopGoal | null): string {
  if (!g) return `not measured (add paced to --cases and ${GOAL_LAUNCH_CLIENTS} to --concurrency)`;
  if (g.maxRateMet === null || g.ratioToCapacity === null) return `not met at any measured rate (lowest: ${fmt(g.lowest.offeredPerSec)}/s, p99 ${fmt(g.lowest.p99Ms)} ms)`;
  const held =
    `holds up to ${fmt(g.maxRateMet)} launches/s (${(100 * g.ratioToCapacity).toFixed(0)} % of the closed-loop ${g.concurrency}-client capacity of ` +
    `${fmt(g.closedLoopOpsPerSec)}/s)`;
  return g.firstMissed ? `${held}; p99 ${fmt(g.firstMissed.p99Ms)} ms at ${fmt(g.firstMissed.offeredPerSec)}/s` : `${held}, the highest rate measured`;
}

/** The null launch next to the launch goal: what the transport alone takes of it, at GOAL_LAUNCH_CLIENTS clients. */
interface TransportFloor {
  goalMs: number;
  concurrency: number;
  /** closed loop; null when not measured at that number of clients */
  closedLoop: { opsPerSec: number; p99Ms: number } | null;
  /** at the paced case's rates */
  openLoop: { offeredPerSec: number; p50Ms: number; p99Ms: number }[];
}

function transportFloor(d: DriverResult): TransportFloor | null {
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

function transportFloorText(f: TransportFloor | null): string {
  const what = `transport floor (null launch: the same two calls to a broker doing nothing) at ${GOAL_LAUNCH_CLIENTS} clients`;
  if (!f || (!f.closedLoop && f.openLoop.length === 0)) return `${what}: not measured (add null to --cases and ${GOAL_LAUNCH_CLIENTS} to --concurrency)`;
  const parts: string[] = [];
  if (f.closedLoop) parts.push(`closed loop ${fmt(f.closedLoop.opsPerSec)}/s, p99 ${fmt(f.closedLoop.p99Ms)} ms`);
  if (f.openLoop.length > 0) parts.push(`open loop p99 ${f.openLoop.map((r) => `${fmt(r.p99Ms)} ms at ${fmt(r.offeredPerSec)}/s`).join(', ')}`);
  return `${what}: ${parts.join('; ')}`;
}

/** The null case as a table: closed loop at each number of clients, then the paced rates. */
function nullTable(n: NullLaunchResult): string {
  const pct = (x: number | null) => (x === null ? '-' : `${x.toFixed(0)} %`);
  const cpu = (r: CpuShare) => [r.brokerCpuMsPerOp === null ? '-' : fmt(r.brokerCpuMsPerOp), pct(r.brokerCpuPct), pct(r.benchCpuPct), pct(r.otherCpuPct)];
  const rows = [
    ...n.closed.map((r) => ['closed loop', String(r.concurrency), '-', fmt(r.opsPerSec), fmt(r.p50Ms), fmt(r.p99Ms), fmt(r.maxMs), '-', ...cpu(r)]),
    ...n.paced.map((r) => ['paced', String(r.concurrency), fmt(r.offeredPerSec), fmt(r.achievedPerSec), fmt(r.p50Ms), fmt(r.p99Ms), fmt(r.maxMs), fmt(r.releaseLagP99Ms), ...cpu(r)]),
  ];
  const header = ['null launch', 'clients', 'offered/s', 'launches/s', 'p50 ms', 'p99 ms', 'max ms', 'lag p99 ms', 'server CPU ms/op', 'server CPU', 'bench CPU', 'other CPU'];
  return table(header, rows, new Set([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]));
}

/** The paced results as a table; the number of clients and the capacity only on the first row of each group. */
function pacedTable(paced: readonly PacedResult[]): string {
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
  const header = ['clients', 'closed-loop/s', 'offered/s', '÷ closed', 'arrivals', 'achieved/s', 'p50 ms', 'p99 ms', 'max ms', 'wait ms', 'waited', 'lag p99 ms'];
  header.push('broker CPU ms/op', 'broker CPU', 'bench CPU', 'other CPU');
  return table(header, rows, new Set(header.keys()));
}

/** Set on SIGINT/SIGTERM: calls then fail because the broker is stopping and the database is being dropped. */
let interrupted = false;

main().then(
  () => process.exit(0),
  (e: unknown) => {
    if (interrupted) return; // the SIGINT handler exits once the database is dropped
    process.stderr.write(`broker benchmark failed: ${(e as Error)?.stack ?? String(e)}\n`);
    process.exit(1);
  },
);
