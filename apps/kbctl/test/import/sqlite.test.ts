import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createPlatform } from '@kb/sev-sim';
import { openStore } from '@kb/store';
import { buildFixture } from './support/fixture';
import { importSuite, kbctl } from './support/suite';
import { freshPostgresDatabase, sqliteDatabase } from './support/sources';

// SQLite through simple-kbs's own variables (KBS_DB_TYPE=sqlite, KBS_DB=path: src/db.rs builds sqlite://{KBS_DB})
importSuite('SQLite (sql.js)', {
  async create(rows, dir) {
    const file = await sqliteDatabase(join(dir, 'simple-kbs.db'), rows);
    return { args: [], env: { KBS_DB_TYPE: 'sqlite', KBS_DB_HOST: 'unused', KBS_DB_USER: 'unused', KBS_DB_PW: 'unused', KBS_DB: file } };
  },
  cleanup: async () => undefined,
});

describe('kbctl import simple-kbs: broken rows and usage', () => {
  it('a broken row aborts with the row named, and nothing is written', async () => {
    const work = mkdtempSync(join(tmpdir(), 'kb-import-broken-'));
    const target = await freshPostgresDatabase('kb_import_broken');
    const masterKey = randomBytes(32);
    writeFileSync(join(work, 'master.key'), masterKey.toString('base64'));
    const store = await openStore({ driver: 'pg', url: target.url, masterKey });
    try {
      const fx = buildFixture(work, randomBytes(32), createPlatform({ name: 'sev-sim' }));
      fx.rows.secrets.push({ id: 77, secret_id: 'default/key/hand-edited', secret: 'my passphrase', polid: null }); // simple-kbs#55
      const file = await sqliteDatabase(join(work, 'kbs.db'), fx.rows);
      const r = await kbctl(
        ['import', 'simple-kbs', `sqlite://${file}`, '--on-missing-policy', 'deny', '--database-url', target.url, '--master-key-file', 'master.key'],
        work,
      );
      expect(r.code).toBe(1);
      expect(r.err).toContain(
        "1 problem(s); nothing was written:\n  - secrets row id=77 (secret_id 'default/key/hand-edited'): the stored secret is not canonical base64",
      );
      expect(await store.listSecretIds()).toEqual([]);
      expect(await store.listPolicyNames()).toEqual([]);
    } finally {
      await store.close();
      await target.drop();
      rmSync(work, { recursive: true, force: true });
    }
  }, 60_000);

  it.each([
    [['--on-missing-policy', 'allow'], '--on-missing-policy must be refuse, deny or default-only'],
    [['--connection-expiry', 'forever'], '--connection-expiry must be a duration'],
    [['--report-launch-description', 'signed'], '--report-launch-description must be host or empty'],
    [[], 'give the simple-kbs database as SOURCE_URL, or set KBS_DB_TYPE'],
    [['oracle://x/y'], 'must start with mysql://, mariadb://, postgres:// or sqlite://'],
  ])('usage error %j: exit 2', async (args, message) => {
    const r = await kbctl(
      ['import', 'simple-kbs', ...(args.length && !args[0]!.includes('://') && args[0] !== undefined ? ['sqlite://x.db', ...args] : args)],
      tmpdir(),
    );
    expect(r.code).toBe(2);
    expect(r.err).toContain(message);
  });

  it('--dry-run into a data directory that does not exist yet creates nothing', async () => {
    const work = mkdtempSync(join(tmpdir(), 'kb-import-dry-'));
    try {
      const fx = buildFixture(work, randomBytes(32), createPlatform({ name: 'sev-sim' }));
      const file = await sqliteDatabase(join(work, 'kbs.db'), fx.rows);
      const r = await kbctl(['import', 'simple-kbs', `sqlite://${file}`, '--on-missing-policy', 'deny', '--data-dir', 'kb-data', '--dry-run'], work);
      expect(r.code).toBe(0);
      expect(r.out).toMatch(/dry run: would import 6 policies, 6 secrets, 5 keysets, 2 resources, 2 report keys, 1 connections; 0 already present/);
      expect(existsSync(join(work, 'kb-data'))).toBe(false);
    } finally {
      rmSync(work, { recursive: true, force: true });
    }
  }, 60_000);

  it('--help documents the command and its exit codes', async () => {
    const r = await kbctl(['import', 'simple-kbs', '--help'], tmpdir());
    expect(r.code).toBe(0);
    expect(r.out).toContain('--on-missing-policy MODE');
    expect(r.out).toContain('Exit codes: 0 imported');
  });
});
