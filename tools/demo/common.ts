/**
 * What both demos share (tools/demo/demo.ts, tools/demo/libvirt.ts): a temp work dir, child processes that are always
 * stopped, checked steps counted as failures, TypeScript entry points run with tsx with their output echoed, and a
 * broker on its embedded database trusting the simulated platform's root.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';

export const ROOT = resolve(__dirname, '../..');
const TSX = join(ROOT, 'node_modules/.bin/tsx');
// The children run in the temp dir; the repo's tsconfig still maps @kb/* to the workspace sources.
const CHILD_ENV = { ...process.env, NODE_OPTIONS: '', TSX_TSCONFIG_PATH: join(ROOT, 'tsconfig.json') };

export interface Demo {
  work: string;
  say(s?: string): void;
  heading(s: string): void;
  check(ok: boolean, what: string): void;
  run(script: string, args: string[]): Promise<{ code: number | null; out: string }>;
  startBroker(rootFile: string, extraArgs?: string[]): Promise<RunningBroker>;
}

export interface RunningBroker {
  child: ChildProcess;
  keybroker: string;
  admin: string;
  tokenFile: string;
  stop(): Promise<void>;
}

/** `--help` / stray arguments, then the demo with cleanup and the pass/fail line; exits 0 only when every check held. */
export function runDemo(usage: string, prefix: string, main: (d: Demo) => Promise<void>): void {
  const args = process.argv.slice(2);
  if (args.length) {
    const help = args.includes('--help') || args.includes('-h');
    (help ? process.stdout : process.stderr).write(usage);
    process.exit(help ? 0 : 2);
  }
  const work = mkdtempSync(join(tmpdir(), prefix));
  const children = new Set<ChildProcess>();
  let failures = 0;
  const t0 = Date.now();
  const say = (s = '') => process.stdout.write(s + '\n');

  const demo: Demo = {
    work,
    say,
    heading: (s) => say(`\n=== ${s} (${((Date.now() - t0) / 1000).toFixed(1)} s)`),
    check(ok, what) {
      say(`${ok ? '  ok   ' : '  FAIL '} ${what}`);
      if (!ok) failures++;
    },
    run(script, args) {
      return new Promise((done, fail) => {
        const child = spawn(TSX, [join(ROOT, script), ...args], { cwd: work, env: CHILD_ENV, stdio: ['ignore', 'pipe', 'pipe'] });
        children.add(child);
        let out = '';
        for (const stream of [child.stdout!, child.stderr!]) {
          createInterface({ input: stream }).on('line', (line) => {
            out += line + '\n';
            say(`    ${line}`);
          });
        }
        child.once('error', fail);
        child.once('close', (code) => {
          children.delete(child);
          done({ code, out });
        });
      });
    },
    startBroker(rootFile, extraArgs = []) {
      const dataDir = join(work, 'broker-data');
      const env = Object.fromEntries(Object.entries(CHILD_ENV).filter(([k]) => !k.startsWith('KB_')));
      const child = spawn(
        TSX,
        // --http-listen 127.0.0.1:0 unless extraArgs names its own (the last value of an option wins)
        [
          join(ROOT, 'apps/broker/src/main.ts'),
          '--data-dir',
          dataDir,
          '--listen',
          '127.0.0.1:0',
          '--admin-listen',
          '127.0.0.1:0',
          '--http-listen',
          '127.0.0.1:0',
          '--trust-root',
          `sev-sim=${rootFile}`,
          ...extraArgs,
        ],
        { cwd: work, env, stdio: ['ignore', 'ignore', 'pipe'] },
      );
      children.add(child);
      child.once('close', () => children.delete(child));
      return new Promise((ready, fail) => {
        const log: string[] = [];
        const timer = setTimeout(() => fail(new Error(`the broker did not start in 60 s:\n${log.join('\n')}`)), 60_000);
        child.once('exit', (code) => fail(new Error(`the broker exited (${code}):\n${log.join('\n')}`)));
        createInterface({ input: child.stderr! }).on('line', (line) => {
          log.push(line);
          let entry: { msg?: string; keybroker?: string; admin?: string; level?: string };
          try {
            entry = JSON.parse(line);
          } catch {
            return;
          }
          if (entry.level === 'warn' || entry.level === 'error') say(`    broker ${entry.level}: ${entry.msg}`);
          if (entry.msg === 'broker listening') {
            clearTimeout(timer);
            ready({
              child,
              keybroker: entry.keybroker!,
              admin: entry.admin!,
              tokenFile: join(dataDir, 'admin.token'),
              stop: async () => {
                child.kill('SIGTERM');
                await new Promise((r) => child.once('close', r));
              },
            });
          }
        });
      });
    },
  };

  async function cleanup(): Promise<void> {
    for (const c of children) c.kill('SIGTERM');
    const deadline = Date.now() + 10_000;
    while (children.size && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    for (const c of children) c.kill('SIGKILL');
    rmSync(work, { recursive: true, force: true });
  }

  process.once('SIGINT', () => void cleanup().then(() => process.exit(130)));
  main(demo)
    .catch((e: unknown) => {
      failures++;
      say(`\ndemo error: ${(e as Error).message}`);
    })
    .then(cleanup)
    .then(() => {
      say(`\n${failures === 0 ? 'demo passed' : `demo FAILED (${failures} check${failures === 1 ? '' : 's'})`} in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
      process.exit(failures === 0 ? 0 : 1);
    });
}
