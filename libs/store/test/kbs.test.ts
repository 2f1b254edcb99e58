/**
 * KBS handshake sessions, resources and the token key (kbs.ts) on PGlite and on PostgreSQL: a session is claimed
 * once (also under concurrent claims from two stores on one database), expires, and its token and the resources are
 * sealed at rest, bound to their rows.
 */
import { randomBytes } from 'node:crypto';
import { DEFAULT_MIGRATIONS_FOLDER } from '../src/migrations';
import { openStore, storeOnPglite, type Store } from '../src/open';
import { Sealer } from '../src/sealing';
import { requireVmModules } from './support/pglite';
import { createTestDatabase, rawClient, requirePgUrl, type TestDatabase } from './support/postgres';
import type { RawQuery } from './support/store-suite';

const T0 = new Date('2030-01-01T00:00:00.000Z');
const at = (s: number) => new Date(T0.getTime() + s * 1000);
const sid = () => randomBytes(16).toString('hex');

function kbsSuite(h: () => { store: Store; raw: RawQuery; second?: Store }) {
  it('a session is claimed once, then holds its token sealed; a failed one holds none', async () => {
    const { store, raw } = h();
    const id = sid();
    await store.createKbsSession({ id, tee: 'snp', nonce: 'N1', createdAt: T0, expiresAt: at(300) });
    const claimed = await store.claimKbsSession(id, at(10));
    expect(claimed).toMatchObject({ id, tee: 'snp', nonce: 'N1', state: 'attesting' });
    expect(await store.claimKbsSession(id, at(11))).toBeUndefined();
    expect(await store.kbsSessionToken(id, at(12))).toBeUndefined();
    await store.finishKbsSession(id, 'the.token.value');
    expect((await store.kbsSessionToken(id, at(13)))?.token).toBe('the.token.value');
    const [row] = await raw('SELECT token_enc FROM kbs_sessions WHERE id = $1', [id]);
    expect(Buffer.from(row!.token_enc as Uint8Array).includes(Buffer.from('the.token.value'))).toBe(false);
    expect(await store.kbsSessionToken(id, at(300))).toBeUndefined();

    const failed = sid();
    await store.createKbsSession({ id: failed, tee: 'sample', nonce: 'N2', createdAt: T0, expiresAt: at(300) });
    await store.claimKbsSession(failed, at(1));
    await store.finishKbsSession(failed, undefined);
    expect(await store.kbsSessionToken(failed, at(2))).toBeUndefined();
    expect(await store.claimKbsSession(failed, at(2))).toBeUndefined();
  });

  it('an expired session cannot be claimed and is purged', async () => {
    const { store } = h();
    const id = sid();
    await store.createKbsSession({ id, tee: 'snp', nonce: 'N', createdAt: T0, expiresAt: at(5) });
    expect(await store.claimKbsSession(id, at(5))).toBeUndefined();
    expect(await store.purgeExpiredKbsSessions(at(6))).toBeGreaterThanOrEqual(1);
    expect(await store.getKbsSession(id, at(0))).toBeUndefined();
  });

  it('refuses malformed ids without a query error, and duplicates', async () => {
    const { store } = h();
    expect(await store.claimKbsSession("x' OR 1=1 --", at(0))).toBeUndefined();
    await expect(store.createKbsSession({ id: 'ABC', tee: 'snp', nonce: 'N', createdAt: T0, expiresAt: at(1) })).rejects.toMatchObject({
      code: 'ERR_STORE_ARGUMENT',
    });
    const id = sid();
    await store.createKbsSession({ id, tee: 'snp', nonce: 'N', createdAt: T0, expiresAt: at(1) });
    await expect(store.createKbsSession({ id, tee: 'snp', nonce: 'N', createdAt: T0, expiresAt: at(1) })).rejects.toMatchObject({ code: 'ERR_STORE_CONFLICT' });
  });

  it('of concurrent claims of one session (two stores on one database) exactly one wins', async () => {
    const { store, second } = h();
    const id = sid();
    await store.createKbsSession({ id, tee: 'snp', nonce: 'N', createdAt: T0, expiresAt: at(300) });
    const other = second ?? store;
    const results = await Promise.all(Array.from({ length: 8 }, (_, i) => (i % 2 ? other : store).claimKbsSession(id, at(1))));
    expect(results.filter(Boolean)).toHaveLength(1);
  });

  it('resources are sealed at rest, bound to their row, with an optional policy', async () => {
    const { store, raw } = h();
    await store.putPolicy('kbs-p', { version: 1, allowedDigests: 'any' });
    const bytes = Buffer.from('resource-secret-bytes');
    const r = await store.putKbsResource({ id: 'repo/key/one', bytes, policyName: 'kbs-p' }, T0);
    expect(r.policyName).toBe('kbs-p');
    expect((await store.getKbsResource('repo/key/one'))?.bytes.equals(bytes)).toBe(true);
    const [row] = await raw('SELECT bytes_enc FROM kbs_resources WHERE id = $1', ['repo/key/one']);
    expect(Buffer.from(row!.bytes_enc as Uint8Array).includes(bytes)).toBe(false);
    await store.putKbsResource({ id: 'repo/key/two', bytes: Buffer.from('2') }, T0);
    await raw('UPDATE kbs_resources SET bytes_enc = (SELECT bytes_enc FROM kbs_resources WHERE id = $1) WHERE id = $2', ['repo/key/one', 'repo/key/two']);
    await expect(store.getKbsResource('repo/key/two')).rejects.toMatchObject({ code: 'ERR_STORE_DECRYPT' });
    await expect(store.putKbsResource({ id: 'repo/key/three', bytes, policyName: 'missing' })).rejects.toMatchObject({ code: 'ERR_STORE_NOT_FOUND' });
    expect(await store.listKbsResourceIds()).toEqual(expect.arrayContaining(['repo/key/one', 'repo/key/two']));
    expect(await store.deleteKbsResource('repo/key/one')).toBe(true);
    expect(await store.getKbsResource('repo/key/one')).toBeUndefined();
  });

  it('keeps one token key for every store on the database, sealed', async () => {
    const { store, raw, second } = h();
    const made: Buffer[] = [];
    const create = () => {
      const k = randomBytes(40);
      made.push(k);
      return k;
    };
    const [a, b] = await Promise.all([store.kbsTokenKey(create), (second ?? store).kbsTokenKey(create)]);
    expect(a.equals(b)).toBe(true);
    expect(made.some((k) => k.equals(a))).toBe(true);
    expect((await store.kbsTokenKey(create)).equals(a)).toBe(true);
    const [row] = await raw("SELECT value FROM store_meta WHERE key = 'kbs-token-signing-key'");
    expect(Buffer.from(row!.value as Uint8Array).includes(a)).toBe(false);
  });
}

