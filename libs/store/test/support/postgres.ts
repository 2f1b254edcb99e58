import { randomBytes } from 'node:crypto';
import { Client } from 'pg';

export const PG_URL_HINT =
  'The PostgreSQL suite needs KB_TEST_DATABASE_URL, e.g. KB_TEST_DATABASE_URL=postgres://kb:kb@127.0.0.1:5432/kb, ' +
  'for a role allowed to CREATE DATABASE (each test file works in its own throw-away database). Local set-up (root): ' +
  '`pg_ctlcluster $(ls /usr/lib/postgresql) main start; runuser -u postgres -- psql -c "CREATE ROLE kb LOGIN SUPERUSER ' +
  "PASSWORD 'kb'\"; runuser -u postgres -- createdb -O kb kb`";

/** The base URL, or a failing test explaining how to set it (the suite must not pass by skipping). */
export function requirePgUrl(): string | undefined {
  const url = process.env.KB_TEST_DATABASE_URL;
  if (url === undefined || url === '') {
    it('has a PostgreSQL server to test against', () => {
      throw new Error(PG_URL_HINT);
    });
    return undefined;
  }
  return url;
}

export interface TestDatabase {
  url: string;
  drop(): Promise<void>;
}

/**
 * A fresh database per test file: the drizzle-kit migrations reference "public" and the migrator keeps its journal
 * in the "drizzle" schema, so a database (not a schema) is the unit that isolates one file's runs from another's.
 */
export async function createTestDatabase(baseUrl: string): Promise<TestDatabase> {
  const name = `kb_test_${randomBytes(6).toString('hex')}`;
  await admin(baseUrl, `CREATE DATABASE "${name}"`);
  const url = new URL(baseUrl);
  url.pathname = `/${name}`;
  return {
    url: url.toString(),
    drop: () => admin(baseUrl, `DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`),
  };
}

async function admin(baseUrl: string, statement: string): Promise<void> {
  const client = new Client({ connectionString: baseUrl });
  await client.connect();
  try {
    await client.query(statement);
  } finally {
    await client.end();
  }
}

/** A raw connection for reading columns as stored. */
export async function rawClient(url: string): Promise<{ query(sql: string, params?: unknown[]): Promise<Record<string, unknown>[]>; end(): Promise<void> }> {
  const client = new Client({ connectionString: url });
  await client.connect();
  return {
    query: async (sql, params) => (await client.query(sql, params)).rows,
    end: () => client.end(),
  };
}
