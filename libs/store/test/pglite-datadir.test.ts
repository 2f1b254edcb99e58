import { randomBytes } from 'node:crypto';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { loadOrCreateMasterKey } from '../src/master-key';
import { openStore } from '../src/open';
import { requireVmModules } from './support/pglite';
import { codeOf, sessionInput } from './support/store-suite';

const SLOW = 180_000; // each PGlite start is several seconds of WebAssembly start-up on a busy machine

describe('store on PGlite with a data directory', () => {
  if (!requireVmModules()) return;

  let dataDir: string;
  beforeAll(async () => {
    dataDir = await mkdtemp(path.join(tmpdir(), 'kb-store-'));
  });
  afterAll(async () => {
    await rm(dataDir, { recursive: true, force: true });
  });

  it(
    'write, close, reopen: data is still there, master.key is reused, migrations are not re-applied',
    async () => {
      const key = await loadOrCreateMasterKey(dataDir);
      const first = await openStore({ driver: 'pglite', dataDir, masterKey: key });
      await first.putPolicy('tenant', { allow: ['x'] });
      await first.putSecret({ id: 'default/key/key_id1', value: Buffer.from('persisted'), policyName: 'tenant' });
      const session = await first.createLaunchSession(sessionInput({ createdAt: new Date(), expiresAt: new Date(Date.now() + 3_600_000) }));
      await first.close();
      await first.close(); // idempotent
      expect(await codeOf(first.getSecret('default/key/key_id1'))).toBe('ERR_STORE_CLOSED');
      expect((await readdir(dataDir)).sort()).toEqual(['master.key', 'pgdata']);

      const sameKey = await loadOrCreateMasterKey(dataDir);
      expect(sameKey.equals(key)).toBe(true);
      const second = await openStore({ driver: 'pglite', dataDir, masterKey: sameKey });
      try {
        expect((await second.getSecret('default/key/key_id1'))?.value.toString()).toBe('persisted');
        expect((await second.getPolicy('tenant'))?.document).toEqual({ allow: ['x'] });
        expect((await second.consumeLaunchSession(session.id, new Date()))?.tek).toEqual(expect.any(Buffer));
      } finally {
        await second.close();
      }

      const { PGlite } = await import('@electric-sql/pglite');
      const raw = await PGlite.create(path.join(dataDir, 'pgdata'));
      try {
        const { rows } = await raw.query<{ n: number }>('SELECT count(*)::int AS n FROM drizzle.__drizzle_migrations');
        const journal = (await readdir(path.resolve(__dirname, '../migrations'))).filter((f) => f.endsWith('.sql'));
        expect(rows[0]?.n).toBe(journal.length);
      } finally {
        await raw.close();
      }
    },
    SLOW,
  );

  it(
    'a different master key is refused at open, and the directory stays usable',
    async () => {
      expect(await codeOf(openStore({ driver: 'pglite', dataDir, masterKey: randomBytes(32) }))).toBe('ERR_STORE_MASTER_KEY');
      const store = await openStore({ driver: 'pglite', dataDir, masterKey: await loadOrCreateMasterKey(dataDir) });
      try {
        expect(await store.listPolicyNames()).toEqual(['tenant']);
      } finally {
        await store.close();
      }
    },
    SLOW,
  );

  it(
    'bad options fail with typed errors',
    async () => {
      expect(await codeOf(openStore({ driver: 'pglite', dataDir: 'memory://', masterKey: randomBytes(16) }))).toBe('ERR_STORE_MASTER_KEY');
      const missing = path.join(dataDir, 'no-migrations-here');
      expect(await codeOf(openStore({ driver: 'pglite', dataDir: 'memory://', masterKey: randomBytes(32), migrationsFolder: missing }))).toBe(
        'ERR_STORE_MIGRATION',
      );
      expect(await codeOf(openStore({ driver: 'nope', masterKey: randomBytes(32) } as never))).toBe('ERR_STORE_ARGUMENT');
      // master.key is a file, so <it>/pgdata cannot be created.
      const unusable = path.join(dataDir, 'master.key');
      expect(await codeOf(openStore({ driver: 'pglite', dataDir: unusable, masterKey: randomBytes(32) }))).toBe('ERR_STORE_CONNECT');
    },
    SLOW,
  );
});
