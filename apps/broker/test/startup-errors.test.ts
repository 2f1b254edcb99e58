import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseConfig } from '../src/config';
import { listenAddressProblem } from '../src/listen-address';

/**
 * Start-up mistakes are reported at once, in the terms the user typed, before any database is opened: a bare port
 * as --listen, a port in use, a mistyped --admin-token-file. The broker runs as its own process (tsx on the sources).
 */
const ROOT = join(__dirname, '../../..');

function run(args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(join(ROOT, 'node_modules/.bin/tsx'), [join(ROOT, 'apps/broker/src/main.ts'), ...args], {
      cwd: ROOT,
      env: { ...Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('KB_'))), NODE_OPTIONS: '', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c));
    child.stderr.on('data', (c: Buffer) => (stderr += c));
    const kill = setTimeout(() => child.kill('SIGKILL'), 60_000);
    child.on('close', (code) => {
      clearTimeout(kill);
      resolve({ code, stdout, stderr });
    });
  });
}

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'kb-startup-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

describe('listen addresses', () => {
  it('HOST:PORT, [IPv6]:PORT, port 0 and unix: sockets pass; a bare port, a missing port or a port above 65535 do not', () => {
    for (const ok of ['127.0.0.1:44444', '0.0.0.0:0', 'localhost:1', '[::1]:44445', 'unix:/run/kb.sock']) expect(listenAddressProblem(ok)).toBeUndefined();
    expect(listenAddressProblem('44450')).toBe('expected HOST:PORT, for example 127.0.0.1:44450 (this machine only) or 0.0.0.0:44450 (every interface)');
    expect(listenAddressProblem('localhost')).toMatch(/^expected HOST:PORT/);
    expect(listenAddressProblem('127.0.0.1:70000')).toBe('port 70000 is out of range (1–65535)');
    expect(listenAddressProblem('unix:')).toMatch(/socket path/);
  });

  it('parseConfig refuses them, naming the flag and the value (KB_ADMIN_LISTEN too)', () => {
    expect(() => parseConfig(['--listen', '44450'], {})).toThrow('--listen "44450": expected HOST:PORT');
    expect(() => parseConfig([], { KB_ADMIN_LISTEN: '44445' })).toThrow('--admin-listen "44445": expected HOST:PORT');
  });

  it('kb-broker --listen 44450 exits 2 at once with that message, and creates nothing', async () => {
    const t0 = Date.now();
    const r = await run(['--listen', '44450', '--data-dir', join(dir, 'data')]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('kb-broker: --listen "44450": expected HOST:PORT, for example 127.0.0.1:44450');
    expect(r.stderr).not.toMatch(/0\.0\.173\.162|:443/);
    expect(existsSync(join(dir, 'data'))).toBe(false);
    expect(Date.now() - t0).toBeLessThan(20_000); // no database set-up before the answer (tsx start-up only)
  });
});

describe('a port in use', () => {
  let holder: Server;
  let port: number;
  beforeEach(async () => {
    holder = createServer();
    await new Promise<void>((r) => holder.listen(0, '127.0.0.1', r));
    port = (holder.address() as { port: number }).port;
  });
  afterEach(() => new Promise<void>((r) => holder.close(() => r())));

  it('is one JSON log line naming the address and the flag; no database, no token is created', async () => {
    const r = await run(['--listen', '127.0.0.1:0', '--admin-listen', `127.0.0.1:${port}`, '--http-listen', '127.0.0.1:0', '--data-dir', join(dir, 'data')]);
    expect(r.code).toBe(1);
    const lines = r.stderr.trim().split('\n');
    for (const l of lines) expect(() => JSON.parse(l)).not.toThrow(); // nothing but JSON on the log
    const errors = lines.map((l) => JSON.parse(l) as { level: string; error?: string }).filter((l) => l.level === 'error');
    expect(errors).toHaveLength(1);
    expect(errors[0]!.error).toBe(`cannot listen on 127.0.0.1:${port} (--admin-listen): the port is in use (another broker running?)`);
    expect(existsSync(join(dir, 'data', 'pgdata'))).toBe(false);
    expect(existsSync(join(dir, 'data', 'admin.token'))).toBe(false);
  });
});

describe('--admin-token-file', () => {
  it('a file named explicitly must exist: it is not generated (a mistyped path would otherwise get a new token)', async () => {
    const missing = join(dir, 'secrets', 'admin.tokn');
    const r = await run([
      '--listen',
      '127.0.0.1:0',
      '--admin-listen',
      '127.0.0.1:0',
      '--http-listen',
      '127.0.0.1:0',
      '--data-dir',
      join(dir, 'data'),
      '--admin-token-file',
      missing,
    ]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`cannot read the admin token file ${missing}: no such file`);
    expect(existsSync(missing)).toBe(false);
    expect(existsSync(join(dir, 'data', 'pgdata'))).toBe(false);
  });
});
