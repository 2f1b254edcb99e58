/**
 * KBS (RCAR) protocol state, ../shared/specs/kbs-protocol.md: handshake sessions (§2.6), resources under
 * `repository/type/tag` (§6.1) and the broker's token-signing key (§5.5). All in the database, so brokers sharing one
 * PostgreSQL serve either half of a handshake and a restart loses nothing.
 */
import { and, eq, gt, lte } from 'drizzle-orm';
import { requireId, type StoreContext } from './context';
import { StoreError } from './errors';
import { sealedItems, type SealedItem } from './sealed-items';
import { kbsResources, kbsSessions, storeMeta } from './schema';

export interface KbsSessionInput {
  /** 32 lowercase hex digits (trustee's session id form) */
  id: string;
  tee: string;
  nonce: string;
  createdAt: Date;
  expiresAt: Date;
}

export interface KbsSession {
  id: string;
  tee: string;
  nonce: string;
  state: 'authed' | 'attesting' | 'attested' | 'failed';
  createdAt: Date;
  expiresAt: Date;
}

export interface KbsResourceRecord {
  /** `repository/type/tag` */
  id: string;
  bytes: Buffer;
  policyName: string | null;
  createdAt: Date;
  updatedAt: Date;
}

export interface KbsStore {
  createKbsSession(input: KbsSessionInput): Promise<void>;
  /**
   * The /attest claim: moves an `authed`, unexpired session to `attesting` and returns it. One UPDATE: of any number
   * of concurrent callers (any broker) exactly one gets it; the nonce is then spent whatever the outcome.
   */
  claimKbsSession(id: string, now: Date): Promise<KbsSession | undefined>;
  /** attesting → attested with the issued token (sealed), or → failed when `token` is undefined. */
  finishKbsSession(id: string, token: string | undefined): Promise<void>;
  /** The token of an attested, unexpired session (cookie path of §5.4), or undefined. */
  kbsSessionToken(id: string, now: Date): Promise<{ session: KbsSession; token: string } | undefined>;
  /** The session in any state if unexpired (for /attest on an already attested session, §3.5 step 4). */
  getKbsSession(id: string, now: Date): Promise<KbsSession | undefined>;
  purgeExpiredKbsSessions(now: Date): Promise<number>;
  putKbsResource(input: { id: string; bytes: Buffer; policyName?: string | null }, now?: Date): Promise<KbsResourceRecord>;
  getKbsResource(id: string): Promise<KbsResourceRecord | undefined>;
  listKbsResourceIds(): Promise<string[]>;
  deleteKbsResource(id: string): Promise<boolean>;
  /**
   * The token-signing key (PKCS#8 DER), sealed in store_meta. Created with `create()` on first use; replicas racing
   * on an empty database all end up with the first one written (INSERT … ON CONFLICT DO NOTHING, then read).
   */
  kbsTokenKey(create: () => Buffer): Promise<Buffer>;
}

const SESSION_ID = /^[0-9a-f]{32}$/;
const TOKEN_COLUMN = { table: 'kbs_sessions', column: 'token_enc' };
const TOKEN_KEY_ROW = 'kbs-token-signing-key';
const TOKEN_KEY_BINDING = { table: 'store_meta', column: 'value', rowId: TOKEN_KEY_ROW };

