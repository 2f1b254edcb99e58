import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { HELP } from '../src/config';

/**
 * The distribution, checked by reading and running what `npm ci` built (no Docker engine here): every bin is
 * compiled JavaScript that answers --help on plain node; offline kbctl commands load no gRPC code; the Dockerfile
 * and docker-compose.yml name files the build produces, run as a non-root user, and check health with kbctl.
 */
const ROOT = resolve(__dirname, '../../..');
const read = (f: string) => readFileSync(join(ROOT, f), 'utf8');
const APPS = [
  { dir: 'apps/broker', bin: 'kb-broker', banner: 'kb-broker — ' },
  { dir: 'apps/kbctl', bin: 'kbctl', banner: 'kbctl — ' },
  { dir: 'apps/launchvm', bin: 'launchvm', banner: 'launchvm — ' },
  { dir: 'libs/sev-host-sim', bin: 'sim-qemu', banner: 'Usage: sim-qemu' },
];

beforeAll(() => {
  for (const a of APPS) {
    const target = (JSON.parse(read(`${a.dir}/package.json`)) as { bin: Record<string, string> }).bin[a.bin]!;
    if (!existsSync(join(ROOT, a.dir, target))) throw new Error(`${a.dir}/${target} is missing: build first (npm ci, or npm run build)`);
  }
});

