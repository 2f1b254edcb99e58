/**
 * Start-up times of the compiled commands, as a user runs them, next to `node -e 0` measured in the same run (the
 * floor: no program can start faster on this machine), and the broker's time to "listening" on a fresh data
 * directory (its first start) and on an existing one (a restart).
 *
 *   npm run bench:startup [-- --runs N] [--json]
 *
 * Runs the built apps (apps/*\/dist: `npm ci` or `npm run build` first) through their bins in node_modules/.bin, as
 * `npx` would start them minus npm's own start-up. Each case runs N times, interleaved with the others so that a
 * burst of load on a shared machine hits all of them alike; medians are reported.
 * Goals (issue #13): every CLI ≤ 2.5 × node -e 0; the broker's first start ≤ 2 × its restart.
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';

const ROOT = resolve(__dirname, '../..');
const BIN = join(ROOT, 'node_modules/.bin');
const OVMF = 'apps/launchvm/examples/OVMF.fd';

const USAGE = `Usage: npm run bench:startup [-- --runs N] [--json]

  --runs N   runs per case (default 7 for the commands, ceil(N/2) for the broker)
  --json     print the figures as JSON`;

function cliRun(argv: string[]): number {
  const t0 = performance.now();
  const r = spawnSync(argv[0]!, argv.slice(1), { cwd: ROOT, stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, NODE_OPTIONS: '' } });
  const ms = performance.now() - t0;
  if (r.status !== 0) throw new Error(`${argv.join(' ')} exited ${r.status}: ${r.stderr}`);
  return ms;
}

/** Spawns the built broker and resolves with the ms until it logs "broker listening"; then stops it. */
function brokerRun(dataDir: string): Promise<number> {
  return new Promise((done, fail) => {
    const t0 = performance.now();
    const child = spawn(
      process.execPath,
      [
        '--max-semi-space-size=32',
        join(ROOT, 'apps/broker/dist/main.js'),
        '--data-dir',
        dataDir,
        '--listen',
        '127.0.0.1:0',
        '--admin-listen',
        '127.0.0.1:0',
        '--http-listen',
        '127.0.0.1:0',
      ],
      {
        cwd: ROOT,
        stdio: ['ignore', 'ignore', 'pipe'],
        env: Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('KB_') && k !== 'NODE_OPTIONS')),
      },
    );
    let ms: number | undefined;
    const log: string[] = [];
    createInterface({ input: child.stderr! }).on('line', (line) => {
      log.push(line);
      if (ms === undefined && line.includes('"broker listening"')) {
        ms = performance.now() - t0;
        child.kill('SIGTERM');
      }
    });
    child.on('exit', (code) => (ms === undefined ? fail(new Error(`the broker exited ${code} before listening:\n${log.join('\n')}`)) : done(ms)));
  });
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { runs: { type: 'string' }, json: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } } });
  if (values.help) return void process.stdout.write(USAGE + '\n');
  const runs = values.runs === undefined ? 7 : Number(values.runs);
  if (!Number.isInteger(runs) || runs < 1 || runs > 100) throw new Error('--runs must be an integer in 1..100');
  for (const f of ['apps/broker/dist/main.js', 'apps/kbctl/dist/main.mjs', 'apps/launchvm/dist/main.mjs', 'apps/broker/dist/assets/pgdata']) {
    if (!existsSync(join(ROOT, f))) throw new Error(`${f} is missing: build first (npm ci, or npm run build)`);
  }
  const cases: Record<string, string[]> = {
    'node -e 0': [process.execPath, '-e', '0'],
    'kbctl --help': [join(BIN, 'kbctl'), '--help'],
    [`kbctl measure --mode sev --ovmf ${OVMF}`]: [join(BIN, 'kbctl'), 'measure', '--mode', 'sev', '--ovmf', OVMF],
    'launchvm --help': [join(BIN, 'launchvm'), '--help'],
  };
  const times: Record<string, number[]> = Object.fromEntries(Object.keys(cases).map((k) => [k, []]));
  for (const argv of Object.values(cases)) cliRun(argv); // warm the file cache once
  for (let i = 0; i < runs; i++) for (const [k, argv] of Object.entries(cases)) times[k]!.push(cliRun(argv));

  const first: number[] = [];
  const restart: number[] = [];
  const brokerRuns = Math.ceil(runs / 2);
  for (let i = 0; i < brokerRuns; i++) {
    const dir = mkdtempSync(join(tmpdir(), 'kb-startup-'));
    try {
      first.push(await brokerRun(join(dir, 'data')));
      restart.push(await brokerRun(join(dir, 'data')));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }

  const floor = median(times['node -e 0']!);
  const rows = Object.entries(times).map(([k, t]) => ({ case: k, ms: median(t), ratio: median(t) / floor, goal: k === 'node -e 0' ? undefined : 2.5 }));
  const restartMs = median(restart);
  const firstMs = median(first);
  const result = {
    runs,
    node: process.version,
    commands: rows,
    broker: { firstStartMs: firstMs, restartMs, ratio: firstMs / restartMs, goal: 2, runs: brokerRuns },
  };
  if (values.json) return void process.stdout.write(JSON.stringify(result, null, 2) + '\n');
  const w = Math.max(...rows.map((r) => r.case.length), 40);
  const out = [`start-up, median of ${runs} runs (broker: ${brokerRuns}), node ${process.version}`, ''];
  for (const r of rows) {
    const verdict = r.goal === undefined ? '(floor)' : `${r.ratio.toFixed(2)} × floor, goal ≤ ${r.goal} ${r.ratio <= r.goal ? 'met' : 'NOT met'}`;
    out.push(`  ${r.case.padEnd(w)} ${r.ms.toFixed(0).padStart(6)} ms  ${verdict}`);
  }
  out.push(`  ${'broker to "listening", existing data dir'.padEnd(w)} ${restartMs.toFixed(0).padStart(6)} ms  (restart)`);
  const ok = firstMs / restartMs <= 2;
  out.push(
    `  ${'broker to "listening", fresh data dir'.padEnd(w)} ${firstMs.toFixed(0).padStart(6)} ms  ${(firstMs / restartMs).toFixed(2)} × restart, goal ≤ 2 ${ok ? 'met' : 'NOT met'}`,
  );
  process.stdout.write(out.join('\n') + '\n');
}

main().catch((e: Error) => {
  process.stderr.write(`bench:startup: ${e.message}\n`);
  process.exitCode = 1;
});