export function kbsStore(ctx: StoreContext): KbsStore {
  const items = sealedItems(ctx, kbsResources, 'KBS resource');
  const cols = {
    id: kbsSessions.id,
    tee: kbsSessions.tee,
    nonce: kbsSessions.nonce,
    state: kbsSessions.state,
    createdAt: kbsSessions.createdAt,
    expiresAt: kbsSessions.expiresAt,
  };
  const toSession = (r: { id: string; tee: string; nonce: string; state: string; createdAt: Date; expiresAt: Date }): KbsSession => ({
    ...r,
    state: r.state as KbsSession['state'],
  });
  const toResource = ({ value, ...rest }: SealedItem): KbsResourceRecord => ({ ...rest, bytes: value });

  return {
    async createKbsSession({ id, tee, nonce, createdAt, expiresAt }) {
      if (!SESSION_ID.test(id)) throw new StoreError('ERR_STORE_ARGUMENT', 'KBS session id must be 32 lowercase hex digits');
      requireId(tee, 'tee');
      requireId(nonce, 'nonce');
      if (!(expiresAt.getTime() > createdAt.getTime())) throw new StoreError('ERR_STORE_ARGUMENT', 'KBS session must expire after it is created');
      await ctx.run((db) => db.insert(kbsSessions).values({ id, tee, nonce, state: 'authed', createdAt, expiresAt }), {
        unique: () => new StoreError('ERR_STORE_CONFLICT', `KBS session ${id} already exists`),
      });
    },

    async claimKbsSession(id, now) {
      if (!SESSION_ID.test(id)) return undefined;
      const [row] = await ctx.run((db) =>
        db
          .update(kbsSessions)
          .set({ state: 'attesting', claimedAt: now })
          .where(and(eq(kbsSessions.id, id), eq(kbsSessions.state, 'authed'), gt(kbsSessions.expiresAt, now)))
          .returning(cols),
      );
      return row && toSession(row);
    },

    async finishKbsSession(id, token) {
      const tokenEnc = token === undefined ? null : ctx.sealer.seal(Buffer.from(token, 'utf8'), { ...TOKEN_COLUMN, rowId: id });
      await ctx.run((db) =>
        db
          .update(kbsSessions)
          .set({ state: token === undefined ? 'failed' : 'attested', tokenEnc })
          .where(and(eq(kbsSessions.id, id), eq(kbsSessions.state, 'attesting'))),
      );
    },

    async kbsSessionToken(id, now) {
      if (!SESSION_ID.test(id)) return undefined;
      const [row] = await ctx.run((db) =>
        db
          .select({ ...cols, tokenEnc: kbsSessions.tokenEnc })
          .from(kbsSessions)
          .where(and(eq(kbsSessions.id, id), eq(kbsSessions.state, 'attested'), gt(kbsSessions.expiresAt, now))),
      );
      if (!row || row.tokenEnc === null) return undefined;
      const { tokenEnc, ...rest } = row;
      return { session: toSession(rest), token: ctx.sealer.open(tokenEnc, { ...TOKEN_COLUMN, rowId: row.id }).toString('utf8') };
    },

    async getKbsSession(id, now) {
      if (!SESSION_ID.test(id)) return undefined;
      const [row] = await ctx.run((db) =>
        db
          .select(cols)
          .from(kbsSessions)
          .where(and(eq(kbsSessions.id, id), gt(kbsSessions.expiresAt, now))),
      );
      return row && toSession(row);
    },

    async purgeExpiredKbsSessions(now) {
      const rows = await ctx.run((db) => db.delete(kbsSessions).where(lte(kbsSessions.expiresAt, now)).returning({ id: kbsSessions.id }));
      return rows.length;
    },

    putKbsResource: async ({ bytes, ...rest }, now = new Date()) => toResource(await items.put({ ...rest, value: bytes }, now)),
    getKbsResource: async (id) => {
      const item = await items.get(id);
      return item && toResource(item);
    },
    listKbsResourceIds: () => items.listIds(),
    deleteKbsResource: (id) => items.delete(id),

    async kbsTokenKey(create) {
      const read = async () => {
        const [row] = await ctx.run((db) => db.select({ value: storeMeta.value }).from(storeMeta).where(eq(storeMeta.key, TOKEN_KEY_ROW)));
        return row && ctx.sealer.open(row.value, TOKEN_KEY_BINDING);
      };
      const existing = await read();
      if (existing) return existing;
      const sealed = ctx.sealer.seal(create(), TOKEN_KEY_BINDING);
      await ctx.run((db) => db.insert(storeMeta).values({ key: TOKEN_KEY_ROW, value: sealed }).onConflictDoNothing());
      const stored = await read();
      if (!stored) throw new StoreError('ERR_STORE_NOT_FOUND', 'the KBS token key was not stored');
      return stored;
    },
  };
}
