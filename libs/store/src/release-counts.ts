/** Per-key release counters behind "at most N releases" policy rules; keys are chosen by the caller. */
import { eq, sql } from 'drizzle-orm';
import { requireId, type StoreContext } from './context';
import { StoreError } from './errors';
import { releaseCounts } from './schema';

export interface ReleaseCountStore {
  getReleaseCount(key: string): Promise<number>;
  /**
   * Adds one release and returns the new count, or undefined (and changes nothing) if the count has already reached
   * `max`. Check and increment are one statement, so concurrent callers can never push the count past `max`.
   */
  incrementReleaseCount(key: string, max?: number, now?: Date): Promise<number | undefined>;
}

export function releaseCountStore(ctx: StoreContext): ReleaseCountStore {
  return {
    async getReleaseCount(key) {
      const [row] = await ctx.run((db) => db.select({ count: releaseCounts.count }).from(releaseCounts).where(eq(releaseCounts.key, key)));
      return row?.count ?? 0;
    },

    async incrementReleaseCount(key, max, now = new Date()) {
      requireId(key, 'release counter key');
      if (max !== undefined && (!Number.isSafeInteger(max) || max < 0)) {
        throw new StoreError('ERR_STORE_ARGUMENT', 'max releases must be a non-negative integer');
      }
      if (max === 0) return undefined;
      const [row] = await ctx.run((db) =>
        db
          .insert(releaseCounts)
          .values({ key, count: 1, updatedAt: now })
          .onConflictDoUpdate({
            target: releaseCounts.key,
            set: { count: sql`${releaseCounts.count} + 1`, updatedAt: now },
            setWhere: max === undefined ? undefined : sql`${releaseCounts.count} < ${max}`,
          })
          .returning({ count: releaseCounts.count }),
      );
      return row?.count;
    },
  };
}
