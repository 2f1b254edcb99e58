/**
 * Shared create-or-replace / get / list / delete for the tables holding one sealed value per id under an optional
 * policy (secrets, resources, report_keys). The AAD binds each ciphertext to its table, column and id.
 */
import { asc, eq, getTableColumns, getTableName, sql } from 'drizzle-orm';
import { notFound, requireBuffer, requireId, type Db, type StoreContext } from './context';
import type { SealedItemTable } from './schema';

export interface SealedItem {
  id: string;
  value: Buffer;
  policyName: string | null;
  createdAt: Date;
  updatedAt: Date;
}

export interface SealedItemInput {
  id: string;
  value: Buffer;
  policyName?: string | null;
}

export interface SealedItems {
  put(input: SealedItemInput, now: Date): Promise<SealedItem>;
  get(id: string): Promise<SealedItem | undefined>;
  listIds(): Promise<string[]>;
  /** `stillUsed` runs in the deleting transaction after the delete; a throw rolls the delete back. */
  delete(id: string, stillUsed?: (tx: Db) => Promise<void>): Promise<boolean>;
}

export function sealedItems(ctx: StoreContext, table: SealedItemTable, what: string): SealedItems {
  const binding = (rowId: string) => ({ table: getTableName(table), column: getTableColumns(table).sealed.name, rowId });
  const byId = ctx.prepared((db) =>
    db
      .select()
      .from(table)
      .where(eq(table.id, sql.placeholder('id')))
      .prepare(`kb_${getTableName(table)}_get`),
  );

  function item(row: typeof table.$inferSelect, value: Buffer): SealedItem {
    return { id: row.id, value, policyName: row.policyName, createdAt: row.createdAt, updatedAt: row.updatedAt };
  }

  return {
    async put({ id, value, policyName = null }, now) {
      requireId(id, `${what} id`);
      requireBuffer(value, what);
      const sealed = ctx.sealer.seal(value, binding(id));
      const [row] = await ctx.run(
        (db) =>
          db
            .insert(table)
            .values({ id, sealed, policyName, createdAt: now, updatedAt: now })
            .onConflictDoUpdate({ target: table.id, set: { sealed, policyName, updatedAt: now } })
            .returning(),
        { foreignKey: () => notFound(`policy '${policyName}'`) },
      );
      return item(row!, Buffer.from(value));
    },

    async get(id) {
      const [row] = await ctx.run(() => byId().execute({ id }));
      return row && item(row, ctx.sealer.open(row.sealed, binding(row.id)));
    },

    async listIds() {
      const rows = await ctx.run((db) => db.select({ id: table.id }).from(table).orderBy(asc(table.id)));
      return rows.map((r) => r.id);
    },

    delete(id, stillUsed) {
      return ctx.run((db) =>
        db.transaction(async (tx) => {
          const rows = await tx.delete(table).where(eq(table.id, id)).returning({ id: table.id });
          if (rows.length > 0) await stillUsed?.(tx);
          return rows.length > 0;
        }),
      );
    },
  };
}
