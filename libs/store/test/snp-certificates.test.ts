import { randomBytes } from 'node:crypto';
import { openStore, PGLITE_MEMORY, type Store } from '../src';
import { createTestDatabase, requirePgUrl, type TestDatabase } from './support/postgres';

/** The snp_certificates table (migration 0002) on PGlite and, with KB_TEST_DATABASE_URL, on PostgreSQL. */
const drivers: [string, () => Promise<{ store: Store; done: () => Promise<void> }>][] = [
  [
    'pglite',
    async () => {
      const store = await openStore({ driver: 'pglite', dataDir: PGLITE_MEMORY, masterKey: randomBytes(32) });
      return { store, done: () => store.close() };
    },
  ],
];
const pg = requirePgUrl();
if (pg) {
  drivers.push([
    'pg',
    async () => {
      const db: TestDatabase = await createTestDatabase(pg);
      const store = await openStore({ driver: 'pg', url: db.url, masterKey: randomBytes(32) });
      return { store, done: async () => (await store.close(), await db.drop()) };
    },
  ]);
}

describe.each(drivers)('SNP certificate store (%s)', (_name, open) => {
  let h: Awaited<ReturnType<typeof open>>;
  beforeAll(async () => {
    h = await open();
  }, 120_000);
  afterAll(() => h?.done());

  it('put, replace (keeping createdAt), get, list by kind and product, delete', async () => {
    const { store } = h;
    const t1 = new Date('2026-01-01T00:00:00Z');
    const t2 = new Date('2026-02-01T00:00:00Z');
    const der = randomBytes(100);
    await store.putSnpCertificate({ key: 'vcek/Genoa/aa/bl01_tee00_snp02_ucode03', kind: 'vcek', product: 'Genoa', der, source: 'import' }, t1);
    await store.putSnpCertificate({ key: 'ark/Genoa', kind: 'ark', product: 'Genoa', der: Buffer.from([1]), source: 'kds', expiresAt: t2 }, t1);
    await store.putSnpCertificate({ key: 'ark/Milan', kind: 'ark', product: 'Milan', der: Buffer.from([2]), source: 'import' }, t1);
    const replaced = await store.putSnpCertificate(
      { key: 'vcek/Genoa/aa/bl01_tee00_snp02_ucode03', kind: 'vcek', product: 'Genoa', der: Buffer.from([9]), source: 'kds' },
      t2,
    );
    expect(replaced.createdAt).toEqual(t1);
    expect(replaced.updatedAt).toEqual(t2);
    const got = await store.getSnpCertificate('vcek/Genoa/aa/bl01_tee00_snp02_ucode03');
    expect(got?.der).toEqual(Buffer.from([9]));
    expect(got?.source).toBe('kds');
    expect((await store.getSnpCertificate('ark/Genoa'))?.expiresAt).toEqual(t2);
    expect((await store.listSnpCertificates({ kind: 'ark' })).map((r) => r.key)).toEqual(['ark/Genoa', 'ark/Milan']);
    expect((await store.listSnpCertificates({ product: 'Genoa' })).map((r) => r.key)).toEqual(['ark/Genoa', 'vcek/Genoa/aa/bl01_tee00_snp02_ucode03']);
    expect(await store.deleteSnpCertificate('ark/Milan')).toBe(true);
    expect(await store.deleteSnpCertificate('ark/Milan')).toBe(false);
    expect(await store.getSnpCertificate('ark/Milan')).toBeUndefined();
  });

  it('bad input is refused with ERR_STORE_ARGUMENT and writes nothing', async () => {
    const { store } = h;
    const before = await store.listSnpCertificates();
    const bad = [
      { key: 'has space', kind: 'vcek', product: 'Genoa', der: Buffer.from([1]), source: 'import' },
      { key: 'x', kind: 'vlek', product: 'Genoa', der: Buffer.from([1]), source: 'import' },
      { key: 'x', kind: 'ark', product: 'Genoa', der: Buffer.from([1]), source: 'web' },
      { key: 'x', kind: 'ark', product: 'Genoa', der: 'not bytes', source: 'import' },
    ];
    for (const b of bad) await expect(store.putSnpCertificate(b as never)).rejects.toMatchObject({ code: 'ERR_STORE_ARGUMENT' });
    expect(await store.listSnpCertificates()).toEqual(before);
  });
});
