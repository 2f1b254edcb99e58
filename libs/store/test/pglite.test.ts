import { randomBytes } from 'node:crypto';
import type { PGlite } from '@electric-sql/pglite';
import { DEFAULT_MIGRATIONS_FOLDER } from '../src/migrations';
import { storeOnPglite, type Store } from '../src/open';
import { Sealer } from '../src/sealing';
import { requireVmModules } from './support/pglite';
import { storeSuite } from './support/store-suite';

describe('store on PGlite (memory://)', () => {
  if (!requireVmModules()) return;

  let client: PGlite;
  let store: Store;

  beforeAll(async () => {
    // The PGlite class is loaded lazily so that, without vm modules, nothing touches it.
    const { PGlite } = await import('@electric-sql/pglite');
    client = await PGlite.create('memory://');
    store = await storeOnPglite(client, new Sealer(randomBytes(32)), DEFAULT_MIGRATIONS_FOLDER);
  });

  afterAll(async () => {
    await store?.close();
  });

  storeSuite(() => ({ store, raw: async (sql, params) => (await client.query<Record<string, unknown>>(sql, params)).rows }));

  describe('PGlite specifics', () => {
    it('reports its driver', () => {
      expect(store.driver).toBe('pglite');
    });
  });
});
