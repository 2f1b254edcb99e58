import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';

const ROOT = join(__dirname, '../../../..');

export interface BrokerProcess {
  child: ChildProcess;
  address: string;
  adminAddress: string;
  /** the HTTP APIs' host:port, when --http-listen was given */
  httpAddress?: string;
  /** SIGTERM, then the exit code */
  stop(): Promise<number | null>;
}

/** Runs `kb-broker` as its own process (tsx), resolving once it logs where it listens. */
export function spawnBroker(args: string[], env: NodeJS.ProcessEnv = {}): Promise<BrokerProcess> {
  const child = spawn(join(ROOT, 'node_modules/.bin/tsx'), [join(ROOT, 'apps/broker/src/main.ts'), ...args], {
    cwd: ROOT,
    env: { ...process.env, ...env, NODE_OPTIONS: '' },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let log = '';
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`broker did not start in time:\n${log}`)), 60_000);
    const early = (code: number | null) => reject(new Error(`broker exited with ${code}:\n${log}`));
    child.on('exit', early);
    child.stderr!.on('data', (chunk: Buffer) => {
      log += chunk.toString();
      const complete = log.slice(0, log.lastIndexOf('\n') + 1);
      for (const line of complete.split('\n')) {
        if (!line.includes('"broker listening"')) continue;
        const m = JSON.parse(line) as { keybroker: string; admin: string; http?: string | null };
        clearTimeout(timer);
        child.off('exit', early);
        resolve({
          child,
          address: m.keybroker,
          adminAddress: m.admin,
          httpAddress: m.http ?? undefined,
          stop: () =>
            new Promise((done) => {
              if (child.exitCode !== null) return done(child.exitCode);
              child.once('close', (code) => done(code));
              child.kill('SIGTERM');
            }),
        });
        return;
      }
    });
  });
}
