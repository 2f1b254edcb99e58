/**
 * openStore: one schema, two drivers. PGlite (embedded PostgreSQL in WebAssembly) is the zero-set-up default for a
 * single broker; a PostgreSQL server lets several brokers share sessions and connections.
 */
import { cpSync, existsSync, mkdirSync, renameSync, rmSync } from 'node:fs';
import * as path from 'node:path';
import { PGlite } from '@electric-sql/pglite';
import { drizzle as drizzlePg } from 'drizzle-orm/node-postgres';
import { drizzle as drizzlePglite } from 'drizzle-orm/pglite';
import { Pool } from 'pg';
import { attestationStore, type AttestationStore } from './attestation';
import { auditLogStore, type AuditLogStore } from './audit-log';
import { bulkImportStore, type BulkImportStore } from './bulk-import';
import { connectionStore, type ConnectionStore } from './connections';
import { createContext, type Db } from './context';
import { lockDataDir, type DataDirLock } from './data-dir-lock';
import { statementTimeouts } from './db-errors';
import { StoreError } from './errors';
import { keysetStore, type KeysetStore } from './keysets';
import { kbsStore, type KbsStore } from './kbs';
import { launchSessionStore, type LaunchSessionStore } from './launch-sessions';
import { checkMasterKey, DEFAULT_MIGRATIONS_FOLDER, migratePglite, migratePostgres } from './migrations';
import { policyStore, type PolicyStore } from './policies';
import { releaseCountStore, type ReleaseCountStore } from './release-counts';
import { reportKeyStore, type ReportKeyStore } from './report-keys';
import { snpCertificateStore, type SnpCertificateStore } from './snp-certificates';
import { resourceStore, type ResourceStore } from './resources';
import { secretStore, type SecretStore } from './secrets';
import { Sealer } from './sealing';

export const PGLITE_MEMORY = 'memory://';
/** PGlite's files live in this subdirectory of the broker's data directory, beside master.key. */
export const PGLITE_SUBDIR = 'pgdata';
/** Held by the process that has `<dataDir>/pgdata` open (see data-dir-lock.ts). */
export const PGLITE_LOCK_FILE = 'pgdata.lock';

interface CommonOptions {
  /** 32 bytes: loadOrCreateMasterKey(dataDir) or parseMasterKey(base64 from configuration). */
  masterKey: Buffer;
  /** Defaults to libs/store/migrations; a bundled build ships a copy and passes its path. */
  migrationsFolder?: string;
}

export interface PgliteStoreOptions extends CommonOptions {
  driver: 'pglite';
  /** The broker's data directory (PGlite uses `<dataDir>/pgdata`), or 'memory://' for a throw-away database. */
  dataDir: string;
  /**
   * A PGlite data directory prepared ahead (initdb and migrations done, no rows), copied to `<dataDir>/pgdata` when
   * that does not exist yet: a first start then skips initdb, which is most of it. The built broker ships one.
   */
  template?: string;
}

export interface PgStoreOptions extends CommonOptions {
  driver: 'pg';
  /** postgres://user:password@host:port/database */
  url: string;
  /** Pool size; default 10. */
  maxConnections?: number;
  /**
   * PostgreSQL's statement_timeout on the pool's connections, ms; default none. A statement stuck that long (on a
   * lock, or a server in trouble) is cancelled, so its connection returns to the pool instead of being held forever.
   * Migrations run on a connection of their own, without it.
   */
  statementTimeoutMs?: number;
}

export type StoreOptions = PgliteStoreOptions | PgStoreOptions;

export interface Store
  extends
    PolicyStore,
    SecretStore,
    KeysetStore,
    ResourceStore,
    ReportKeyStore,
    SnpCertificateStore,
    LaunchSessionStore,
    ConnectionStore,
    ReleaseCountStore,
    AuditLogStore,
    BulkImportStore,
    KbsStore,
    AttestationStore {
  readonly driver: 'pglite' | 'pg';
  /** What the broker's metrics read: cheap, no query. */
  stats(): StoreStats;
  /** Idempotent; later calls on the store fail with ERR_STORE_CLOSED. */
  close(): Promise<void>;
}

/** A snapshot for monitoring. */
export interface StoreStats {
  /** node-postgres pool (PostgreSQL only): open, idle, callers waiting for a connection, size. */
  pool?: { total: number; idle: number; waiting: number; max: number };
  /** Statements cancelled by statement_timeout or lock_timeout in this process (see db-errors.ts). */
  statementTimeouts: number;
}

const CONNECT_TIMEOUT_MS = 10_000;

