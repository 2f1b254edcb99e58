/**
 * Real simple-kbs databases for the import tests: an SQLite file (sql.js), a fresh PostgreSQL database on the test
 * server (KB_TEST_DATABASE_URL), and a MariaDB server started here on a private socket in a temp directory (Debian's
 * mariadb-server; .ci/run installs it). Each is created with simple-kbs's schema and the given rows.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createConnection } from 'mysql2/promise';
import { Client } from 'pg';
import initSqlJs from 'sql.js';
import { ddl, inserts, type Rows } from './schema';

export async function sqliteDatabase(file: string, rows: Rows): Promise<string> {
  const SQL = await initSqlJs();
  const db = new SQL.Database();
  for (const s of ddl('sqlite')) db.run(s);
  for (const { sql, params } of inserts('sqlite', rows))
    db.run(
      sql,
      params.map((p) => (p instanceof Date ? p.toISOString().replace('T', ' ').slice(0, 19) : (p as never))),
    );
  writeFileSync(file, Buffer.from(db.export()));
  db.close();
  return file;
}

export async function adminQuery(url: string, sql: string): Promise<void> {
  const c = new Client({ connectionString: url });
  await c.connect();
  try {
    await c.query(sql);
  } finally {
    await c.end();
  }
}

/** A fresh database on the test PostgreSQL server; `drop` removes it. */
export async function freshPostgresDatabase(prefix: string): Promise<{ url: string; drop(): Promise<void> }> {
  const base = process.env.KB_TEST_DATABASE_URL;
  if (!base) throw new Error('the import tests need KB_TEST_DATABASE_URL (npm test starts a throwaway server when Debian postgresql is installed)');
  const name = `${prefix}_${randomBytes(5).toString('hex')}`;
  await adminQuery(base, `CREATE DATABASE "${name}"`);
  const url = new URL(base);
  url.pathname = `/${name}`;
  return { url: url.toString(), drop: () => adminQuery(base, `DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`) };
}

export async function postgresDatabase(rows: Rows): Promise<{ url: string; drop(): Promise<void> }> {
  const db = await freshPostgresDatabase('kbs_src');
  const c = new Client({ connectionString: db.url });
  await c.connect();
  try {
    for (const s of ddl('postgres')) await c.query(s);
    for (const { sql, params } of inserts('postgres', rows)) await c.query(sql, params);
  } finally {
    await c.end();
  }
  return db;
}

export interface MariaDb {
  socket: string;
  /** mysql://kbsuser:kbspassword@localhost/DB?socket=... (simple-kbs compose's user) */
  url(database: string): string;
  createDatabase(name: string, rows: Rows): Promise<void>;
  stop(): Promise<void>;
}

/** Starts mariadbd on a unix socket in a temp directory (no TCP port), with simple-kbs compose's user. */
export async function startMariaDb(): Promise<MariaDb> {
  for (const bin of ['/usr/bin/mariadb-install-db', '/usr/sbin/mariadbd']) {
    if (!existsSync(bin)) throw new Error(`${bin} is missing: apt-get install mariadb-server (.ci/run does)`);
  }
  const dir = mkdtempSync(join(tmpdir(), 'kb-mariadb-'));
  const data = join(dir, 'data');
  mkdirSync(data);
  const socket = join(dir, 'mysqld.sock');
  const user = process.getuid?.() === 0 ? ['--user=root'] : [];
  const init = spawnSync(
    '/usr/bin/mariadb-install-db',
    ['--no-defaults', `--datadir=${data}`, ...user, '--auth-root-authentication-method=normal', '--skip-test-db'],
    { encoding: 'utf8' },
  );
  if (init.status !== 0) throw new Error(`mariadb-install-db failed: ${init.stderr}`);
  const server: ChildProcess = spawn(
    '/usr/sbin/mariadbd',
    [
      '--no-defaults',
      `--datadir=${data}`,
      `--socket=${socket}`,
      '--skip-networking',
      `--pid-file=${join(dir, 'pid')}`,
      `--log-error=${join(dir, 'err.log')}`,
      '--innodb-buffer-pool-size=16M',
      ...user,
    ],
    { stdio: 'ignore' },
  );
  const exited = new Promise<void>((done) => server.once('exit', () => done()));
  const root = () => createConnection({ socketPath: socket, user: 'root', password: '', multipleStatements: true });
  const deadline = Date.now() + 60_000;
  for (;;) {
    try {
      const c = await root();
      await c.query("CREATE USER 'kbsuser'@'localhost' IDENTIFIED BY 'kbspassword'");
      await c.end();
      break;
    } catch (e) {
      if (Date.now() > deadline || server.exitCode !== null) throw new Error(`mariadbd did not start: ${(e as Error).message}`);
      await new Promise((r) => setTimeout(r, 200));
    }
  }
  return {
    socket,
    url: (database) => `mysql://kbsuser:kbspassword@localhost/${database}?socket=${encodeURIComponent(socket)}`,
    async createDatabase(name, rows) {
      const c = await root();
      try {
        await c.query(`CREATE DATABASE \`${name}\``);
        await c.query(`GRANT ALL ON \`${name}\`.* TO 'kbsuser'@'localhost'`);
        await c.query(`USE \`${name}\``);
        for (const s of ddl('mysql')) await c.query(s);
        for (const { sql, params } of inserts('mysql', rows)) await c.execute(sql, params as never);
      } finally {
        await c.end();
      }
    },
    async stop() {
      server.kill('SIGTERM');
      const t = setTimeout(() => server.kill('SIGKILL'), 20_000);
      await exited;
      clearTimeout(t);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