describe('KBS tables on PGlite', () => {
  if (!requireVmModules()) return;
  let store: Store;
  let client: import('@electric-sql/pglite').PGlite;
  beforeAll(async () => {
    const { PGlite } = await import('@electric-sql/pglite');
    client = await PGlite.create('memory://');
    store = await storeOnPglite(client, new Sealer(randomBytes(32)), DEFAULT_MIGRATIONS_FOLDER);
  });
  afterAll(() => store?.close());
  kbsSuite(() => ({ store, raw: async (sql, params) => (await client.query<Record<string, unknown>>(sql, params)).rows }));
});

describe('KBS tables on PostgreSQL (KB_TEST_DATABASE_URL)', () => {
  const baseUrl = requirePgUrl();
  if (baseUrl === undefined) return;
  const masterKey = randomBytes(32);
  let database: TestDatabase;
  let store: Store;
  let second: Store;
  let raw: RawQuery;
  let endRaw: () => Promise<void>;
  beforeAll(async () => {
    database = await createTestDatabase(baseUrl);
    store = await openStore({ driver: 'pg', url: database.url, masterKey });
    second = await openStore({ driver: 'pg', url: database.url, masterKey });
    ({ query: raw, end: endRaw } = await rawClient(database.url));
  }, 120_000);
  afterAll(async () => {
    await store?.close();
    await second?.close();
    await endRaw?.();
    await database?.drop();
  });
  kbsSuite(() => ({ store, raw, second }));
});
