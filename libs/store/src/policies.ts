/** Named policy documents. The store keeps them as opaque JSON; libs/policy validates and evaluates them. */
import { asc, eq, sql } from 'drizzle-orm';
import { requireId, requireJson, type StoreContext } from './context';
import { StoreError } from './errors';
import { policies, type JsonValue } from './schema';

export interface PolicyRecord {
  name: string;
  /** Round-trips through jsonb: same value, but object key order and whitespace are not preserved. */
  document: JsonValue;
  createdAt: Date;
  updatedAt: Date;
}

export interface PolicyStore {
  /** Creates or replaces; a replace keeps createdAt. */
  putPolicy(name: string, document: JsonValue, now?: Date): Promise<PolicyRecord>;
  getPolicy(name: string): Promise<PolicyRecord | undefined>;
  listPolicyNames(): Promise<string[]>;
  /** false if there was no such policy; ERR_STORE_IN_USE while a secret, keyset, resource or report key uses it. */
  deletePolicy(name: string): Promise<boolean>;
}

export function policyStore(ctx: StoreContext): PolicyStore {
  const byName = ctx.prepared((db) =>
    db
      .select()
      .from(policies)
      .where(eq(policies.name, sql.placeholder('name')))
      .prepare('kb_policy_get'),
  );
  return {
    async putPolicy(name, document, now = new Date()) {
      requireId(name, 'policy name');
      requireJson(document, 'policy document');
      // drizzle writes a JS null as SQL NULL, not jsonb 'null'; no policy language gives a bare null a meaning.
      if (document === null) throw new StoreError('ERR_STORE_ARGUMENT', 'policy document must not be null');
      const [row] = await ctx.run((db) =>
        db
          .insert(policies)
          .values({ name, document, createdAt: now, updatedAt: now })
          .onConflictDoUpdate({ target: policies.name, set: { document, updatedAt: now } })
          .returning(),
      );
      return row!;
    },

    async getPolicy(name) {
      const [row] = await ctx.run(() => byName().execute({ name }));
      return row;
    },

    async listPolicyNames() {
      const rows = await ctx.run((db) => db.select({ name: policies.name }).from(policies).orderBy(asc(policies.name)));
      return rows.map((r) => r.name);
    },

    async deletePolicy(name) {
      const rows = await ctx.run((db) => db.delete(policies).where(eq(policies.name, name)).returning({ name: policies.name }), {
        foreignKey: () => new StoreError('ERR_STORE_IN_USE', `policy '${name}' is still referenced`),
      });
      return rows.length > 0;
    },
  };
}
