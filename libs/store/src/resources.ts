/** Resources: opaque bytes by KBS resource path, kept in the database (sealed), never as files on disk. */
import type { StoreContext } from './context';
import { sealedItems, type SealedItem } from './sealed-items';
import { resources } from './schema';

export interface ResourceRecord {
  id: string;
  bytes: Buffer;
  policyName: string | null;
  createdAt: Date;
  updatedAt: Date;
}

export interface ResourceInput {
  id: string;
  bytes: Buffer;
  policyName?: string | null;
}

export interface ResourceStore {
  /** Creates or replaces; ERR_STORE_NOT_FOUND if policyName names no policy. */
  putResource(input: ResourceInput, now?: Date): Promise<ResourceRecord>;
  getResource(id: string): Promise<ResourceRecord | undefined>;
  listResourceIds(): Promise<string[]>;
  deleteResource(id: string): Promise<boolean>;
}

export function resourceStore(ctx: StoreContext): ResourceStore {
  const items = sealedItems(ctx, resources, 'resource');
  return {
    putResource: async ({ bytes, ...rest }, now = new Date()) => toResource(await items.put({ ...rest, value: bytes }, now)),
    getResource: async (id) => {
      const item = await items.get(id);
      return item && toResource(item);
    },
    listResourceIds: () => items.listIds(),
    deleteResource: (id) => items.delete(id),
  };
}

function toResource({ value, ...rest }: SealedItem): ResourceRecord {
  return { ...rest, bytes: value };
}
