/**
 * Online connections (GetOnlineSecret): a client id, the AES-256-GCM key injected at launch (sealed at rest), and the
 * launch facts that policies are evaluated against later. Unlike simple-kbs they expire and can be revoked.
 */
import { randomUUID } from 'node:crypto';
import { and, asc, eq, gt, isNull, lte, type SQL } from 'drizzle-orm';
import { isUuid, requireBuffer, requireId, requireLength, requireUint, type StoreContext } from './context';
import { StoreError } from './errors';
import { connections } from './schema';
import type { Sealer } from './sealing';

const KEY_LENGTH = 32;
const SEALED_COLUMN = { table: 'connections', column: 'key_enc' };

/** What was attested at launch; stored with the connection so online requests are judged by the same facts. */
export interface LaunchFacts {
  launchId: string;
  sevPolicy: number;
  apiMajor: number;
  apiMinor: number;
  buildId: number;
  launchDigest: Buffer;
  chipId: string;
}

export interface ConnectionInput extends LaunchFacts {
  /** Defaults to a random UUIDv4. */
  clientId?: string;
  /** The host's (unverified) LaunchDescription at GetSecret, signed online only by report keys that opt in. */
  launchDescription?: string | null;
  key: Buffer;
  createdAt?: Date;
  expiresAt: Date;
}

/** A connection without its key (listing never unseals keys). */
export interface ConnectionInfo extends LaunchFacts {
  clientId: string;
  launchDescription: string | null;
  createdAt: Date;
  expiresAt: Date;
  revokedAt: Date | null;
}

export interface Connection extends ConnectionInfo {
  key: Buffer;
}

export interface ConnectionStore {
  /** ERR_STORE_CONFLICT if the client id is taken. */
  createConnection(input: ConnectionInput): Promise<Connection>;
  /** The connection if it exists, has not expired at `now` and is not revoked; otherwise undefined. */
  getValidConnection(clientId: string, now: Date): Promise<Connection | undefined>;
  /** true if a live connection was revoked by this call. */
  revokeConnection(clientId: string, now: Date): Promise<boolean>;
  /** Ordered by creation time; with `validAt`, only connections valid at that instant. */
  listConnections(filter?: { validAt?: Date }): Promise<ConnectionInfo[]>;
  /** Deletes connections expired at `now`; returns how many. */
  purgeExpiredConnections(now: Date): Promise<number>;
}

export function connectionStore(ctx: StoreContext): ConnectionStore {
  const live = (now: Date): SQL => and(isNull(connections.revokedAt), gt(connections.expiresAt, now))!;

  return {
    async createConnection(input) {
      const { row: values, key } = connectionRow(ctx.sealer, input);
      const [row] = await ctx.run((db) => db.insert(connections).values(values).returning(), {
        unique: () => new StoreError('ERR_STORE_CONFLICT', `connection ${values.clientId} already exists`),
      });
      return { ...toInfo(row!), key };
    },

    async getValidConnection(clientId, now) {
      if (!isUuid(clientId)) return undefined;
      const [row] = await ctx.run((db) =>
        db
          .select()
          .from(connections)
          .where(and(eq(connections.clientId, clientId), live(now))),
      );
      if (row === undefined) return undefined;
      return { ...toInfo(row), key: ctx.sealer.open(row.keyEnc, { ...SEALED_COLUMN, rowId: row.clientId }) };
    },

    async revokeConnection(clientId, now) {
      if (!isUuid(clientId)) return false;
      const rows = await ctx.run((db) =>
        db
          .update(connections)
          .set({ revokedAt: now })
          .where(and(eq(connections.clientId, clientId), live(now)))
          .returning({ clientId: connections.clientId }),
      );
      return rows.length > 0;
    },

    async listConnections(filter = {}) {
      const { validAt } = filter;
      const rows = await ctx.run((db) =>
        db
          .select()
          .from(connections)
          .where(validAt === undefined ? undefined : live(validAt))
          .orderBy(asc(connections.createdAt), asc(connections.clientId)),
      );
      return rows.map(toInfo);
    },

    async purgeExpiredConnections(now) {
      const rows = await ctx.run((db) => db.delete(connections).where(lte(connections.expiresAt, now)).returning({ clientId: connections.clientId }));
      return rows.length;
    },
  };
}

/**
 * Validates a new connection and seals its key, with no database work: shared by createConnection and the release
 * transaction (release-counts.ts), so a malformed connection is refused before anything is written.
 */
export function connectionRow(sealer: Sealer, input: ConnectionInput): { row: typeof connections.$inferInsert; key: Buffer } {
  const { clientId = randomUUID(), key, createdAt = new Date(), expiresAt, launchDescription = null } = input;
  const { launchId, sevPolicy, apiMajor, apiMinor, buildId, launchDigest, chipId } = input;
  const facts = { launchId, sevPolicy, apiMajor, apiMinor, buildId, launchDigest, chipId };
  if (!isUuid(clientId)) throw new StoreError('ERR_STORE_ARGUMENT', 'client id must be a UUID');
  if (!isUuid(facts.launchId)) throw new StoreError('ERR_STORE_ARGUMENT', 'launch id must be a UUID');
  requireLength(key, KEY_LENGTH, 'connection key');
  requireUint(facts.sevPolicy, 0xffffffff, 'sevPolicy');
  requireUint(facts.apiMajor, 0xff, 'apiMajor');
  requireUint(facts.apiMinor, 0xff, 'apiMinor');
  requireUint(facts.buildId, 0xff, 'buildId');
  requireBuffer(facts.launchDigest, 'launchDigest');
  requireId(facts.chipId, 'chipId');
  if (launchDescription !== null && typeof launchDescription !== 'string') throw new StoreError('ERR_STORE_ARGUMENT', 'launchDescription must be a string');
  if (!(expiresAt.getTime() > createdAt.getTime())) {
    throw new StoreError('ERR_STORE_ARGUMENT', 'connection must expire after it is created');
  }
  const keyEnc = sealer.seal(key, { ...SEALED_COLUMN, rowId: clientId.toLowerCase() });
  return { row: { clientId, keyEnc, createdAt, expiresAt, launchDescription, ...facts }, key: Buffer.from(key) };
}

function toInfo(row: typeof connections.$inferSelect): ConnectionInfo {
  const { clientId, launchId, sevPolicy, apiMajor, apiMinor, buildId, launchDigest, chipId, createdAt, expiresAt, revokedAt, launchDescription } = row;
  return { clientId, launchId, sevPolicy, apiMajor, apiMinor, buildId, launchDigest, chipId, createdAt, expiresAt, revokedAt, launchDescription };
}
