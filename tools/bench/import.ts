/**
 * Import speed of `kbctl import simple-kbs` (issue #14): a simple-kbs SQLite database with N secrets (default 100,000,
 * plus a keyset naming 1,000 of them), imported by the kbctl CLI as a user runs it (its own process: read with sql.js,
 * mapped, sealed, written in one transaction), then imported again (the no-op re-run, which unseals and compares
 * every row). The floor, measured in the same run on the same kind of database: one transaction inserting N rows of
 * the same size (id + value bytes) with the same chunking and nothing else — no source, no sealing, no comparisons.
 *
 *   npm run bench:import -- [--secrets N] [--driver pglite|pg] [--json]
 *
 * --driver pg uses KB_BENCH_DATABASE_URL or KB_TEST_DATABASE_URL (a fresh database is created and dropped).
 */
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { PGlite } from '@electric-sql/pglite';
import { Client as PgClient } from 'pg';
import initSqlJs from 'sql.js';
import { openStore, parseMasterKey } from '@kb/store';

const ROOT = path.resolve(__dirname, '../..');
const HELP = `Usage: npm run bench:import -- [--secrets N] [--driver pglite|pg] [--json]

  --secrets N        secrets in the simple-kbs database (default 100000)
  --driver D         the broker's database: pglite (on disk, default) or pg (KB_BENCH_DATABASE_URL or KB_TEST_DATABASE_URL)
  --json             one JSON line instead of the table
`;

const { values } = parseArgs({
  options: { secrets: { type: 'string' }, driver: { type: 'string' }, json: { type: 'boolean' }, help: { type: 'boolean' } },
});
if (values.help) {
  process.stdout.write(HELP);
  process.exit(0);
}
const N = Number(values.secrets ?? 100_000);
const driver = values.driver ?? 'pglite';
if (!Number.isInteger(N) || N < 1) throw new Error('--secrets must be a positive integer');
if (driver !== 'pglite' && driver !== 'pg') throw new Error('--driver must be pglite or pg');

const CHUNK = 1000;

async function makeSource(file: string): Promise<void> {
  const SQL = await initSqlJs();
  const db = new SQL.Database();
  db.run(
    `CREATE TABLE policy (id INTEGER PRIMARY KEY AUTOINCREMENT, allowed_digests longtext, allowed_policies longtext, min_fw_api_major int, min_fw_api_minor int, allowed_build_ids longtext, create_date datetime, delete_date datetime, valid tinyint(1))`,
  );
  db.run(`CREATE TABLE secrets (id INTEGER PRIMARY KEY AUTOINCREMENT, secret_id varchar(1024), secret varchar(1024), polid int, UNIQUE(secret_id))`);
  db.run(`CREATE TABLE keysets (id INTEGER PRIMARY KEY AUTOINCREMENT, keysetid varchar(50) NOT NULL, kskeys longtext, polid int, UNIQUE(keysetid))`);
  db.run(`CREATE TABLE report_keypair (id INTEGER PRIMARY KEY AUTOINCREMENT, key_id varchar(1024), keypair varchar(1024), polid int, UNIQUE(key_id))`);
  db.run(
    `CREATE TABLE resources (id INTEGER PRIMARY KEY AUTOINCREMENT, resource_id varchar(1024), resource_type varchar(1024), resource_path varchar(1024), polid int, UNIQUE(resource_id))`,
  );
  db.run(
    `CREATE TABLE conn_bundle (id varchar(512) NOT NULL PRIMARY KEY, sev_version int, policy int, fw_api_major int, fw_api_minor int, fw_build_id int, launch_description varchar(512), fw_digest varchar(512), symkey varchar(512), create_date datetime, delete_date datetime)`,
  );
  db.run(`INSERT INTO policy VALUES (1, '[]', '[1, 3, 5, 7]', 0, 17, '[]', NULL, NULL, 1)`);
  db.run('BEGIN');
  const stmt = db.prepare('INSERT INTO secrets (secret_id, secret, polid) VALUES (?, ?, ?)');
  for (let i = 0; i < N; i++) stmt.run([`default/key/k${i}`, randomBytes(32).toString('base64'), i % 2 === 0 ? 1 : null]);
  stmt.free();
  db.run('COMMIT');
  db.run('INSERT INTO keysets (keysetid, kskeys, polid) VALUES (?, ?, 1)', [
    'KEYSET-1',
    JSON.stringify(Array.from({ length: Math.min(N, 1000) }, (_, i) => `default/key/k${i}`)),
  ]);
  writeFileSync(file, Buffer.from(db.export()));
  db.close();
}

