import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { status } from '@grpc/grpc-js';
import { platformRoot } from '@kb/sev-sim';
import { startBroker } from '../src/broker';
import { silentLogger } from '../src/log';
import { ADMIN_TOKEN, MASTER_KEY, policyFor, startTestBroker, testConfig, testDatabase, testPlatform } from './support/broker';
import { HostClient, OwnerClient } from './support/grpc';
import { spawnBroker } from './support/process';
import { expectedDigest, prepareLaunch } from './support/host';

const KEY = [{ Guid: '736869e5-84f0-4973-92ec-06879ce3da0b', Format: 'binary', SecretType: 'key', Id: 'default/key/disk' }];

async function seed(owner: OwnerClient): Promise<void> {
  await owner.call('putPolicy', { name: 'default', document_json: policyFor([expectedDigest(0x1)]) });
  await owner.call('putSecret', { id: 'default/key/disk', value: Buffer.from('disk passphrase'), policy_name: '' });
}

function complete(prepared: Awaited<ReturnType<typeof prepareLaunch>>, res: { LaunchSecretHeader: string; LaunchSecretData: string }) {
  prepared.sp.launchSecret(prepared.handle, Buffer.from(res.LaunchSecretHeader, 'base64'), Buffer.from(res.LaunchSecretData, 'base64'));
  prepared.sp.launchFinish(prepared.handle);
  return prepared.sp.guestSecrets(prepared.handle);
}

describe('restart safety (embedded database on disk)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'kb-restart-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('a launch whose GetBundle happened before a broker restart completes after it', async () => {
    const platform = testPlatform();
    const config = testConfig({ dataDir: dir });
    const opts = { logger: silentLogger, extraRoots: [platformRoot(platform)] };

    const first = await startBroker(config, opts);
    const owner = new OwnerClient(first.adminAddress, ADMIN_TOKEN);
    await seed(owner);
    owner.close();
    const host1 = new HostClient(first.address);
    const prepared = await prepareLaunch(host1, platform, { policy: 0x1, requests: KEY });
    host1.close();
    await first.close();

    const second = await startBroker(config, opts); // same data dir: same PGlite files and master.key
    const host2 = new HostClient(second.address);
    try {
      const res = await host2.getSecret(prepared.request);
      expect(complete(prepared, res)).toEqual([{ guid: KEY[0]!.Guid, data: Buffer.from('disk passphrase') }]);
    } finally {
      host2.close();
      await second.close();
    }
  }, 120_000);
});

describe('two brokers on one PostgreSQL', () => {
  let db: Awaited<ReturnType<typeof testDatabase>>;
  beforeAll(async () => {
    db = await testDatabase('pg');
  });
  afterAll(async () => db?.drop());

  it('serve one launch: GetBundle on one, GetSecret on the other; a launch id is used once across both', async () => {
    const [storeA, storeB] = await Promise.all([db.open(), db.open()]);
    const a = await startTestBroker(storeA);
    const b = await startTestBroker(storeB);
    try {
      await seed(a.owner);
      const prepared = await prepareLaunch(a.host, a.platform, { policy: 0x1, requests: KEY });
      const res = await b.host.getSecret(prepared.request);
      expect(complete(prepared, res)[0]!.data.toString()).toBe('disk passphrase');

      // racing the same launch on both replicas: exactly one wins
      for (let round = 0; round < 10; round++) {
        const p = await prepareLaunch(b.host, b.platform, { policy: 0x1, requests: KEY });
        const results = await Promise.allSettled([
          a.host.getSecret(p.request),
          b.host.getSecret(p.request),
          a.host.getSecret(p.request),
          b.host.getSecret(p.request),
        ]);
        expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
        for (const r of results) if (r.status === 'rejected') expect(r.reason.code).toBe(status.PERMISSION_DENIED);
      }
    } finally {
      await a.close();
      await b.close();
      await storeA.close();
      await storeB.close();
    }
  }, 120_000);

  it('a separate broker process and an in-process broker share launches through the database', async () => {
    const platform = testPlatform();
    const rootDir = mkdtempSync(join(tmpdir(), 'kb-root-'));
    writeFileSync(join(rootDir, 'root.cert'), Buffer.concat([platform.ask.raw, platform.ark.raw]));
    const proc = await spawnBroker(
      [
        '--listen',
        '127.0.0.1:0',
        '--admin-listen',
        '127.0.0.1:0',
        '--http-listen',
        '127.0.0.1:0',
        '--data-dir',
        rootDir,
        '--trust-root',
        `sev-sim=${join(rootDir, 'root.cert')}`,
      ],
      { KB_DATABASE_URL: db.url, KB_MASTER_KEY: MASTER_KEY.toString('base64'), KB_ADMIN_TOKEN: ADMIN_TOKEN },
    );
    const store = await db.open();
    const local = await startTestBroker(store);
    const remoteHost = new HostClient(proc.address);
    try {
      await seed(local.owner);
      const prepared = await prepareLaunch(remoteHost, platform, { policy: 0x1, requests: KEY });
      const res = await local.host.getSecret(prepared.request);
      expect(complete(prepared, res)[0]!.data.toString()).toBe('disk passphrase');
    } finally {
      remoteHost.close();
      await local.close();
      await store.close();
      expect(await proc.stop()).toBe(0);
      rmSync(rootDir, { recursive: true, force: true });
    }
  }, 120_000);
});
