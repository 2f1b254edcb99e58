/** Keysets: named lists of secret ids released together as a `bundle`. */
import { asc, eq, inArray } from 'drizzle-orm';
import { notFound, requireId, type StoreContext } from './context';
import { StoreError } from './errors';
import { keysets, secrets } from './schema';

export interface KeysetRecord {
  id: string;
  secretIds: string[];
  policyName: string | null;
  createdAt: Date;
  updatedAt: Date;
}

export interface KeysetInput {
  id: string;
  /** May be empty (a launch that needs no keys); every id must name an existing secret. */
  secretIds: string[];
  policyName?: string | null;
}

export interface KeysetStore {
  /** Creates or replaces; ERR_STORE_NOT_FOUND if a secret id or the policy does not exist. */
  putKeyset(input: KeysetInput, now?: Date): Promise<KeysetRecord>;
  getKeyset(id: string): Promise<KeysetRecord | undefined>;
  listKeysetIds(): Promise<string[]>;
  deleteKeyset(id: string): Promise<boolean>;
}

export function keysetStore(ctx: StoreContext): KeysetStore {
  return {
    async putKeyset({ id, secretIds, policyName = null }, now = new Date()) {
      requireId(id, 'keyset id');
      if (!Array.isArray(secretIds)) throw new StoreError('ERR_STORE_ARGUMENT', 'keyset secretIds must be an array');
      secretIds.forEach((s) => requireId(s, 'keyset secret id'));
      const wanted = [...new Set(secretIds)];
      const [row] = await ctx.run(
        (db) =>
          db.transaction(async (tx) => {
            // KEY SHARE locks make a concurrent deleteSecret of a listed secret wait until this keyset is committed
            // (it then sees the keyset and refuses), so a keyset never ends up naming a deleted secret.
            const found = wanted.length === 0 ? [] : await tx.select({ id: secrets.id }).from(secrets).where(inArray(secrets.id, wanted)).for('key share');
            const present = new Set(found.map((r) => r.id));
            const missing = wanted.find((s) => !present.has(s));
            if (missing !== undefined) throw notFound(`secret '${missing}'`);
            return tx
              .insert(keysets)
              .values({ id, secretIds: [...secretIds], policyName, createdAt: now, updatedAt: now })
              .onConflictDoUpdate({ target: keysets.id, set: { secretIds: [...secretIds], policyName, updatedAt: now } })
              .returning();
          }),
        { foreignKey: () => notFound(`policy '${policyName}'`) },
      );
      return row!;
    },

    async getKeyset(id) {
      const [row] = await ctx.run((db) => db.select().from(keysets).where(eq(keysets.id, id)));
      return row;
    },

    async listKeysetIds() {
      const rows = await ctx.run((db) => db.select({ id: keysets.id }).from(keysets).orderBy(asc(keysets.id)));
      return rows.map((r) => r.id);
    },

    async deleteKeyset(id) {
      const rows = await ctx.run((db) => db.delete(keysets).where(eq(keysets.id, id)).returning({ id: keysets.id }));
      return rows.length > 0;
    },
  };
}
