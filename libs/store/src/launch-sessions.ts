/**
 * Launch sessions: the TEK/TIK made by GetBundle, consumed exactly once by GetSecret. Kept in the database (sealed)
 * rather than in process memory, so sessions survive a restart and brokers sharing one PostgreSQL can serve either
 * half of a launch.
 */
import { randomUUID } from 'node:crypto';
import { and, count, eq, gt, isNull, lte, sql } from 'drizzle-orm';
import { alias } from 'drizzle-orm/pg-core';
import { auditParams, auditPlaceholders, auditRow, type AuditEntryInput } from './audit-log';
import { isUuid, requireId, requireLength, requireUint, type Db, type StoreContext } from './context';
import { StoreError } from './errors';
import { auditLog, launchSessions } from './schema';

const KEY_LENGTH = 16;
const SEALED_COLUMN = { table: 'launch_sessions', column: 'keys_enc' };

export interface LaunchSessionInput {
  /** Defaults to a random UUIDv4 (the wire LaunchId). */
  id?: string;
  tek: Buffer;
  tik: Buffer;
  /** The guest policy given to GetBundle; GetSecret must present the same one. */
  sevPolicy: number;
  chipId: string;
  generation: string;
  chainSha256: Buffer;
  createdAt?: Date;
  expiresAt: Date;
}

export interface LaunchSession {
  id: string;
  sevPolicy: number;
  chipId: string;
  generation: string;
  chainSha256: Buffer;
  createdAt: Date;
  expiresAt: Date;
  consumedAt: Date | null;
}

export interface ConsumedLaunchSession extends LaunchSession {
  tek: Buffer;
  tik: Buffer;
  consumedAt: Date;
}

export interface LaunchSessionStore {
  /**
   * ERR_STORE_CONFLICT if the id is taken. With `audit`, that entry is written by the same statement: the session
   * exists if and only if its audit row does (a bundle is never handed out unrecorded, even if the process dies).
   */
  createLaunchSession(input: LaunchSessionInput, audit?: AuditEntryInput): Promise<LaunchSession>;
  /**
   * Marks the session consumed and returns it with its keys, only if it exists, is unconsumed and has not expired
   * at `now`. One UPDATE statement: of any number of concurrent callers (any broker on the database) exactly one
   * gets the session; the others, and every later call, get undefined. The stored keys are erased in the same step.
   */
  consumeLaunchSession(id: string, now: Date): Promise<ConsumedLaunchSession | undefined>;
  /** Sessions neither consumed nor expired at `now` (for a cap on outstanding GetBundle calls). */
  countPendingSessions(now: Date): Promise<number>;
  /** Deletes sessions expired at `now`, consumed or not; returns how many. */
  purgeExpiredSessions(now: Date): Promise<number>;
}

export function launchSessionStore(ctx: StoreContext): LaunchSessionStore {
  // GetBundle's and GetSecret's statements; everything the insert writes is known, so it returns nothing.
  const sessionValues = {
    id: sql.placeholder('id'),
    keysEnc: sql.placeholder('keysEnc'),
    sevPolicy: sql.placeholder('sevPolicy'),
    chipId: sql.placeholder('chipId'),
    generation: sql.placeholder('generation'),
    chainSha256: sql.placeholder('chainSha256'),
    createdAt: sql.placeholder('createdAt'),
    expiresAt: sql.placeholder('expiresAt'),
  };
  const insert = ctx.prepared((db) => db.insert(launchSessions).values(sessionValues).prepare('kb_launch_session_insert'));
  // The session and its audit row in one statement: a data-modifying CTE is atomic with the statement around it, and
  // costs one round trip where a transaction would add BEGIN and COMMIT to every GetBundle.
  const insertAudited = ctx.prepared((db) => {
    const session = db.$with('session').as(db.insert(launchSessions).values(sessionValues).returning({ id: launchSessions.id }));
    return db.with(session).insert(auditLog).values(auditPlaceholders).prepare('kb_launch_session_insert_audited');
  });
  const consume = ctx.prepared((db) => consumeStatement(db).prepare('kb_launch_session_consume'));

  return {
    async createLaunchSession(input, audit) {
      const { values, session } = sessionRow(ctx, input);
      const entry = audit === undefined ? undefined : auditRow(audit);
      await ctx.run(() => (entry === undefined ? insert().execute(values) : insertAudited().execute({ ...values, ...auditParams(entry) })), {
        unique: () => new StoreError('ERR_STORE_CONFLICT', `launch session ${values.id} already exists`),
      });
      return session;
    },

    async consumeLaunchSession(id, now) {
      if (!isUuid(id)) return undefined;
      const [row] = await ctx.run(() => consume().execute(consumeParams(id, now)));
      return row && openConsumed(ctx, row, now);
    },

    async countPendingSessions(now) {
      const [row] = await ctx.run((db) =>
        db
          .select({ n: count() })
          .from(launchSessions)
          .where(and(isNull(launchSessions.consumedAt), gt(launchSessions.expiresAt, now))),
      );
      return row?.n ?? 0;
    },

    async purgeExpiredSessions(now) {
      const rows = await ctx.run((db) => db.delete(launchSessions).where(lte(launchSessions.expiresAt, now)).returning({ id: launchSessions.id }));
      return rows.length;
    },
  };
}

