/**
 * Per-key release counters behind "at most N releases" policy rules (keys are chosen by the caller), and the one
 * transaction that writes everything a release implies: its counters and its new connections.
 */
import { eq, sql } from 'drizzle-orm';
import { auditParams, auditPlaceholders, auditRow, type AuditEntryInput } from './audit-log';
import { connectionRow, type ConnectionInput } from './connections';
import { requireId, type Db, type StoreContext } from './context';
import { StoreError } from './errors';
import { auditLog, connections, releaseCounts } from './schema';

/** One counter a release takes: refused once the count has reached `max` (no `max`: counted, never refused). */
export interface ReleaseCounter {
  key: string;
  max?: number;
}

export interface ReleaseWrites {
  /** Distinct keys. */
  counters: ReleaseCounter[];
  connections: ConnectionInput[];
  /**
   * Audit entries committed with the release (or not at all): a secret is handed out only once the row saying so
   * is stored, as a secret store refuses a request it cannot audit.
   */
  audit?: AuditEntryInput[];
}

export type ReleaseCommit =
  /** Every counter key → its new count. */
  | { ok: true; counts: Map<string, number> }
  /** Nothing was written: the counter `exhausted` (a key) had reached its max. */
  | { ok: false; exhausted: string };

export interface ReleaseCountStore {
  getReleaseCount(key: string): Promise<number>;
  /**
   * Adds one release and returns the new count, or undefined (and changes nothing) if the count has already reached
   * `max`. Check and increment are one statement, so concurrent callers can never push the count past `max`.
   */
  incrementReleaseCount(key: string, max?: number, now?: Date): Promise<number | undefined>;
  /**
   * All or nothing: takes every counter (each checked against its max as it is incremented) and inserts every
   * connection and audit entry in one transaction. A counter at its max rolls everything back and is named in the result; a failing
   * insert (ERR_STORE_CONFLICT for a taken client id) rolls everything back and throws. Concurrent commits never
   * push any counter past its max. ERR_STORE_ARGUMENT (before any write) for malformed input or repeated keys.
   */
  commitRelease(writes: ReleaseWrites, now?: Date): Promise<ReleaseCommit>;
}

/** Thrown inside the transaction to roll it back; never leaves this module. */
class CounterExhausted extends Error {
  constructor(readonly key: string) {
    super(`release counter '${key}' is at its max`);
  }
}

export function releaseCountStore(ctx: StoreContext): ReleaseCountStore {
  // The common release (nothing counted, no connection): its audit row is the whole commit, one prepared statement.
  const insertAudit = ctx.prepared((db) => db.insert(auditLog).values(auditPlaceholders).prepare('kb_release_audit_insert'));

  async function commitRelease(writes: ReleaseWrites, now = new Date()): Promise<ReleaseCommit> {
    const counters = checkCounters(writes?.counters);
    if (!Array.isArray(writes.connections)) throw new StoreError('ERR_STORE_ARGUMENT', 'release connections must be an array');
    const rows = writes.connections.map((c) => connectionRow(ctx.sealer, c).row);
    if (writes.audit !== undefined && !Array.isArray(writes.audit)) throw new StoreError('ERR_STORE_ARGUMENT', 'release audit entries must be an array');
    const audits = (writes.audit ?? []).map(auditRow);
    const unreachable = counters.find((c) => c.max === 0);
    if (unreachable !== undefined) return { ok: false, exhausted: unreachable.key };
    if (counters.length === 0 && rows.length === 0 && audits.length === 1) {
      await ctx.run(() => insertAudit().execute(auditParams(audits[0]!)));
      return { ok: true, counts: new Map() };
    }
    return ctx.run(
      async (db) => {
        const apply = (q: Db) => applyRelease(q, counters, rows, audits, now);
        try {
          // A single statement is atomic by itself; a transaction would only add BEGIN/COMMIT to the release path.
          return counters.length + rows.length + (audits.length > 0 ? 1 : 0) > 1 ? await db.transaction(apply) : await apply(db);
        } catch (e) {
          if (e instanceof CounterExhausted) return { ok: false, exhausted: e.key };
          throw e;
        }
      },
      { unique: () => new StoreError('ERR_STORE_CONFLICT', 'a connection with one of these client ids already exists') },
    );
  }

  return {
    async getReleaseCount(key) {
      const [row] = await ctx.run((db) => db.select({ count: releaseCounts.count }).from(releaseCounts).where(eq(releaseCounts.key, key)));
      return row?.count ?? 0;
    },

    async incrementReleaseCount(key, max, now) {
      const result = await commitRelease({ counters: [{ key, max }], connections: [] }, now);
      return result.ok ? result.counts.get(key) : undefined;
    },

    commitRelease,
  };
}

/**
 * Validated counters in key order: concurrent transactions then lock counter rows in the same order, so two releases
 * sharing counters wait for each other instead of deadlocking.
 */
function checkCounters(counters: ReleaseCounter[] | undefined): ReleaseCounter[] {
  if (!Array.isArray(counters)) throw new StoreError('ERR_STORE_ARGUMENT', 'release counters must be an array');
  for (const { key, max } of counters) {
    requireId(key, 'release counter key');
    if (max !== undefined && (!Number.isSafeInteger(max) || max < 0)) {
      throw new StoreError('ERR_STORE_ARGUMENT', 'max releases must be a non-negative integer');
    }
  }
  const sorted = [...counters].sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  const repeated = sorted.find((c, i) => i > 0 && sorted[i - 1]!.key === c.key);
  // One release counts once per key; a repeated key would be a caller's bug, not a second release.
  if (repeated !== undefined) throw new StoreError('ERR_STORE_ARGUMENT', `release counter '${repeated.key}' is repeated`);
  return sorted;
}

async function applyRelease(
  db: Db,
  counters: ReleaseCounter[],
  rows: (typeof connections.$inferInsert)[],
  audits: (typeof auditLog.$inferInsert)[],
  now: Date,
): Promise<ReleaseCommit> {
  const counts = new Map<string, number>();
  for (const { key, max } of counters) {
    const count = await incrementIfBelow(db, key, max, now);
    if (count === undefined) throw new CounterExhausted(key);
    counts.set(key, count);
  }
  if (rows.length > 0) await db.insert(connections).values(rows);
  if (audits.length > 0) await db.insert(auditLog).values(audits);
  return { ok: true, counts };
}

/**
 * Check and increment in one statement: the conditional update re-reads the row under its lock, so concurrent
 * callers can never push the count past `max`.
 */
async function incrementIfBelow(db: Db, key: string, max: number | undefined, now: Date): Promise<number | undefined> {
  const [row] = await db
    .insert(releaseCounts)
    .values({ key, count: 1, updatedAt: now })
    .onConflictDoUpdate({
      target: releaseCounts.key,
      set: { count: sql`${releaseCounts.count} + 1`, updatedAt: now },
      setWhere: max === undefined ? undefined : sql`${releaseCounts.count} < ${max}`,
    })
    .returning({ count: releaseCounts.count });
  return row?.count;
}
