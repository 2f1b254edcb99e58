/** Process control: the benchmark's databases, the broker under test (in this process or its own), their clean-up. */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { credentials, Metadata } from '@grpc/grpc-js';
import { type BrokerConfig, parseConfig, type RunningBroker, silentLogger, startBroker } from '@kb/broker';
import { admin } from '@kb/grpc-api';
import { encodeRootFile, platformRoot, type SimulatedPlatform } from '@kb/sev-sim';
import { openStore, PGLITE_MEMORY, type Store } from '@kb/store';
import { Client as PgClient } from 'pg';
import {
  ADMIN_TOKEN,
  BROKER_NODE_FLAG,
  BROKER_START_TIMEOUT_MS,
  BROKER_STOP_TIMEOUT_MS,
  CALL_DEADLINE_MS,
  DIGEST,
  type Driver,
  MASTER_KEY,
  PG_POOL,
  ROOT,
  SECRET_ID,
  SECRET_VALUE,
} from './constants';
import { type Options } from './options';
import { cpuMsOf, processTree } from '../proc-stat';

export interface Database {
  label: string;
  /** In-process broker: opens the store. */
  open(): Promise<Store>;
  /** Broker process: the environment telling kb-broker where its database is (PGlite: none, it uses --data-dir). */
  brokerEnv: Record<string, string>;
  drop(): Promise<void>;
}

export async function adminQuery(url: string, sql: string): Promise<void> {
  const c = new PgClient({ connectionString: url });
  await c.connect();
  try {
    await c.query(sql);
  } finally {
    await c.end();
  }
}

/** `brokerDir`: the broker process's --data-dir (process mode), where PGlite then lives. */
export async function benchDatabase(driver: Driver, opts: Options, brokerDir: string | undefined): Promise<Database> {
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

export function brokerConfig(): BrokerConfig {
  const base = parseConfig(
    ['--listen', '127.0.0.1:0', '--admin-listen', '127.0.0.1:0', '--http-listen', '127.0.0.1:0', '--data-dir', path.join(os.tmpdir(), 'kb-bench-unused')],
    {},
  );
  if (base === 'help') throw new Error('unreachable');
  return { ...base, adminToken: ADMIN_TOKEN, bundleRatePerSecond: 0, maxPendingSessions: 1_000_000_000 };
}

/** Undo steps run once, last registered first (also from the SIGINT handler, concurrently with the run's own). */
export class Cleanups {
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
export interface BrokerTarget {
  address: string;
  /** host:port of the HTTP APIs (the attestation service) */
  httpAddress?: string;
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
export const DEFAULT_POLICY_DOC = { version: 1, allowedDigests: [DIGEST.toString('hex')] };

export async function startInProcess(db: Database, platform: SimulatedPlatform, cleanups: Cleanups): Promise<BrokerTarget> {
  const store = await db.open();
  cleanups.add(() => store.close());
  await store.putPolicy('default', DEFAULT_POLICY_DOC);
  await store.putSecret({ id: SECRET_ID, value: SECRET_VALUE });
  const broker: RunningBroker = await startBroker(brokerConfig(), { store, logger: silentLogger, extraRoots: [platformRoot(platform)] });
  cleanups.add(() => broker.close());
  return { address: broker.address, httpAddress: broker.httpAddress };
}

/** Start-up warnings a benchmark broker logs by design: the sev-sim root, and no policy until it is seeded. */
export const EXPECTED_WARNINGS = ['TRUSTING A NON-AMD ROOT', 'no tenant default policy'];

/**
 * kb-broker as its own process, as deployed: `tsx apps/broker/src/main.ts` (like apps/broker/test/support/process.ts)
 * with a fresh --data-dir, the sev-sim root as --trust-root, the tenant default policy and the secret put through the
 * admin API. Registers its SIGTERM (and, failing that, SIGKILL) with `cleanups` as soon as it is spawned.
 * `cpuProfDir`: run it under node's CPU profiler (tsx hands node flags before the script to the node it starts).
 */
export async function startProcess(
  db: Database,
  dir: string,
  platform: SimulatedPlatform,
  cleanups: Cleanups,
  cpuProfDir: string | undefined,
): Promise<BrokerTarget> {
  const rootFile = path.join(dir, 'root.cert');
  writeFileSync(rootFile, encodeRootFile(platform));
  const args = [
    BROKER_NODE_FLAG, // as `npm start` and the image run it
    ...(cpuProfDir !== undefined ? ['--cpu-prof', `--cpu-prof-dir=${cpuProfDir}`] : []),
    path.join(ROOT, 'apps/broker/src/main.ts'),
    '--listen', '127.0.0.1:0',
    '--admin-listen', '127.0.0.1:0', '--http-listen', '127.0.0.1:0',
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
  const command = ['tsx', ...args].map((a) => (path.relative(ROOT, a).startsWith('apps') ? path.relative(ROOT, a) : a)).join(' ');
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
  let listening: (addresses: { keybroker: string; admin: string; http?: string }) => void = () => undefined;
  const ready = new Promise<{ keybroker: string; admin: string; http?: string }>((resolve) => (listening = resolve));
  let partial = '';
  child.stderr!.on('data', (chunk: Buffer) => {
    partial += chunk.toString();
    const lines = partial.split('\n');
    partial = lines.pop()!;
    for (const line of lines) {
      if (line.trim() === '') continue;
      tail.push(line);
      if (tail.length > 50) tail.shift();
      let m: { msg?: string; level?: string; keybroker?: string; admin?: string; http?: string };
      try {
        m = JSON.parse(line) as typeof m;
      } catch {
        if (unexpectedLog.length < 20) unexpectedLog.push(line);
        continue;
      }
      if (m.msg === 'broker listening' && m.keybroker && m.admin) listening({ keybroker: m.keybroker, admin: m.admin, http: m.http ?? undefined });
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
    new Promise<never>(
      (_, reject) =>
        (timer = setTimeout(
          () => reject(new Error(`the broker process did not start in ${BROKER_START_TIMEOUT_MS / 1000} s:\n${proc.logTail()}`)),
          BROKER_START_TIMEOUT_MS,
        )),
    ),
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
  return { address: addresses.keybroker, httpAddress: addresses.http, proc };
}