interface Target {
  args: string[];
  /** the floor: N rows inserted in one transaction, CHUNK per statement; returns ms */
  floor(): Promise<number>;
  cleanup(): Promise<void>;
}

async function target(work: string): Promise<Target> {
  const rows = Array.from({ length: N }, (_, i) => ({ id: `default/key/k${i}`, value: randomBytes(61) })); // 61 = sealed 32-byte value
  const insertAll = async (query: (sql: string, params: unknown[]) => Promise<unknown>) => {
    await query(
      'CREATE TABLE floor_items (id text PRIMARY KEY, v bytea NOT NULL, p text, created_at timestamptz NOT NULL, updated_at timestamptz NOT NULL)',
      [],
    );
    const t0 = performance.now();
    await query('BEGIN', []);
    for (let i = 0; i < rows.length; i += CHUNK) {
      const chunk = rows.slice(i, i + CHUNK);
      const params: unknown[] = [];
      const marks = chunk.map((r, j) => {
        params.push(r.id, r.value);
        return `($${2 * j + 1}, $${2 * j + 2}, NULL, now(), now())`;
      });
      await query(`INSERT INTO floor_items VALUES ${marks.join(', ')}`, params);
    }
    await query('COMMIT', []);
    return performance.now() - t0;
  };
  if (driver === 'pglite') {
    const dataDir = path.join(work, 'kb-data');
    // created (initdb, migrations) before the timed runs: a broker's first start does that, not the import
    const keyFile = path.join(work, 'master.key');
    writeFileSync(keyFile, randomBytes(32).toString('base64'));
    await (await openStore({ driver: 'pglite', dataDir, masterKey: parseMasterKey(readFileSync(keyFile, 'utf8')) })).close();
    return {
      args: ['--data-dir', dataDir, '--master-key-file', keyFile],
      async floor() {
        const pg = await PGlite.create(path.join(work, 'floor-pgdata'));
        try {
          return await insertAll((sql, params) => pg.query(sql, params));
        } finally {
          await pg.close();
        }
      },
      cleanup: async () => undefined,
    };
  }
  const base = process.env.KB_BENCH_DATABASE_URL ?? process.env.KB_TEST_DATABASE_URL;
  if (!base) throw new Error('--driver pg needs KB_BENCH_DATABASE_URL or KB_TEST_DATABASE_URL');
  const name = `kb_bench_import_${randomBytes(4).toString('hex')}`;
  const adminQuery = async (sql: string) => {
    const c = new PgClient({ connectionString: base });
    await c.connect();
    await c.query(sql).finally(() => c.end());
  };
  await adminQuery(`CREATE DATABASE "${name}"`);
  await adminQuery(`CREATE DATABASE "${name}_floor"`);
  const url = (db: string) => {
    const u = new URL(base);
    u.pathname = `/${db}`;
    return u.toString();
  };
  const keyFile = path.join(work, 'master.key');
  writeFileSync(keyFile, randomBytes(32).toString('base64'));
  await (await openStore({ driver: 'pg', url: url(name), masterKey: parseMasterKey(readFileSync(keyFile, 'utf8')) })).close();
  return {
    args: ['--database-url', url(name), '--master-key-file', keyFile],
    async floor() {
      const c = new PgClient({ connectionString: url(`${name}_floor`) });
      await c.connect();
      try {
        return await insertAll((sql, params) => c.query(sql, params));
      } finally {
        await c.end();
      }
    },
    async cleanup() {
      await adminQuery(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
      await adminQuery(`DROP DATABASE IF EXISTS "${name}_floor" WITH (FORCE)`);
    },
  };
}

/** The whole CLI run (process start included) and the import's own time as its summary line reports it. */
function kbctlImport(work: string, args: string[]): { ms: number; ownMs: number; readMs: number; writeMs: number; out: string; err: string } {
  const t0 = performance.now();
  const r = spawnSync(path.join(ROOT, 'node_modules/.bin/tsx'), [path.join(ROOT, 'apps/kbctl/src/main.ts'), 'import', 'simple-kbs', ...args], {
    cwd: work,
    encoding: 'utf8',
    env: Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('KB_') && !k.startsWith('KBS_'))),
    maxBuffer: 64 * 1024 * 1024,
  });
  const ms = performance.now() - t0;
  if (r.status !== 0) throw new Error(`kbctl import failed (${r.status}):\n${r.stdout}\n${r.stderr}`);
  const own = / — ([\d.]+) s \(read ([\d.]+) s, open ([\d.]+) s, write ([\d.]+) s\)$/m.exec(r.stdout);
  if (!own) throw new Error(`no timing in the summary:\n${r.stdout}`);
  return { ms, ownMs: Number(own[1]) * 1000, readMs: Number(own[2]) * 1000, writeMs: Number(own[4]) * 1000, out: r.stdout, err: r.stderr };
}