/** Opens the database, applies pending migrations and checks the master key against the database. */
export async function openStore(options: StoreOptions): Promise<Store> {
  const migrationsFolder = options.migrationsFolder ?? DEFAULT_MIGRATIONS_FOLDER;
  if (options.driver === 'pglite') {
    const dataDir = options.dataDir === PGLITE_MEMORY ? PGLITE_MEMORY : path.join(options.dataDir, PGLITE_SUBDIR);
    const sealer = new Sealer(options.masterKey);
    let lock: DataDirLock | undefined;
    if (dataDir !== PGLITE_MEMORY) {
      try {
        mkdirSync(options.dataDir, { recursive: true, mode: 0o700 });
      } catch (e) {
        throw new StoreError('ERR_STORE_CONNECT', `cannot create the data directory ${options.dataDir}: ${(e as Error).message}`, { cause: e });
      }
      lock = await lockDataDir(path.join(options.dataDir, PGLITE_LOCK_FILE));
      if (options.template) {
        try {
          copyTemplate(options.template, dataDir);
        } catch (e) {
          lock.release();
          throw new StoreError('ERR_STORE_CONNECT', `cannot prepare the database in ${dataDir} from ${options.template}: ${(e as Error).message}`, {
            cause: e,
          });
        }
      }
    }
    let client: PGlite;
    try {
      client = await PGlite.create(dataDir);
    } catch (e) {
      lock?.release();
      throw new StoreError('ERR_STORE_CONNECT', `cannot start PGlite in ${dataDir}: ${(e as Error).message}`, { cause: e });
    }
    return storeOnPglite(client, sealer, migrationsFolder, () => lock?.release());
  }
  if (options.driver === 'pg') return openPostgres(options, new Sealer(options.masterKey), migrationsFolder);
  throw new StoreError('ERR_STORE_ARGUMENT', `unknown store driver '${(options as { driver: unknown }).driver}'`);
}

/** Under the data directory lock. Copied beside and renamed into place, so a crash mid-copy leaves no half database. */
function copyTemplate(template: string, pgdata: string): void {
  if (existsSync(pgdata)) return;
  const partial = `${pgdata}.partial`;
  rmSync(partial, { recursive: true, force: true });
  cpSync(template, partial, { recursive: true });
  renameSync(partial, pgdata);
}

/**
 * A store on an already started PGlite, which it owns: close() closes the client, and so does a failed open;
 * `released` runs after either (openStore drops its data directory lock there).
 */
export async function storeOnPglite(client: PGlite, sealer: Sealer, migrationsFolder: string, released: () => void = () => undefined): Promise<Store> {
  try {
    await migratePglite(client, migrationsFolder);
    const db: Db = drizzlePglite({ client });
    await checkMasterKey(db, sealer);
    return assemble(
      'pglite',
      db,
      sealer,
      () => client.close().finally(released),
      () => undefined,
    );
  } catch (e) {
    await client.close().catch(() => undefined);
    released();
    throw e;
  }
}

async function openPostgres(options: PgStoreOptions, sealer: Sealer, migrationsFolder: string): Promise<Store> {
  const { url, maxConnections = 10, statementTimeoutMs } = options;
  if (!Number.isInteger(maxConnections) || maxConnections < 1) {
    throw new StoreError('ERR_STORE_ARGUMENT', 'maxConnections must be a positive integer');
  }
  if (statementTimeoutMs !== undefined && !(Number.isInteger(statementTimeoutMs) && statementTimeoutMs >= 1)) {
    throw new StoreError('ERR_STORE_ARGUMENT', 'statementTimeoutMs must be a positive integer');
  }
  const config = { connectionString: url, connectionTimeoutMillis: CONNECT_TIMEOUT_MS };
  await migratePostgres(config, migrationsFolder);
  const pool = new Pool({ ...config, max: maxConnections, ...(statementTimeoutMs !== undefined ? { statement_timeout: statementTimeoutMs } : {}) });
  // An idle pooled connection that drops emits 'error' on the pool; unhandled, that would kill the broker. The pool
  // discards the connection and the next query reconnects (or fails with ERR_STORE_CONNECT).
  pool.on('error', () => undefined);
  try {
    const db: Db = drizzlePg({ client: pool });
    await checkMasterKey(db, sealer);
    return assemble(
      'pg',
      db,
      sealer,
      () => pool.end(),
      () => ({ total: pool.totalCount, idle: pool.idleCount, waiting: pool.waitingCount, max: maxConnections }),
    );
  } catch (e) {
    await pool.end().catch(() => undefined);
    throw e;
  }
}

function assemble(driver: Store['driver'], db: Db, sealer: Sealer, closeDriver: () => Promise<void>, pool: () => StoreStats['pool']): Store {
  let closed = false;
  const ctx = createContext(db, sealer, () => closed);
  return {
    driver,
    stats: () => ({ pool: pool(), statementTimeouts: statementTimeouts() }),
    ...policyStore(ctx),
    ...secretStore(ctx),
    ...keysetStore(ctx),
    ...resourceStore(ctx),
    ...reportKeyStore(ctx),
    ...snpCertificateStore(ctx),
    ...launchSessionStore(ctx),
    ...connectionStore(ctx),
    ...releaseCountStore(ctx),
    ...auditLogStore(ctx),
    ...bulkImportStore(ctx),
    ...kbsStore(ctx),
    ...attestationStore(ctx),
    async close() {
      if (closed) return;
      closed = true;
      await closeDriver();
    },
  };
}
