/**
 * End-to-end benchmark of the broker: a broker started in this process (apps/broker/src/broker.ts), simulated SEV
 * hosts (libs/sev-sim) calling it over real gRPC on loopback, on PGlite and on PostgreSQL, with the node:crypto ECDH
 * P-384 floor measured in the same run.
 *
 *   npx tsx tools/bench/broker.ts [--driver pglite|pg|both] [--seconds N] [--concurrency 1,16,64] [--json]
 *
 * Cases, each at every concurrency (one gRPC connection per simulated client):
 *   GetBundle    GetBundle alone, the same certificate chain every time (chain verdict cached by the broker)
 *   GetSecret    GetSecret alone: launches are prepared untimed beforehand (GetBundle + LAUNCH_START/UPDATE/MEASURE
 *                on the simulated Secure Processor), then only their GetSecret calls are timed
 *   full launch  GetBundle + LAUNCH_START/UPDATE/MEASURE + GetSecret + LAUNCH_SECRET/FINISH, checked end to end
 */
import { createECDH, createHash, diffieHellman, generateKeyPairSync, randomBytes, randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { credentials, Metadata, type ServiceError } from '@grpc/grpc-js';
import { Client as PgClient } from 'pg';
import { startBroker, type RunningBroker } from '../../apps/broker/src/broker';
import { parseConfig, type BrokerConfig } from '../../apps/broker/src/config';
import { silentLogger } from '../../apps/broker/src/log';
import { keybroker } from '../../libs/grpc-api/src';
import { sevPublicKey } from '../../libs/sev/src';
import { createPlatform, platformChain, platformRoot, SimulatedSecureProcessor, type SimulatedPlatform } from '../../libs/sev-sim/src';
import { openStore, PGLITE_MEMORY, type Store } from '../../libs/store/src';
import { fmt, measure, measureAsyncWorkers, measureEach, summarizeLatencies, table, type MeasureAsyncResult, type MeasureResult } from './harness';

const USAGE = `Usage: npx tsx tools/bench/broker.ts [options]

End-to-end broker benchmark over gRPC on loopback (broker and clients in this process), next to the node:crypto
ECDH P-384 keygen+derive floor measured in the same run.

Options:
  --driver D            pglite | pg | both (default: both when a PostgreSQL URL is known, else pglite)
  --database-url URL    PostgreSQL server whose role may CREATE DATABASE (default: KB_BENCH_DATABASE_URL, then
                        KB_TEST_DATABASE_URL); a fresh database is created for the run and dropped afterwards
  --pglite-dir DIR      PGlite data directory: "memory" (default) or "tmp" (a fresh temporary directory on disk)
  --seconds N           measured time per case, seconds (default 3)
  --warmup-ms N         warm-up per case, milliseconds (default 300; GetSecret: one batch of max(2×clients, 32))
  --concurrency LIST    concurrent clients, comma-separated (default 1,16,64)
  --cases LIST          any of bundle,secret,launch (default: all three)
  --json                print one JSON object instead of the tables
  -h, --help            print this help
`;

type Driver = 'pglite' | 'pg';
type CaseId = 'bundle' | 'secret' | 'launch';
const CASES: { id: CaseId; name: string }[] = [
  { id: 'bundle', name: 'GetBundle' },
  { id: 'secret', name: 'GetSecret' },
  { id: 'launch', name: 'full launch' },
];

const POLICY = 0x1; // NODBG
const FIRMWARE = randomBytes(64 * 1024); // what the simulated SP measures; only its digest matters to the broker
const DIGEST = createHash('sha256').update(FIRMWARE).digest();
const SECRET_ID = 'bench/key/disk';
const SECRET_VALUE = randomBytes(32);
const SECRET_GUID = randomUUID();
const MASTER_KEY = randomBytes(32);
const ADMIN_TOKEN = randomBytes(24).toString('hex');
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

interface Options {
  drivers: Driver[];
  driverNote?: string;
  databaseUrl?: string;
  pgliteDir: 'memory' | 'tmp';
  seconds: number;
  warmupMs: number;
  concurrency: number[];
  cases: CaseId[];
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
        driver: { type: 'string' },
        'database-url': { type: 'string' },
        'pglite-dir': { type: 'string' },
        seconds: { type: 'string' },
        'warmup-ms': { type: 'string' },
        concurrency: { type: 'string' },
        cases: { type: 'string' },
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
    if (!CASES.some((c) => c.id === id)) usageError(`--cases takes bundle, secret and/or launch, got ${JSON.stringify(values.cases)}`);
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
  const pgliteDir = values['pglite-dir'] ?? 'memory';
  if (pgliteDir !== 'memory' && pgliteDir !== 'tmp') usageError(`--pglite-dir must be memory or tmp, got ${JSON.stringify(pgliteDir)}`);
  return {
    drivers,
    driverNote,
    databaseUrl,
    pgliteDir,
    seconds: num('seconds', values.seconds, 3, false),
    warmupMs: num('warmup-ms', values['warmup-ms'], 300, true),
    concurrency: [...new Set(concurrency)],
    cases: CASES.map((c) => c.id).filter((id) => cases.includes(id)),
    json: values.json === true,
  };
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
  const handle = sp.launchStart({ policy: POLICY, godhCert: Buffer.from(bundle.GuestOwnerPublicKey, 'base64'), launchBlob: Buffer.from(bundle.LaunchBlob, 'base64') });
  sp.launchUpdateData(handle, FIRMWARE);
  const measurement = sp.launchMeasure(handle);
  const fw = sp.firmware;
  return {
    handle,
    request: {
      LaunchMeasurement: measurement.toString('base64'),
      LaunchId: bundle.LaunchId,
      Policy: POLICY,
      ApiMajor: fw.apiMajor,
      ApiMinor: fw.apiMinor,
      BuildId: fw.build,
      FwDigest: DIGEST.toString('base64'),
      LaunchDescription: 'bench',
      SecretRequests: [{ Guid: SECRET_GUID, Format: 'binary', SecretType: 'key', Id: SECRET_ID }],
    },
  };
}

/** LAUNCH_SECRET + LAUNCH_FINISH, then checks that the guest reads the secret; frees the simulated guest. */
function finishLaunch(sp: SimulatedSecureProcessor, p: Prepared, res: keybroker.SecretResponse): void {
  try {
    sp.launchSecret(p.handle, Buffer.from(res.LaunchSecretHeader, 'base64'), Buffer.from(res.LaunchSecretData, 'base64'));
    sp.launchFinish(p.handle);
    const secrets = sp.guestSecrets(p.handle);
    if (secrets.length !== 1 || secrets[0]!.guid !== SECRET_GUID || !secrets[0]!.data.equals(SECRET_VALUE)) {
      throw new Error('benchmark sanity check failed: the guest did not receive the expected secret');
    }
  } finally {
    sp.decommission(p.handle);
  }
}

// ---- databases and the broker ---------------------------------------------------------------------------------------

interface Database {
  label: string;
  open(): Promise<Store>;
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

async function benchDatabase(driver: Driver, opts: Options): Promise<Database> {
  if (driver === 'pglite') {
    if (opts.pgliteDir === 'memory') {
      return { label: 'PGlite (memory://, in-process WASM)', open: () => openStore({ driver: 'pglite', dataDir: PGLITE_MEMORY, masterKey: MASTER_KEY }), drop: async () => undefined };
    }
    const dir = mkdtempSync(path.join(os.tmpdir(), 'kb-bench-'));
    return {
      label: `PGlite (${dir}, in-process WASM)`,
      open: () => openStore({ driver: 'pglite', dataDir: dir, masterKey: MASTER_KEY }),
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
    label: `PostgreSQL (${url.host}, fresh database ${name}, pool ${PG_POOL})`,
    open: () => openStore({ driver: 'pg', url: url.toString(), masterKey: MASTER_KEY, maxConnections: PG_POOL }),
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

// ---- the run --------------------------------------------------------------------------------------------------------

interface CaseResult {
  case: CaseId;
  name: string;
  concurrency: number;
  ops: number;
  seconds: number;
  opsPerSec: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
  /** opsPerSec / ECDH floor ops/s */
  ratioToFloor: number;
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
  /** measured right before this driver's cases */
  ecdhFloor: EcdhFloor;
  setupMs: number;
  results: CaseResult[];
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
  const db = await benchDatabase(driver, opts);
  registerCleanup(() => db.drop());
  let store: Store | undefined;
  let broker: RunningBroker | undefined;
  const hosts: Host[] = [];
  try {
    store = await db.open();
    await store.putPolicy('default', { version: 1, allowedDigests: [DIGEST.toString('hex')] });
    await store.putSecret({ id: SECRET_ID, value: SECRET_VALUE });
    broker = await startBroker(brokerConfig(), { store, logger: silentLogger, extraRoots: [platformRoot(platform)] });
    for (let i = 0; i < Math.max(...opts.concurrency, PREPARE_CONCURRENCY); i++) hosts.push(new Host(broker.address));
    const sp = new SimulatedSecureProcessor(platform);
    const bundleRequest: keybroker.BundleRequest = { CertificateChain: platformChain(platform).toString('base64'), Policy: POLICY };
    /** Bundles issued by the timed GetBundle case, reused (in order) to prepare GetSecret's launches. */
    const bundles: keybroker.BundleResponse[] = [];

    // one launch end to end before anything is timed
    {
      const p = await prepareLaunch(hosts[0]!, sp, bundleRequest);
      finishLaunch(sp, p, await hosts[0]!.getSecret(p.request));
    }
    const setupMs = performance.now() - t0;

    const results: CaseResult[] = [];
    const push = (id: CaseId, r: MeasureAsyncResult) => {
      const name = CASES.find((c) => c.id === id)!.name;
      results.push({ case: id, name, concurrency: r.concurrency, ops: r.ops, seconds: r.seconds, opsPerSec: r.opsPerSec, p50Ms: r.p50Ms, p99Ms: r.p99Ms, maxMs: r.maxMs, ratioToFloor: r.opsPerSec / floor.opsPerSec });
    };

    for (const c of opts.cases.includes('bundle') ? opts.concurrency : []) {
      progress(`  ${driver}: GetBundle, ${c} client(s)\n`);
      push(
        'bundle',
        await measureAsyncWorkers(
          'GetBundle',
          async (w) => {
            const b = await hosts[w]!.getBundle(bundleRequest);
            if (b.LaunchId.length !== 36) throw new Error('GetBundle returned no launch id');
            if (bundles.length < MAX_KEPT_BUNDLES) bundles.push(b);
            return b;
          },
          { seconds: opts.seconds, warmupMs: opts.warmupMs, concurrency: c },
        ),
      );
    }

    for (const c of opts.cases.includes('secret') ? opts.concurrency : []) {
      progress(`  ${driver}: GetSecret, ${c} client(s) (launches prepared untimed)\n`);
      push('secret', await measureGetSecret(hosts, sp, bundleRequest, bundles, c, opts));
    }

    for (const c of opts.cases.includes('launch') ? opts.concurrency : []) {
      progress(`  ${driver}: full launch, ${c} client(s)\n`);
      push(
        'launch',
        await measureAsyncWorkers(
          'full launch',
          async (w) => {
            const p = await prepareLaunch(hosts[w]!, sp, bundleRequest);
            finishLaunch(sp, p, await hosts[w]!.getSecret(p.request));
          },
          { seconds: opts.seconds, warmupMs: opts.warmupMs, concurrency: c },
        ),
      );
    }
    return { driver, label: db.label, ecdhFloor: floor, setupMs, results };
  } finally {
    for (const h of hosts) h.close();
    if (broker) await broker.close();
    if (store) await store.close();
    await db.drop();
    registerCleanup(undefined);
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
  const batch = async (n: number) => {
    const items = await prepare(n);
    const r = await measureEach('GetSecret', items, async (p, w) => (p.response = await hosts[w]!.getSecret(p.request)), { concurrency: c });
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
    const r = await batch(n);
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
  process.once('SIGINT', () => {
    interrupted = true;
    process.stderr.write('\ninterrupted: dropping the benchmark database\n');
    void (cleanup ?? (async () => undefined))().finally(() => process.exit(130));
  });

  progress('setup: generating a sev-sim platform…\n');
  const tSim = performance.now();
  const platform = createPlatform({ name: 'bench-sim' });
  const simSetupMs = performance.now() - tSim;

  // ECDH floor: the same work as the broker's per-GetBundle key agreement, against the same PDH. Measured right before
  // each driver's cases, since throughput on a shared VM drifts by ±10–15 % within a minute.
  const pdhKey = sevPublicKey(platform.pdh);
  const jwk = pdhKey.export({ format: 'jwk' });
  const pdhPoint = Buffer.concat([Buffer.of(4), Buffer.from(jwk.x!, 'base64url'), Buffer.from(jwk.y!, 'base64url')]);
  const floorSeconds = Math.min(opts.seconds, FLOOR_SECONDS);
  const measureFloor = (): EcdhFloor => {
    const candidates: MeasureResult[] = [
      measure(
        'generateKeyPairSync + diffieHellman',
        () => diffieHellman({ privateKey: generateKeyPairSync('ec', { namedCurve: 'P-384' }).privateKey, publicKey: pdhKey }),
        { seconds: floorSeconds },
      ),
      measure(
        'createECDH.generateKeys + computeSecret',
        () => {
          const e = createECDH('secp384r1');
          e.generateKeys();
          return e.computeSecret(pdhPoint);
        },
        { seconds: floorSeconds },
      ),
    ];
    const best = candidates.reduce((a, b) => (b.opsPerSec > a.opsPerSec ? b : a));
    return { opsPerSec: best.opsPerSec, meanUs: best.meanUs, method: best.name, candidates };
  };

  const drivers: DriverResult[] = [];
  for (const d of opts.drivers) {
    progress(`${d}: ECDH P-384 floor\n`);
    const floor = measureFloor();
    progress(`${d}: starting the broker\n`);
    drivers.push(await runDriver(d, platform, opts, floor, progress, (fn) => (cleanup = fn)));
  }
  const totalSeconds = (performance.now() - tStart) / 1000;

  const cores = os.cpus().length;
  const machine = {
    cpu: os.cpus()[0]?.model ?? 'unknown',
    cores,
    node: process.version,
    platform: `${os.platform()} ${os.release()} ${os.arch()}`,
    date: new Date().toISOString(),
  };
  const goals = drivers.map((d) => {
    const bundle = d.results.filter((r) => r.case === 'bundle').map((r) => ({ concurrency: r.concurrency, ratio: r.ratioToFloor, met: r.ratioToFloor >= GOAL_BUNDLE_RATIO }));
    const l = d.results.find((r) => r.case === 'launch' && r.concurrency === GOAL_LAUNCH_CLIENTS);
    return {
      driver: d.driver,
      bundleRatio: { goal: GOAL_BUNDLE_RATIO, byConcurrency: bundle },
      launchP99: l ? { goalMs: GOAL_LAUNCH_P99_MS, concurrency: GOAL_LAUNCH_CLIENTS, p99Ms: l.p99Ms, met: l.p99Ms < GOAL_LAUNCH_P99_MS } : null,
    };
  });
  const notes = [
    `The broker, its gRPC server, every simulated client and the simulated Secure Processor run in this one Node process (one JS thread) on a ${cores}-core machine; PGlite also runs on that thread, a PostgreSQL server in its own processes. Client-side work (protobuf, SP-side ECDH in LAUNCH_START, LAUNCH_SECRET) competes with the broker for the same CPU, so these are lower bounds on a dedicated broker.`,
    `ECDH floor = node:crypto P-384 keygen+derive against the platform PDH, single-threaded, measured right before each database's cases; the faster of generateKeyPairSync + diffieHellman and createECDH.generateKeys + computeSecret. ÷ floor = case ops/s divided by that driver's floor (GetBundle does one such keygen+derive per call; a full launch two, the second in the simulated SP).`,
    'GetBundle: the same certificate chain each call (the broker caches the chain verdict); rate limit off (bundleRatePerSecond 0), maxPendingSessions 1e9.',
    'GetSecret: only the GetSecret calls are timed; their launches (GetBundle + LAUNCH_START/UPDATE/MEASURE) are prepared untimed in batches beforehand, first from the sessions the GetBundle case issued, and each response is checked by LAUNCH_SECRET afterwards. One 32-byte key under the tenant default policy.',
    'full launch: GetBundle + LAUNCH_START/UPDATE(64 KiB)/MEASURE + GetSecret + LAUNCH_SECRET/FINISH, the guest secret checked each time.',
    'One gRPC connection per client (no subchannel sharing). Closed loop: each client sends its next call as soon as the previous one returns, so mean latency ≈ clients ÷ ops/s (Little\'s law). p50/p99/max are single-call latencies; ops/s over the whole window.',
  ];
  if (opts.driverNote) notes.push(opts.driverNote);

  if (opts.json) {
    process.stdout.write(
      JSON.stringify(
        {
          benchmark: 'broker',
          machine,
          settings: { seconds: opts.seconds, warmupMs: opts.warmupMs, concurrency: opts.concurrency, cases: opts.cases, drivers: opts.drivers, pgliteDir: opts.pgliteDir, pgPool: PG_POOL, firmwareBytes: FIRMWARE.length, policy: POLICY },
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
  out.push('broker end-to-end benchmark (gRPC on loopback, broker in this process)');
  out.push(`cpu:  ${machine.cpu} (${cores} cores)   node: ${machine.node}   ${machine.platform}`);
  out.push(`date: ${machine.date}   ${opts.seconds} s per case after ${opts.warmupMs} ms warm-up`);
  for (const d of drivers) {
    out.push('');
    out.push(`${d.label}`);
    out.push(
      `ECDH P-384 keygen+derive floor: ${fmt(d.ecdhFloor.opsPerSec)} ops/s (${fmt(d.ecdhFloor.meanUs)} µs/op; ` +
        d.ecdhFloor.candidates.map((c) => `${c.name} ${fmt(c.opsPerSec)}/s`).join(', ') +
        ')',
    );
    out.push(
      table(
        ['case', 'clients', 'ops/s', 'p50 ms', 'p99 ms', 'max ms', '÷ floor'],
        d.results.map((r) => [r.name, String(r.concurrency), fmt(r.opsPerSec), fmt(r.p50Ms), fmt(r.p99Ms), fmt(r.maxMs), r.ratioToFloor.toFixed(2)]),
        new Set([1, 2, 3, 4, 5, 6]),
      ),
    );
  }
  out.push('');
  out.push('goals:');
  for (const g of goals) {
    const b = g.bundleRatio.byConcurrency.map((x) => `${x.concurrency}: ${x.ratio.toFixed(2)} ${x.met ? 'ok' : 'MISSED'}`).join(', ');
    out.push(`  ${g.driver.padEnd(6)} GetBundle ÷ floor ≥ ${GOAL_BUNDLE_RATIO.toFixed(2)} — ${b}`);
    out.push(
      `  ${g.driver.padEnd(6)} full launch p99 < ${GOAL_LAUNCH_P99_MS} ms at ${GOAL_LAUNCH_CLIENTS} clients — ` +
        (g.launchP99 ? `${fmt(g.launchP99.p99Ms)} ms ${g.launchP99.met ? 'ok' : 'MISSED'}` : 'not measured (add 16 to --concurrency)'),
    );
  }
  out.push('');
  for (const n of notes) out.push(`- ${n}`);
  out.push(`- setup: sev-sim platform ${fmt(simSetupMs / 1000)} s; ${drivers.map((d) => `${d.driver} ${fmt(d.setupMs / 1000)} s`).join(', ')}; whole run ${fmt(totalSeconds)} s.`);
  process.stdout.write(out.join('\n') + '\n');
}

/** Set on SIGINT: calls then fail because the database is being dropped, which is not worth reporting. */
let interrupted = false;

main().then(
  () => process.exit(0),
  (e: unknown) => {
    if (interrupted) return; // the SIGINT handler exits once the database is dropped
    process.stderr.write(`broker benchmark failed: ${(e as Error)?.stack ?? String(e)}\n`);
    process.exit(1);
  },
);
