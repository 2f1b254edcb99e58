import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { PGlite } from '@electric-sql/pglite';
import { DEFAULT_MIGRATIONS_FOLDER, migratePglite } from '../src/migrations';
import { openStore } from '../src/open';
import { requireVmModules } from './support/pglite';
import { codeOf } from './support/store-suite';

const SLOW = 240_000; // several PGlite starts, each seconds of WebAssembly on a busy machine

/**
 * A prepared data directory (what tools/build/pgdata.mjs ships with the built broker: initdb and migrations done, no
 * rows) is copied on a first start instead of running initdb, and only then.
 */
describe('store on PGlite from a prepared data directory (template)', () => {
  if (!requireVmModules()) return;

  let work: string;
  let template: string;
  beforeAll(async () => {
    work = await mkdtemp(path.join(tmpdir(), 'kb-template-'));
    template = path.join(work, 'template');
    // as the build prepares it: schema applied, closed, no master key check row
    const client = await PGlite.create(template);
    await migratePglite(client, DEFAULT_MIGRATIONS_FOLDER);
    await client.close();
  }, SLOW);
  afterAll(async () => {
    await rm(work, { recursive: true, force: true });
  });

  it(
    'a first start copies it (any master key), a restart keeps its data, the template itself is never written',
    async () => {
      const before = readdirSync(template, { recursive: true }).length;
      const dataDir = path.join(work, 'a');
      const keyA = randomBytes(32);
      const first = await openStore({ driver: 'pglite', dataDir, masterKey: keyA, template });
      await first.putSecret({ id: 'default/key/k', value: Buffer.from('kept') });
      await first.close();
      expect(readdirSync(dataDir).sort()).toEqual(['pgdata']);

      // a restart with the template given again: the existing database is used, not replaced
      const again = await openStore({ driver: 'pglite', dataDir, masterKey: keyA, template });
      try {
        expect((await again.getSecret('default/key/k'))?.value.toString()).toBe('kept');
      } finally {
        await again.close();
      }
      // the key check row went to the copy: the same template serves another key elsewhere, and the copy refuses it
      expect(await codeOf(openStore({ driver: 'pglite', dataDir, masterKey: randomBytes(32), template }))).toBe('ERR_STORE_MASTER_KEY');
      const other = await openStore({ driver: 'pglite', dataDir: path.join(work, 'b'), masterKey: randomBytes(32), template });
      try {
        expect(await other.getSecret('default/key/k')).toBeUndefined();
      } finally {
        await other.close();
      }
      expect(readdirSync(template, { recursive: true }).length).toBe(before);
    },
    SLOW,
  );

  it(
    'a copy interrupted earlier (pgdata.partial) is replaced, never opened',
    async () => {
      const dataDir = path.join(work, 'c');
      mkdirSync(path.join(dataDir, 'pgdata.partial'), { recursive: true });
      writeFileSync(path.join(dataDir, 'pgdata.partial', 'PG_VERSION'), 'garbage');
      const store = await openStore({ driver: 'pglite', dataDir, masterKey: randomBytes(32), template });
      await store.close();
      expect(existsSync(path.join(dataDir, 'pgdata.partial'))).toBe(false);
      expect(existsSync(path.join(dataDir, 'pgdata', 'PG_VERSION'))).toBe(true);
    },
    SLOW,
  );

  it('a template that cannot be read is an ERR_STORE_CONNECT naming both directories, and leaves no lock', async () => {
    const dataDir = path.join(work, 'd');
    const missing = path.join(work, 'no-such-template');
    await expect(openStore({ driver: 'pglite', dataDir, masterKey: randomBytes(32), template: missing })).rejects.toMatchObject({
      code: 'ERR_STORE_CONNECT',
      message: expect.stringContaining(`cannot prepare the database in ${path.join(dataDir, 'pgdata')} from ${missing}`),
    });
    expect(existsSync(path.join(dataDir, 'pgdata.lock'))).toBe(false);
  });
});
