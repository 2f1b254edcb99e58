import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

/**
 * The README runs as written: its blocks marked `<!-- doctest -->` run unchanged, in order, in one bash (as pasted
 * into one terminal), in a fresh copy of the repository, while the block marked `<!-- doctest: background -->`
 * (the broker) runs behind them. The copy links every top-level entry of this checkout except state the README
 * creates (.kb-data, ...), so the compiled apps (built by `npm ci`, as a user's clone is) are the ones run.
 * Only the ports differ, through the environment the commands read, so that the test never takes 44444/44445.
 */
const ROOT = resolve(__dirname, '../../..');
const README = readFileSync(join(ROOT, 'README.md'), 'utf8');

interface Block {
  kind: 'run' | 'background';
  line: number;
  script: string;
}

/** ```sh blocks preceded (on the line before) by a doctest marker. */
export function doctestBlocks(markdown: string): Block[] {
  const lines = markdown.split('\n');
  const blocks: Block[] = [];
  for (let i = 0; i < lines.length; i++) {
    const m = /^<!-- doctest(?::\s*(background))? -->$/.exec(lines[i]!.trim());
    if (!m) continue;
    if (lines[i + 1]?.trim() !== '```sh') throw new Error(`README.md:${i + 1}: a doctest marker must be followed by a \`\`\`sh block`);
    const end = lines.indexOf('```', i + 2);
    if (end < 0) throw new Error(`README.md:${i + 2}: unterminated block`);
    blocks.push({ kind: m[1] ? 'background' : 'run', line: i + 3, script: lines.slice(i + 2, end).join('\n') });
    i = end;
  }
  return blocks;
}

function freePort(): Promise<number> {
  return new Promise((done) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const p = (s.address() as { port: number }).port;
      s.close(() => done(p));
    });
  });
}

function bash(
  script: string,
  cwd: string,
  env: NodeJS.ProcessEnv,
  detached: boolean,
): { child: ChildProcess; output: () => string; done: Promise<number | null> } {
  // -e: a failing command fails the block, as the reader would notice; pipefail for the same reason in pipes
  const child = spawn('bash', ['-e', '-o', 'pipefail', '-c', script], { cwd, env, detached, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout!.on('data', (c: Buffer) => (out += c));
  child.stderr!.on('data', (c: Buffer) => (out += c));
  const done = new Promise<number | null>((r) => child.on('close', (code) => r(code)));
  return { child, output: () => out, done };
}

const blocks = doctestBlocks(README);

describe('README doctest blocks', () => {
  it('are there: one background block (the broker) and the first release after it', () => {
    expect(blocks.filter((b) => b.kind === 'background')).toHaveLength(1);
    expect(blocks.filter((b) => b.kind === 'run').length).toBeGreaterThanOrEqual(2);
    const all = blocks.map((b) => b.script).join('\n');
    for (const step of ['npm start', 'kbctl health --wait', 'kbctl measure', 'kbctl policy put', 'kbctl secret put', 'launchvm', 'kbctl audit'])
      expect(all).toContain(step);
  });

  it('a marker without a sh block is reported with its line', () => {
    expect(() => doctestBlocks('x\n<!-- doctest -->\n```\nls\n```\n')).toThrow('README.md:2: a doctest marker must be followed by a ```sh block');
  });
});

describe('the README, run as written against the compiled apps', () => {
  let work: string;
  let broker: ReturnType<typeof bash> | undefined;

  beforeAll(() => {
    for (const f of ['apps/broker/dist/main.js', 'apps/kbctl/dist/main.mjs', 'apps/launchvm/dist/main.mjs']) {
      if (!existsSync(join(ROOT, f))) throw new Error(`${f} is missing: the README test runs the compiled apps (npm ci, or npm run build)`);
    }
    work = mkdtempSync(join(tmpdir(), 'kb-readme-'));
    const state = new Set(['.kb-data', '.kb-sim', '.git', 'guest', 'default-policy.json']);
    for (const e of readdirSync(ROOT)) if (!state.has(e)) symlinkSync(join(ROOT, e), join(work, e));
  });

  afterAll(async () => {
    if (broker?.child.pid && broker.child.exitCode === null) {
      process.kill(-broker.child.pid, 'SIGTERM'); // the whole group: bash, npm and the broker under it
      await Promise.race([broker.done, new Promise((r) => setTimeout(r, 15_000).unref())]);
    }
    rmSync(work, { recursive: true, force: true });
  });

  it('releases the secret into the simulated guest and shows the release in the audit trail', async () => {
    const [guest, admin] = [await freePort(), await freePort()];
    const env: NodeJS.ProcessEnv = {
      ...Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('KB_') && !k.startsWith('npm_') && k !== 'NODE_OPTIONS')),
      KB_LISTEN: `127.0.0.1:${guest}`,
      KB_ADMIN_LISTEN: `127.0.0.1:${admin}`,
      KB_HTTP_LISTEN: '127.0.0.1:0',
      KB_BROKER_URL: `127.0.0.1:${guest}`,
      KB_ADMIN_URL: `127.0.0.1:${admin}`,
    };
    broker = bash(
      blocks
        .filter((b) => b.kind === 'background')
        .map((b) => b.script)
        .join('\n'),
      work,
      env,
      true,
    );
    const owner = bash(
      blocks
        .filter((b) => b.kind === 'run')
        .map((b) => b.script)
        .join('\n'),
      work,
      env,
      false,
    );
    const code = await owner.done;
    const out = owner.output();
    if (code !== 0) throw new Error(`the README blocks failed (exit ${code}):\n${out}\n--- broker ---\n${broker.output()}`);
    // what the guest's efi_secret file holds, printed by the README's `cat`
    expect(out).toContain('\nmy disk passphrase\n');
    expect(readFileSync(join(work, 'guest/sys/kernel/security/secrets/coco/736869e5-84f0-4973-92ec-06879ce3da0b'), 'utf8')).toBe('my disk passphrase');
    expect(out).toMatch(/\tsecret\treleased\t[0-9a-f-]{36}\tref=\w+\t.*"launchvm example-guest"/);
    expect(out).toMatch(/\tbundle\tissued\t/);
    expect(out).toContain("launchvm: launched 'example-guest'");
    // the broker of the background block: the compiled one, from a prepared database, trusting only what it was told
    const log = broker.output();
    expect(log).toContain('apps/broker/dist/main.js');
    expect(log).toContain('"msg":"broker listening"');
    expect(log).toContain('TRUSTING A NON-AMD ROOT');
  }, 240_000);
});