const sessionColumns = {
  id: launchSessions.id,
  sevPolicy: launchSessions.sevPolicy,
  chipId: launchSessions.chipId,
  generation: launchSessions.generation,
  chainSha256: launchSessions.chainSha256,
  createdAt: launchSessions.createdAt,
  expiresAt: launchSessions.expiresAt,
  consumedAt: launchSessions.consumedAt,
};

function toSession(row: LaunchSession): LaunchSession {
  const { id, sevPolicy, chipId, generation, chainSha256, createdAt, expiresAt, consumedAt } = row;
  return { id, sevPolicy, chipId, generation, chainSha256, createdAt, expiresAt, consumedAt };
}

/**
 * A session's row as it is written (checked; TEK ‖ TIK sealed under the row's id) and the session it describes: for
 * createLaunchSession and for attestation.ts's openVmLaunch, which writes the same row in its own statement.
 */
export function sessionRow(
  ctx: StoreContext,
  input: LaunchSessionInput,
): { values: typeof launchSessions.$inferInsert & { id: string }; session: LaunchSession } {
  const { id = randomUUID(), tek, tik, sevPolicy, chipId, generation, chainSha256, createdAt = new Date(), expiresAt } = input;
  if (!isUuid(id)) throw new StoreError('ERR_STORE_ARGUMENT', 'launch session id must be a UUID');
  requireLength(tek, KEY_LENGTH, 'TEK');
  requireLength(tik, KEY_LENGTH, 'TIK');
  requireLength(chainSha256, 32, 'chainSha256');
  requireUint(sevPolicy, 0xffffffff, 'sevPolicy');
  requireId(chipId, 'chipId');
  requireId(generation, 'generation');
  if (!(expiresAt.getTime() > createdAt.getTime())) {
    throw new StoreError('ERR_STORE_ARGUMENT', 'launch session must expire after it is created');
  }
  const rowId = id.toLowerCase(); // what PostgreSQL's uuid type gives back, so consume opens it under the same AAD
  const keysEnc = ctx.sealer.seal(Buffer.concat([tek, tik]), { ...SEALED_COLUMN, rowId });
  return {
    values: { id: rowId, keysEnc, sevPolicy, chipId, generation, chainSha256, createdAt, expiresAt },
    session: { id: rowId, sevPolicy, chipId, generation, chainSha256: Buffer.from(chainSha256), createdAt, expiresAt, consumedAt: null },
  };
}

/**
 * The consume statement (one UPDATE; see consumeLaunchSession), also run inside larger statements as a CTE (the
 * attestation service consumes a session and reads its VM in one round trip). Self-join: RETURNING shows the new row
 * version, whose keys are already NULL; `prior` supplies the old keys. Concurrent updaters queue on the row lock and
 * re-check `consumed_at IS NULL` against the committed winner. Parameters: consumeParams().
 */
export function consumeStatement(db: Db) {
  const prior = alias(launchSessions, 'prior');
  return (
    db
      .update(launchSessions)
      // set() takes no placeholder, so the time goes in as text (consumedAtIso) for an explicit cast
      .set({ consumedAt: sql`${sql.placeholder('consumedAtIso')}::timestamptz`, keysEnc: null })
      .from(prior)
      .where(
        and(
          eq(launchSessions.id, sql.placeholder('id')),
          eq(prior.id, launchSessions.id),
          isNull(launchSessions.consumedAt),
          gt(launchSessions.expiresAt, sql.placeholder('now')),
        ),
      )
      .returning({ ...sessionColumns, keysEnc: prior.keysEnc })
  );
}

export function consumeParams(id: string, now: Date): { id: string; now: Date; consumedAtIso: string } {
  return { id, now, consumedAtIso: now.toISOString() };
}

/** A row the consume statement returned, its keys opened (their AAD binds them to the row's id). */
export function openConsumed(ctx: StoreContext, row: LaunchSession & { keysEnc: Buffer | null }, now: Date): ConsumedLaunchSession {
  if (row.keysEnc === null) throw new StoreError('ERR_STORE_DECRYPT', `launch session ${row.id} has no keys`);
  const keys = ctx.sealer.open(row.keysEnc, { ...SEALED_COLUMN, rowId: row.id });
  return {
    ...toSession(row),
    consumedAt: row.consumedAt ?? now,
    tek: keys.subarray(0, KEY_LENGTH),
    tik: keys.subarray(KEY_LENGTH),
  };
}