describe('bins', () => {
  it.each(APPS)('$bin: the package bin is compiled JS with a node shebang, and answers --help through node_modules/.bin', ({ dir, bin, banner }) => {
    const target = (JSON.parse(read(`${dir}/package.json`)) as { bin: Record<string, string> }).bin[bin]!;
    expect(target).toMatch(/^dist\/main\.m?js$/);
    expect(read(`${dir}/${target}`).split('\n')[0]).toMatch(/^#!\/usr\/bin\/env (-S )?node\b/);
    const r = spawnSync(join(ROOT, 'node_modules/.bin', bin), ['--help'], { cwd: ROOT, encoding: 'utf8', env: { ...process.env, NODE_OPTIONS: '' } });
    expect(r.status).toBe(0);
    expect(r.stdout + r.stderr).toContain(banner);
  });

  it('npm start runs the compiled broker with the larger young generation', () => {
    const pkg = JSON.parse(read('package.json')) as { scripts: Record<string, string> };
    expect(pkg.scripts.start).toBe('node --max-semi-space-size=32 apps/broker/dist/main.js');
    expect(read('apps/broker/dist/main.js').split('\n')[0]).toBe('#!/usr/bin/env -S node --max-semi-space-size=32');
  });

  it('the broker build carries what it reads at run time: ECDH worker, protos, migrations, prepared database, vendored protos', () => {
    for (const f of [
      'ecdh-worker.js',
      'assets/proto/keybroker.proto',
      'assets/proto/admin.proto',
      'assets/migrations/meta/_journal.json',
      'assets/pgdata/PG_VERSION',
      'vendor/grpc-health-check/proto/health/v1/health.proto',
      'vendor/@grpc/reflection/build/proto/grpc/reflection/v1/reflection.proto',
    ]) {
      expect(existsSync(join(ROOT, 'apps/broker/dist', f))).toBe(true);
    }
  });

  it('kbctl: the chunks its entry loads up front hold no gRPC code (offline commands never read it)', () => {
    const main = read('apps/kbctl/dist/main.mjs');
    const staticChunks = [...main.matchAll(/^import\s*(?:[^'"]*?from\s*)?"(\.\/chunks\/[^"]+)"/gm)].map((m) => m[1]!);
    const lazyChunks = [...main.matchAll(/import\("(\.\/chunks\/[^"]+)"\)/g)].map((m) => m[1]!);
    expect(lazyChunks.length).toBeGreaterThan(0); // the admin client and the health check
    const sources = (f: string) => (JSON.parse(read(`apps/kbctl/dist/${f}.map`)) as { sources: string[] }).sources;
    expect(sources('main.mjs').some((s) => s.includes('@grpc/'))).toBe(false);
    for (const c of staticChunks) expect(sources(c).filter((s) => s.includes('@grpc/'))).toEqual([]);
    const lazyGrpc = lazyChunks.flatMap((c) => [c, ...[...read(`apps/kbctl/dist/${c}`).matchAll(/from\s*"\.\/([^"]+)"/g)].map((m) => `./chunks/${m[1]}`)]);
    expect(lazyGrpc.some((c) => sources(c).some((s) => s.includes('@grpc/grpc-js')))).toBe(true); // it is there, lazily
  });
});

describe('Dockerfile', () => {
  const docker = read('Dockerfile');
  const stages = docker.split(/^FROM /m).slice(1);
  const runtime = stages[stages.length - 1]!;

  it('builds in one stage and runs in another, from compiled code and PGlite only', () => {
    expect(stages).toHaveLength(2);
    expect(stages[0]).toMatch(/ AS build\n/);
    expect(stages[0]).toMatch(/^RUN npm ci\b/m);
    expect(runtime).not.toMatch(/npm (ci|install)|tsx|COPY \. /);
    const copies = [...runtime.matchAll(/^COPY --from=build \/app\/(\S+) (\S+)$/gm)].map((m) => m[1]!);
    expect(copies).toEqual(['apps/broker/dist', 'apps/kbctl/dist', 'node_modules/@electric-sql/pglite']);
    for (const c of copies) expect(existsSync(join(ROOT, c))).toBe(true);
  });

  it('runs as a non-root user, the compiled broker, with a HEALTHCHECK by the built-in kbctl health', () => {
    expect(runtime).toMatch(/^USER node$/m);
    const entry = /^ENTRYPOINT (\[.*\])$/m.exec(runtime)![1]!;
    const argv = JSON.parse(entry) as string[];
    expect(argv.slice(0, 2)).toEqual(['node', '--max-semi-space-size=32']);
    expect(existsSync(join(ROOT, argv[2]!.replace(/^\/app\//, '')))).toBe(true);
    expect(runtime).toMatch(/^HEALTHCHECK .* CMD \["kbctl", "health"\]$/m);
    const links = [...runtime.matchAll(/ln -s \/app\/(\S+) \/usr\/local\/bin\/(\S+)/g)].map((m) => [m[2], m[1]]);
    expect(Object.fromEntries(links)).toEqual({ 'kb-broker': 'apps/broker/dist/main.js', kbctl: 'apps/kbctl/dist/main.mjs' });
    for (const [, f] of links) expect(existsSync(join(ROOT, f!))).toBe(true);
    expect(read('.dockerignore')).toMatch(/^\*\*\/dist$/m); // the build stage compiles afresh
  });
});

describe('docker-compose.yml', () => {
  const compose = read('docker-compose.yml');

  it('checks the broker with the image kbctl health on the guest listener', () => {
    expect(compose).toMatch(/test: \["CMD", "kbctl", "health", "--broker", "127\.0\.0\.1:44444"\]/);
    expect(compose).toMatch(/KB_LISTEN: 0\.0\.0\.0:44444/);
  });

  it('every KB_ variable it sets is one the broker reads', () => {
    const vars = [...compose.matchAll(/^\s+(KB_[A-Z_]+):/gm)].map((m) => m[1]!);
    expect(vars.length).toBeGreaterThan(3);
    for (const v of vars) expect(HELP).toContain(v);
  });

  it('the token paths its header gives kbctl are the secret it mounts', () => {
    expect(compose).toContain('KB_ADMIN_TOKEN_FILE: /run/secrets/kb_admin_token');
    expect(compose).toContain('kbctl --token-file /run/secrets/kb_admin_token');
    expect(compose).toMatch(/kb_admin_token:\n\s+file: \.\/secrets\/admin\.token/);
    expect(compose).toContain('kbctl --token-file secrets/admin.token');
  });
});
