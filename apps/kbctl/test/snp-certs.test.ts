import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { parseSnpReport } from '@kb/sev';
import { runCli } from '../src/cli';
import { tree } from '../src/main';

/**
 * kbctl snp import-certs / list-certs end to end: a real broker process (tsx apps/broker/src/main.ts, PGlite in a
 * temp data dir) and kbctl's runCli in-process over the real admin API. The files are AMD's: trustee's offline-store
 * tree for a Milan VCEK and the Milan ASK/ARK/ASVK bundle.
 */
const ROOT = resolve(__dirname, '../../..');
const SNP = join(ROOT, '../shared/vectors/kbs-protocol/upstream/snp');
let work: string;
let broker: ChildProcessWithoutNullStreams;
let adminUrl = '';
const log: string[] = [];

async function kb(args: string[]) {
  const out: string[] = [];
  const err: string[] = [];
  const code = await runCli('kbctl', 'kbctl — test', tree, [...args, '--admin-url', adminUrl, '--token-file', join(work, 'data/admin.token')], {
    out: (s) => out.push(s),
    err: (s) => err.push(s),
    env: {},
    cwd: work,
  });
  return { code, out: out.join('\n'), err: err.join('\n') };
}

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), 'kbctl-snp-'));
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('KB_')));
  broker = spawn(
    join(ROOT, 'node_modules/.bin/tsx'),
    ['apps/broker/src/main.ts', '--data-dir', join(work, 'data'), '--listen', '127.0.0.1:0', '--admin-listen', '127.0.0.1:0'],
    { cwd: ROOT, env, stdio: ['pipe', 'pipe', 'pipe'] },
  );
  broker.stdout.resume();
  await new Promise<void>((ready, fail) => {
    const timer = setTimeout(() => fail(new Error(`the broker did not start:\n${log.join('\n')}`)), 90_000);
    broker.once('exit', (c) => fail(new Error(`the broker exited (${c}):\n${log.join('\n')}`)));
    createInterface({ input: broker.stderr }).on('line', (line) => {
      log.push(line);
      try {
        const e = JSON.parse(line) as { msg?: string; admin?: string };
        if (e.msg === 'broker listening') {
          clearTimeout(timer);
          adminUrl = e.admin!;
          ready();
        }
      } catch {
        // not a log line
      }
    });
  });
}, 120_000);

afterAll(async () => {
  if (broker && broker.exitCode === null) {
    const done = new Promise((r) => broker.once('exit', r));
    broker.kill('SIGTERM');
    await done;
  }
  rmSync(work, { recursive: true, force: true });
});

describe('kbctl snp import-certs', () => {
  it('imports a directory (trustee layout) and a bundle; list-certs shows the layout keys', async () => {
    const report = parseSnpReport(readFileSync(join(SNP, 'test-report-milan-v2.bin')));
    const hw = report.chipId.toString('hex');
    mkdirSync(join(work, 'store/vcek', hw), { recursive: true });
    writeFileSync(join(work, 'store/vcek', hw, 'vcek.der'), readFileSync(join(SNP, 'test-vcek-milan.der')));
    writeFileSync(join(work, 'milan.pem'), readFileSync(join(SNP, 'amd/milan_ask_ark_asvk.pem')));
    const r = await kb(['snp', 'import-certs', 'store', 'milan.pem']);
    expect(r.code).toBe(0);
    expect(r.out).toContain(`vcek\tMilan\tvcek/Milan/${hw}/bl03_tee00_snp08_ucode115`);
    expect(r.out).toContain('4 object(s) imported from 2 file(s)');
    const l = await kb(['snp', 'list-certs']);
    expect(l.out.split('\n').map((x) => x.split('\t').slice(0, 4).join(' '))).toEqual([
      'ark/Milan ark Milan import',
      'ask/Milan ask Milan import',
      'asvk/Milan asvk Milan import',
      `vcek/Milan/${hw}/bl03_tee00_snp08_ucode115 vcek Milan import`,
    ]);
  });

  it('a VLEK or a non-certificate is refused with its file name, exit 1, and nothing is written', async () => {
    writeFileSync(join(work, 'vlek.der'), readFileSync(join(SNP, 'test-vlek-milan.der')));
    writeFileSync(join(work, 'junk.txt'), 'hello');
    const before = (await kb(['snp', 'list-certs'])).out;
    const r = await kb(['snp', 'import-certs', 'vlek.der']);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/vlek\.der: a VLEK/);
    expect((await kb(['snp', 'import-certs', 'junk.txt'])).err).toMatch(/junk\.txt: neither PEM nor DER/);
    expect((await kb(['snp', 'import-certs', 'missing-dir'])).code).toBe(1);
    expect((await kb(['snp', 'import-certs'])).code).toBe(2);
    expect((await kb(['snp', 'list-certs'])).out).toBe(before);
  });
});