async function main(): Promise<void> {
  const work = mkdtempSync(path.join(os.tmpdir(), 'kb-bench-import-'));
  const t = await target(work);
  try {
    writeFileSync(
      path.join(work, 'default_policy.json'),
      JSON.stringify({ allowed_digests: [], allowed_policies: [], min_fw_api_major: 0, min_fw_api_minor: 0, allowed_build_ids: [] }),
    );
    const source = path.join(work, 'simple-kbs.db');
    await makeSource(source);
    const floorMs = await t.floor();
    const first = kbctlImport(work, [`sqlite://${source}`, ...t.args]);
    if (!new RegExp(`imported \\d+ policies, ${N} secrets, 1 keysets`).test(first.out)) throw new Error(`unexpected summary:\n${first.out}`);
    const again = kbctlImport(work, [`sqlite://${source}`, ...t.args]);
    if (!/imported 0 policies, 0 secrets, 0 keysets/.test(again.out)) throw new Error(`re-import was not a no-op:\n${again.out}`);
    const rate = (ms: number) => N / (ms / 1000);
    const result = {
      driver,
      secrets: N,
      floorInsertPerS: Math.round(rate(floorMs)),
      importPerS: Math.round(rate(first.ownMs)),
      importWritePerS: Math.round(rate(first.writeMs)),
      importReadSeconds: +(first.readMs / 1000).toFixed(1),
      importWriteSeconds: +(first.writeMs / 1000).toFixed(1),
      importWriteVsFloor: +(rate(first.writeMs) / rate(floorMs)).toFixed(2),
      reimportPerS: Math.round(rate(again.ownMs)),
      importWholeCliPerS: Math.round(rate(first.ms)),
      importSeconds: +(first.ownMs / 1000).toFixed(1),
      importWholeCliSeconds: +(first.ms / 1000).toFixed(1),
      reimportSeconds: +(again.ownMs / 1000).toFixed(1),
      importVsFloor: +(rate(first.ownMs) / rate(floorMs)).toFixed(2),
      reimportVsFloor: +(rate(again.ownMs) / rate(floorMs)).toFixed(2),
      cpus: os.cpus().length,
    };
    if (values.json) {
      process.stdout.write(`${JSON.stringify(result)}\n`);
      return;
    }
    process.stdout.write(
      [
        `kbctl import simple-kbs: ${N} secrets from SQLite into ${driver} (${os.cpus().length} CPUs; the import's own time as its summary reports it)`,
        `  floor: bare INSERT of ${N} rows in one transaction   ${result.floorInsertPerS} rows/s`,
        `  import                                              ${result.importPerS} secrets/s  (${result.importSeconds} s, ${result.importVsFloor} × floor)`,
        `    of which the write transaction                    ${result.importWritePerS} secrets/s  (${result.importWriteSeconds} s, ${result.importWriteVsFloor} × floor; reading the source ${result.importReadSeconds} s)`,
        `  re-import (no-op: unseal and compare every row)     ${result.reimportPerS} secrets/s  (${result.reimportSeconds} s, ${result.reimportVsFloor} × floor)`,
        `  whole first CLI run, process start included         ${result.importWholeCliPerS} secrets/s  (${result.importWholeCliSeconds} s)`,
        '',
      ].join('\n'),
    );
  } finally {
    await t.cleanup();
    rmSync(work, { recursive: true, force: true });
  }
}

main().catch((e) => {
  process.stderr.write(`${(e as Error).stack ?? e}\n`);
  process.exit(1);
});
