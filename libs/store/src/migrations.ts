/**
 * Applies the drizzle-kit migrations in libs/store/migrations on open. drizzle's migrator records applied migrations
 * in drizzle.__drizzle_migrations of the same database, so re-opening is a no-op.
 */
import { createHash } from 'node:crypto';
import * as path from 'node:path';
import type { PGlite } from '@electric-sql/pglite';
import { eq } from 'drizzle-orm';
import { drizzle as drizzlePg } from 'drizzle-orm/node-postgres';
import { migrate as migratePgDatabase } from 'drizzle-orm/node-postgres/migrator';
import { drizzle as drizzlePglite } from 'drizzle-orm/pglite';
import { migrate as migratePgliteDatabase } from 'drizzle-orm/pglite/migrator';
import { Client, type ClientConfig } from 'pg';
import type { Db } from './context';
import { toStoreError } from './db-errors';
import { StoreError } from './errors';
import { storeMeta } from './schema';
import type { Sealer } from './sealing';

/** The committed SQL, next to src/ (a bundled build must pass its own copy as `migrationsFolder`). */
export const DEFAULT_MIGRATIONS_FOLDER = path.resolve(__dirname, '..', 'migrations');

// Advisory locks are per database and share one key space with every other user of it, so the key is derived from
// a name rather than picked as a small number.
const MIGRATION_LOCK_KEY = createHash('sha256').update('kb-store/migrations').digest().readBigInt64BE(0).toString();

const KEY_CHECK = 'master_key_check';

export async function migratePglite(client: PGlite, migrationsFolder: string): Promise<void> {
  try {
    await migratePgliteDatabase(drizzlePglite({ client }), { migrationsFolder });
  } catch (e) {
    throw migrationError(e, migrationsFolder);
  }
}

/**
 * On one dedicated connection: take the advisory lock, migrate, disconnect (which releases the lock). Two brokers
 * starting on a fresh database would otherwise both try to create the tables and one would fail.
 */
export async function migratePostgres(config: ClientConfig, migrationsFolder: string): Promise<void> {
  const client = new Client(config);
  // A socket error after connect also rejects the pending query; without a listener it would crash the process.
  client.on('error', () => undefined);
  try {
    await client.connect();
  } catch (e) {
    throw new StoreError('ERR_STORE_CONNECT', `cannot connect to PostgreSQL: ${(e as Error).message}`, { cause: e });
  }
  try {
    await client.query('SELECT pg_advisory_lock($1::bigint)', [MIGRATION_LOCK_KEY]);
    await migratePgDatabase(drizzlePg({ client }), { migrationsFolder });
  } catch (e) {
    throw migrationError(e, migrationsFolder);
  } finally {
    await client.end().catch(() => undefined);
  }
}

/**
 * The first open stores a value derived from the master key; later opens compare against it, so a wrong key is a
 * clear error at start-up instead of a decryption failure on the first secret release.
 */
export async function checkMasterKey(db: Db, sealer: Sealer): Promise<void> {
  try {
    await db.insert(storeMeta).values({ key: KEY_CHECK, value: sealer.keyCheck() }).onConflictDoNothing();
    const [row] = await db.select().from(storeMeta).where(eq(storeMeta.key, KEY_CHECK));
    if (row !== undefined && sealer.matchesKeyCheck(row.value)) return;
  } catch (e) {
    throw toStoreError(e);
  }
  throw new StoreError('ERR_STORE_MASTER_KEY', 'the master key is not the one this database was created with');
}

function migrationError(e: unknown, folder: string): StoreError {
  const translated = toStoreError(e);
  if (translated.code === 'ERR_STORE_CONNECT') return translated;
  // The driver error (or the file-system error) says what went wrong; migration SQL holds no secrets.
  const cause = translated.cause ?? e;
  const reason = cause instanceof Error ? cause.message : String(cause);
  return new StoreError('ERR_STORE_MIGRATION', `applying migrations from ${folder} failed: ${reason}`, { cause });
}
