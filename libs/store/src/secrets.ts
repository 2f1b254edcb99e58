/** Secrets by KBS resource path (e.g. "default/key/key_id1"), sealed at rest. */
import { sql } from 'drizzle-orm';
import type { StoreContext } from './context';
import { StoreError } from './errors';
import { sealedItems, type SealedItem, type SealedItemInput } from './sealed-items';
import { keysets, secrets } from './schema';

export type SecretRecord = SealedItem;
export type SecretInput = SealedItemInput;

export interface SecretStore {
  /** Creates or replaces; ERR_STORE_NOT_FOUND if policyName names no policy. */
  putSecret(input: SecretInput, now?: Date): Promise<SecretRecord>;
  getSecret(id: string): Promise<SecretRecord | undefined>;
  listSecretIds(): Promise<string[]>;
  /** false if there was no such secret; ERR_STORE_IN_USE while a keyset lists it. */
  deleteSecret(id: string): Promise<boolean>;
}

export function secretStore(ctx: StoreContext): SecretStore {
  const items = sealedItems(ctx, secrets, 'secret');
  return {
    putSecret: (input, now = new Date()) => items.put(input, now),
    getSecret: (id) => items.get(id),
    listSecretIds: () => items.listIds(),
    deleteSecret: (id) =>
      items.delete(id, async (tx) => {
        // Runs after the delete, in a fresh READ COMMITTED snapshot: a keyset committed meanwhile is seen, and a
        // concurrent putKeyset holding a KEY SHARE lock on this secret made the delete wait for it.
        const [user] = await tx
          .select({ id: keysets.id })
          .from(keysets)
          .where(sql`${keysets.secretIds} @> ${JSON.stringify([id])}::jsonb`)
          .limit(1);
        if (user) throw new StoreError('ERR_STORE_IN_USE', `secret '${id}' is listed in keyset '${user.id}'`);
      }),
  };
}
