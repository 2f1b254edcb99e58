/**
 * Append-only audit trail for the owner (the host only ever sees generic failures). Entries hold ids, outcomes and
 * reasons, never secret material: `detail` is plain JSON, so Buffers cannot be passed by accident. Entries are never
 * edited; they leave only by age (purgeAuditBefore), so the table does not grow without bound.
 */
import { and, asc, desc, eq, gte, inArray, lt, or, sql, type SQL } from 'drizzle-orm';
import { requireId, requireJson, type StoreContext } from './context';
import { StoreError } from './errors';
import { auditLog, type JsonValue } from './schema';

const DEFAULT_LIMIT = 100;
const MAX_LIMIT = 10_000;
const DEFAULT_PURGE_BATCH = 5_000;

export interface AuditEntryInput {
  event: string;
  outcome: string;
  at?: Date;
  /** As received, even when malformed: recorded as text. */
  launchId?: string | null;
  clientId?: string | null;
  peer?: string | null;
  /** Correlation id also returned to the caller in the generic error. */
  refId?: string | null;
  detail?: JsonValue | null;
}

export interface AuditEntry {
  id: number;
  at: Date;
  event: string;
  outcome: string;
  launchId: string | null;
  clientId: string | null;
  peer: string | null;
  refId: string | null;
  detail: JsonValue | null;
}

export interface AuditFilter {
  /** Entries at or after this instant. */
  since?: Date;
  launchId?: string;
  /** the reference id a caller saw in an error message */
  refId?: string;
  clientId?: string;
  event?: string;
  /** Default 100, at most 10000. */
  limit?: number;
  /** Only entries after this one in the listing order (newest first): the last entry of the previous page. */
  after?: { at: Date; id: number };
}

export interface AuditPurgeOptions {
  /** Rows per DELETE statement; default 5000. */
  batchSize?: number;
  /** Checked before each batch: once aborted, the purge stops and returns what it deleted so far. */
  signal?: AbortSignal;
}

export interface AuditLogStore {
  appendAudit(entry: AuditEntryInput): Promise<AuditEntry>;
  /** Several entries in one statement (a busy broker batches its audit writes); all or none are stored. */
  appendAudits(entries: AuditEntryInput[]): Promise<number>;
  /** Newest first. */
  listAudit(filter?: AuditFilter): Promise<AuditEntry[]>;
  /**
   * Deletes the entries recorded before `cutoff` (those at or after it stay) and returns how many. Safe to run from
   * several brokers at once: a row deleted by one is simply not counted by the others.
   */
  purgeAuditBefore(cutoff: Date, opts?: AuditPurgeOptions): Promise<number>;
}

/**
 * The row an entry becomes, validated (ERR_STORE_ARGUMENT before any write). Also used by the writes that commit an
 * entry in the same statement or transaction as the state it records (a bundle's session, a release's counters).
 */
export function auditRow(entry: AuditEntryInput): typeof auditLog.$inferInsert {
  requireId(entry.event, 'audit event');
  requireId(entry.outcome, 'audit outcome');
  if (entry.detail !== undefined && entry.detail !== null) requireJson(entry.detail, 'audit detail');
  return {
    at: entry.at ?? new Date(),
    event: entry.event,
    outcome: entry.outcome,
    launchId: entry.launchId ?? null,
    clientId: entry.clientId ?? null,
    peer: entry.peer ?? null,
    refId: entry.refId ?? null,
    detail: entry.detail ?? null,
  };
}

/** An audit row's values as placeholders, for prepared statements that write one (auditParams fills them). */
export const auditPlaceholders = {
  at: sql.placeholder('auditAt'),
  event: sql.placeholder('auditEvent'),
  outcome: sql.placeholder('auditOutcome'),
  launchId: sql.placeholder('auditLaunchId'),
  clientId: sql.placeholder('auditClientId'),
  peer: sql.placeholder('auditPeer'),
  refId: sql.placeholder('auditRefId'),
  detail: sql.placeholder('auditDetail'),
};

export function auditParams(row: typeof auditLog.$inferInsert): Record<string, unknown> {
  return {
    auditAt: row.at,
    auditEvent: row.event,
    auditOutcome: row.outcome,
    auditLaunchId: row.launchId,
    auditClientId: row.clientId,
    auditPeer: row.peer,
    auditRefId: row.refId,
    auditDetail: row.detail,
  };
}

export function auditLogStore(ctx: StoreContext): AuditLogStore {
  const row = auditRow;
  return {
    async appendAudit(entry) {
      const values = row(entry);
      const [stored] = await ctx.run((db) => db.insert(auditLog).values(values).returning());
      return stored!;
    },

    async appendAudits(entries) {
      if (entries.length === 0) return 0;
      const values = entries.map(row);
      await ctx.run((db) => db.insert(auditLog).values(values));
      return values.length;
    },

    async listAudit(filter = {}) {
      const limit = filter.limit ?? DEFAULT_LIMIT;
      if (!Number.isInteger(limit) || limit < 1 || limit > MAX_LIMIT) {
        throw new StoreError('ERR_STORE_ARGUMENT', `audit limit must be an integer in [1, ${MAX_LIMIT}]`);
      }
      const conditions: SQL[] = [];
      if (filter.since !== undefined) conditions.push(gte(auditLog.at, filter.since));
      if (filter.launchId !== undefined) conditions.push(eq(auditLog.launchId, filter.launchId));
      if (filter.refId !== undefined) conditions.push(eq(auditLog.refId, filter.refId));
      if (filter.clientId !== undefined) conditions.push(eq(auditLog.clientId, filter.clientId));
      if (filter.event !== undefined) conditions.push(eq(auditLog.event, filter.event));
      // (at, id) descending is the listing order, so the next page is what sorts below the previous page's last entry
      if (filter.after !== undefined)
        conditions.push(or(lt(auditLog.at, filter.after.at), and(eq(auditLog.at, filter.after.at), lt(auditLog.id, filter.after.id)))!);
      return ctx.run((db) =>
        db
          .select()
          .from(auditLog)
          .where(and(...conditions))
          .orderBy(desc(auditLog.at), desc(auditLog.id))
          .limit(limit),
      );
    },

    async purgeAuditBefore(cutoff, opts = {}) {
      const { batchSize = DEFAULT_PURGE_BATCH, signal } = opts;
      if (!(cutoff instanceof Date) || Number.isNaN(cutoff.getTime())) {
        throw new StoreError('ERR_STORE_ARGUMENT', 'audit purge cutoff must be a valid Date');
      }
      if (!Number.isSafeInteger(batchSize) || batchSize < 1) {
        throw new StoreError('ERR_STORE_ARGUMENT', 'audit purge batch size must be a positive integer');
      }
      // Bounded statements rather than one DELETE: a year's backlog in one transaction would hold its row locks (and
      // PGlite's only connection) for as long as it runs, while the request path keeps appending audit entries.
      let total = 0;
      for (;;) {
        if (signal?.aborted) return total;
        const deleted = await ctx.run((db) =>
          db
            .delete(auditLog)
            .where(
              inArray(auditLog.id, db.select({ id: auditLog.id }).from(auditLog).where(lt(auditLog.at, cutoff)).orderBy(asc(auditLog.id)).limit(batchSize)),
            )
            .returning({ id: auditLog.id }),
        );
        total += deleted.length;
        // A short batch: the backlog is gone, or another broker is deleting it too (what both leave, rarely, is the
        // next purge's).
        if (deleted.length < batchSize) return total;
      }
    },
  };
}
