/** A real broker process (tsx apps/broker/src/main.ts) on a PostgreSQL database, trusting the simulated platform. */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { encodeRootFile, type SimulatedPlatform } from '@kb/sev-sim';

const ROOT = resolve(__dirname, '../../../../..');

export interface BrokerProcess {
  keybroker: string;
  admin: string;
  log: string[];
  stop(): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

export function startBrokerProcess(o: { dir: string; databaseUrl: string; masterKeyFile: string; platform: SimulatedPlatform }): Promise<BrokerProcess> {
  writeFileSync(join(o.dir, 'sim-root.bin'), encodeRootFile(o.platform));
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('KB_')));
  const args = ['apps/broker/src/main.ts', '--database-url', o.databaseUrl, '--master-key-file', o.masterKeyFile, '--data-dir', join(o.dir, 'broker-data')];
  args.push('--listen', '127.0.0.1:0', '--admin-listen', '127.0.0.1:0', '--http-listen', '127.0.0.1:0', '--trust-root', `sim=${join(o.dir, 'sim-root.bin')}`);
  const child: ChildProcessWithoutNullStreams = spawn(join(ROOT, 'node_modules/.bin/tsx'), args, { cwd: ROOT, env, stdio: ['pipe', 'pipe', 'pipe'] });
  const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((done) => child.once('exit', (code, signal) => done({ code, signal })));
  child.stdout.resume();
  const log: string[] = [];
  return new Promise((ready, fail) => {
    const timer = setTimeout(() => fail(new Error(`the broker did not start within 90 s:\n${log.join('\n')}`)), 90_000);
    void exit.then(({ code, signal }) => {
      clearTimeout(timer);
      fail(new Error(`the broker exited (${code ?? signal}) before listening:\n${log.join('\n')}`));
    });
    createInterface({ input: child.stderr }).on('line', (line) => {
      log.push(line);
      let entry: { msg?: string; admin?: string; keybroker?: string };
      try {
        entry = JSON.parse(line);
      } catch {
        return;
      }
      if (entry.msg === 'broker listening') {
        clearTimeout(timer);
        ready({
          keybroker: entry.keybroker!,
          admin: entry.admin!,
          log,
          async stop() {
            if (child.exitCode === null && child.signalCode === null) {
              child.kill('SIGTERM');
              const killer = setTimeout(() => child.kill('SIGKILL'), 20_000);
              const r = await exit;
              clearTimeout(killer);
              return r;
            }
            return exit;
          },
        });
      }
    });
  });
}
