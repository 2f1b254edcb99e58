import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { openStore, type Store } from '../src/open';
import { createTestDatabase, rawClient, requirePgUrl, type TestDatabase } from './support/postgres';
import { codeOf, sessionInput, storeSuite, type RawQuery } from './support/store-suite';

/** How many migrations the schema has (drizzle-kit's journal): each is applied exactly once. */
const MIGRATIONS = (JSON.parse(readFileSync(join(__dirname, '../migrations/meta/_journal.json'), 'utf8')) as { entries: unknown[] }).entries.length;

const SLOW = 120_000;

// Sessions on the wall clock: consumers below use `new Date()` as now.
const liveSession = () => sessionInput({ createdAt: new Date(), expiresAt: new Date(Date.now() + 60_000) });

describe('store on PostgreSQL (KB_TEST_DATABASE_URL)', () => {
  const baseUrl = requirePgUrl();
  if (baseUrl === undefined) return;

  const masterKey = randomBytes(32);
  let database: TestDatabase;
  let store: Store;
  let raw: RawQuery;
  let endRaw: () => Promise<void>;

  beforeAll(async () => {
    database = await createTestDatabase(baseUrl);
    store = await openStore({ driver: 'pg', url: database.url, masterKey });
    ({ query: raw, end: endRaw } = await rawClient(database.url));
  });

  afterAll(async () => {
    await store?.close();
    await endRaw?.();
    await database?.drop();
  });

  storeSuite(() => ({ store, raw }));

  describe('PostgreSQL specifics', () => {
    const opened: Store[] = [];
    const open = async (options: { url?: string; key?: Buffer; maxConnections?: number } = {}) => {
      const s = await openStore({
        driver: 'pg',
        url: options.url ?? database.url,
        masterKey: options.key ?? masterKey,
        maxConnections: options.maxConnections,
      });
      opened.push(s);
      return s;
    };
    afterAll(async () => {
      await Promise.all(opened.map((s) => s.close()));
    });

    it('reports its driver', () => {
      expect(store.driver).toBe('pg');
    });

    it('opening again applies nothing twice', async () => {
      await open();
      const [row] = await raw('SELECT count(*)::int AS n FROM drizzle.__drizzle_migrations');
      expect(row!.n).toBe(MIGRATIONS);
    });

    it(
      'two stores on one database: created on one, consumed on the other, one winner across both',
      async () => {
        const other = await open({ maxConnections: 3 });
        const { id } = await store.createLaunchSession(liveSession());
        expect((await other.consumeLaunchSession(id, new Date()))?.id).toBe(id);
        expect(await store.consumeLaunchSession(id, new Date())).toBeUndefined();

        for (let round = 0; round < 15; round++) {
          const s = await other.createLaunchSession(liveSession());
          const attempts = Array.from({ length: 16 }, (_, i) => (i % 2 === 0 ? store : other).consumeLaunchSession(s.id, new Date()));
          const winners = (await Promise.all(attempts)).filter((r) => r !== undefined);
          expect(winners).toHaveLength(1);
        }
      },
      SLOW,
    );

    it('50 concurrent consumers through a 2-connection pool: one winner', async () => {
      const small = await open({ maxConnections: 2 });
      const { id } = await small.createLaunchSession(liveSession());
      const results = await Promise.all(Array.from({ length: 50 }, () => small.consumeLaunchSession(id, new Date())));
      expect(results.filter((r) => r !== undefined)).toHaveLength(1);
    });

    it('release counter holds across two stores', async () => {
      const other = await open();
      const results = await Promise.all(Array.from({ length: 40 }, (_, i) => (i % 2 ? store : other).incrementReleaseCount('shared', 7)));
      expect(results.filter((r) => r !== undefined).sort((a, b) => a! - b!)).toEqual([1, 2, 3, 4, 5, 6, 7]);
    });

    it(
      'keyset writes and secret deletes racing on two stores never leave a keyset naming a deleted secret',
      async () => {
        const other = await open();
        for (let i = 0; i < 20; i++) {
          await store.putSecret({ id: `race-${i}`, value: Buffer.from('v') });
        }
        const outcomes = await Promise.all(
          Array.from({ length: 20 }, async (_, i) => {
            const [put, del] = await Promise.all([
              codeOf(store.putKeyset({ id: `ks-${i}`, secretIds: [`race-${i}`] })),
              other.deleteSecret(`race-${i}`).then(
                (deleted) => (deleted ? 'deleted' : 'absent'),
                (e: { code?: string }) => e.code,
              ),
            ]);
            return `${put ?? 'put'}/${del}`;
          }),
        );
        for (const o of outcomes) expect(['put/ERR_STORE_IN_USE', 'ERR_STORE_NOT_FOUND/deleted']).toContain(o);
        const orphans = await raw(
          `SELECT k.id FROM keysets k, jsonb_array_elements_text(k.secret_ids) s(id) WHERE NOT EXISTS (SELECT 1 FROM secrets WHERE id = s.id)`,
        );
        expect(orphans).toEqual([]);
      },
      SLOW,
    );

    it('brokers purging the audit log at once delete each old entry exactly once between them', async () => {
      const others = await Promise.all([open(), open()]);
      const cutoff = new Date('2030-01-01T00:00:00Z');
      const old = Array.from({ length: 40 }, (_, i) => ({ at: new Date(cutoff.getTime() - (i + 1) * 1000), event: 'GetBundle', outcome: 'issued' }));
      await store.appendAudits([...old, { at: cutoff, event: 'GetBundle', outcome: 'kept' }]);
      const counts = await Promise.all([store, ...others].map((s) => s.purgeAuditBefore(cutoff, { batchSize: 3 })));
      // one that meets another's deletes may stop early: whatever is left is the next purge's, never counted twice
      const rest = await store.purgeAuditBefore(cutoff);
      expect(counts.reduce((a, b) => a + b, rest)).toBe(40);
      expect((await store.listAudit()).map((e) => e.outcome)).toEqual(['kept']);
    });

    it('a different master key is refused at open', async () => {
      expect(await codeOf(openStore({ driver: 'pg', url: database.url, masterKey: randomBytes(32) }))).toBe('ERR_STORE_MASTER_KEY');
    });

    it(
      'four brokers opening one fresh database at once migrate it exactly once',
      async () => {
        const fresh = await createTestDatabase(baseUrl);
        try {
          const stores = await Promise.all(Array.from({ length: 4 }, () => openStore({ driver: 'pg', url: fresh.url, masterKey })));
          try {
            await stores[0]!.putSecret({ id: 'a', value: Buffer.from('1') });
            expect((await stores[3]!.getSecret('a'))?.value.toString()).toBe('1');
            const check = await rawClient(fresh.url);
            try {
              expect(await check.query('SELECT count(*)::int AS n FROM drizzle.__drizzle_migrations')).toEqual([{ n: MIGRATIONS }]);
            } finally {
              await check.end();
            }
          } finally {
            await Promise.all(stores.map((s) => s.close()));
          }
        } finally {
          await fresh.drop();
        }
      },
      SLOW,
    );

    it('unreachable server, unknown role or missing database → ERR_STORE_CONNECT', async () => {
      const url = new URL(database.url);
      const refused = new URL(url);
      refused.port = '1';
      // An unknown role rather than a wrong password: the password is not checked under trust authentication.
      const unknownRole = new URL(url);
      unknownRole.username = 'kb_no_such_role';
      const noDatabase = new URL(url);
      noDatabase.pathname = '/kb_no_such_database';
      for (const u of [refused, unknownRole, noDatabase]) {
        expect(await codeOf(openStore({ driver: 'pg', url: u.toString(), masterKey }))).toBe('ERR_STORE_CONNECT');
      }
    });

    it('statementTimeoutMs cancels a statement stuck on a lock (ERR_STORE_TIMEOUT) and gives its connection back', async () => {
      const s = await openStore({ driver: 'pg', url: database.url, masterKey, maxConnections: 1, statementTimeoutMs: 300 });
      opened.push(s);
      const { id } = await s.createLaunchSession(liveSession());
      const locker = await rawClient(database.url);
      try {
        await locker.query('BEGIN');
        await locker.query('SELECT 1 FROM launch_sessions WHERE id = $1 FOR UPDATE', [id]);
        const t0 = Date.now();
        expect(await codeOf(s.consumeLaunchSession(id, new Date()))).toBe('ERR_STORE_TIMEOUT');
        expect(Date.now() - t0).toBeGreaterThanOrEqual(250);
        expect(Date.now() - t0).toBeLessThan(10_000);
        // The pool's only connection is usable while the lock is still held, and nothing was consumed.
        expect(await s.listPolicyNames()).toEqual(expect.any(Array));
      } finally {
        await locker.query('ROLLBACK');
        await locker.end();
      }
      expect((await s.consumeLaunchSession(id, new Date()))?.id).toBe(id);
    });

    it('statementTimeoutMs must be a positive integer', async () => {
      for (const statementTimeoutMs of [0, -1, 1.5, Number.NaN]) {
        expect(await codeOf(openStore({ driver: 'pg', url: database.url, masterKey, statementTimeoutMs }))).toBe('ERR_STORE_ARGUMENT');
      }
    });

    it('use after close → ERR_STORE_CLOSED', async () => {
      const s = await openStore({ driver: 'pg', url: database.url, masterKey });
      await s.close();
      expect(await codeOf(s.listPolicyNames())).toBe('ERR_STORE_CLOSED');
    });
  });
});
