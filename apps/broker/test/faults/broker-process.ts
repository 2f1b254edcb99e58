import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { encodeRootFile } from '@kb/sev-sim';
import { ADMIN_TOKEN, MASTER_KEY, testPlatform } from '../support/broker';

const ROOT = join(__dirname, '../../../..');

/** One kb-broker process: node itself runs main.ts (node --import tsx), so its pid is the broker's and kill -9 hits it. */
export interface FaultBroker {
  child: ChildProcess;
  address: string;
  adminAddress: string;
  /** everything it logged so far (JSON lines) */
  log(): string;
  exited(): boolean;
  kill9(): Promise<void>;
  /** SIGTERM (a graceful stop: its audit queue is flushed), then the exit code */
  stop(): Promise<number | null>;
}

export interface BrokerSpec {
  /** PGlite data directory (kept across restarts), or a PostgreSQL URL */
  dataDir: string;
  databaseUrl?: string;
  requestTimeoutSeconds: number;
}

let rootFile: string | undefined;
function trustRootFile(): string {
  if (!rootFile) {
    rootFile = join(mkdtempSync(join(tmpdir(), 'kb-fault-root-')), 'root.cert');
    writeFileSync(rootFile, encodeRootFile(testPlatform()));
  }
  return rootFile;
}

/** Removes the trust-root file the brokers of this test file read (call once they have stopped). */
export function removeTrustRoot(): void {
  if (rootFile) rmSync(dirname(rootFile), { recursive: true, force: true });
  rootFile = undefined;
}

export function startFaultBroker(spec: BrokerSpec): Promise<FaultBroker> {
  const args = [
    '--listen',
    '127.0.0.1:0',
    '--admin-listen',
    '127.0.0.1:0',
    '--http-listen',
    '127.0.0.1:0',
    '--data-dir',
    spec.dataDir,
    '--trust-root',
    `sev-sim=${trustRootFile()}`,
    '--request-timeout',
    String(spec.requestTimeoutSeconds),
    '--bundle-rate',
    '0',
    '--log-level',
    'info',
  ];
  const env: NodeJS.ProcessEnv = { ...process.env, NODE_OPTIONS: '', KB_MASTER_KEY: MASTER_KEY.toString('base64'), KB_ADMIN_TOKEN: ADMIN_TOKEN };
  if (spec.databaseUrl) env.KB_DATABASE_URL = spec.databaseUrl;
  else delete env.KB_DATABASE_URL;
  const child = spawn(process.execPath, ['--import', 'tsx', join(ROOT, 'apps/broker/src/main.ts'), ...args], {
    cwd: ROOT,
    env,
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let log = '';
  let exited = false;
  const closed = new Promise<number | null>((done) => child.once('close', (code) => ((exited = true), done(code))));
  child.stderr!.on('data', (chunk: Buffer) => (log += chunk.toString()));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`broker did not start in time:\n${log}`)), 90_000);
    void closed.then((code) => reject(new Error(`broker exited with ${code}:\n${log}`)));
    const poll = setInterval(() => {
      const line = log.split('\n').find((l) => l.includes('"broker listening"'));
      if (!line) return;
      clearInterval(poll);
      clearTimeout(timer);
      const m = JSON.parse(line) as { keybroker: string; admin: string };
      resolve({
        child,
        address: m.keybroker,
        adminAddress: m.admin,
        log: () => log,
        exited: () => exited,
        async kill9() {
          if (!exited) child.kill('SIGKILL');
          await closed;
        },
        async stop() {
          if (!exited) child.kill('SIGTERM');
          return closed;
        },
      });
    }, 50);
  });
}
