/**
 * The attestation service across two broker processes (kb-broker, tsx) on one PostgreSQL database, over real HTTP:
 * a VM registered through one, launched through the other; 50 concurrent /validate for one launch split over both →
 * exactly one success; the other process restarted between /launch and /validate still finishes the launch.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomUUID } from 'node:crypto';
import { syntheticOvmf } from '@kb/sev-host-sim';
import { ADMIN_TOKEN, MASTER_KEY, testDatabase, testPlatform } from './support/broker';
import { api, hostPrepare, sevRegistration } from './support/attestation';
import { spawnBroker, type BrokerProcess } from './support/process';

const FIRMWARE = syntheticOvmf({ label: 'two processes' });

describe('attestation service: two broker processes on one PostgreSQL', () => {
  let db: Awaited<ReturnType<typeof testDatabase>>;
  let dir: string;
  const procs: BrokerProcess[] = [];
  const start = async () => {
    const p = await spawnBroker(
      [
        '--listen',
        '127.0.0.1:0',
        '--admin-listen',
        '127.0.0.1:0',
        '--http-listen',
        '127.0.0.1:0',
        '--data-dir',
        dir,
        '--trust-root',
        `sev-sim=${join(dir, 'root.cert')}`,
      ],
      { KB_DATABASE_URL: db.url, KB_MASTER_KEY: MASTER_KEY.toString('base64'), KB_ADMIN_TOKEN: ADMIN_TOKEN },
    );
    procs.push(p);
    return { p, base: `http://${p.httpAddress}/sev/v1` };
  };

  beforeAll(async () => {
    db = await testDatabase('pg');
    dir = mkdtempSync(join(tmpdir(), 'kb-as-procs-'));
    const platform = testPlatform();
    writeFileSync(join(dir, 'root.cert'), Buffer.concat([platform.ask.raw, platform.ark.raw]));
  }, 120_000);

  afterAll(async () => {
    for (const p of procs) await p.stop();
    await db?.drop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('50 concurrent /validate over both processes: exactly one success; a restart between /launch and /validate', async () => {
    const platform = testPlatform();
    const [a, b] = [await start(), await start()];
    expect((await api(a.base, 'POST', '/firmware', FIRMWARE, ADMIN_TOKEN)).status).toBe(201);
    const uuid = randomUUID();
    const reg = sevRegistration(platform, FIRMWARE);
    expect((await api(a.base, 'POST', `/vm/${uuid}`, reg, ADMIN_TOKEN)).status).toBe(201);

    const p = await hostPrepare(b.base, uuid, platform, { firmware: FIRMWARE, policy: 0x1 });
    const answers = await Promise.all(Array.from({ length: 50 }, (_, i) => api((i % 2 ? a : b).base, 'POST', `/vm/${uuid}/validate`, p.validate)));
    expect(answers.filter((r) => r.status === 200)).toHaveLength(1);
    expect(answers.filter((r) => r.status === 403)).toHaveLength(49);
    const won = answers.find((r) => r.status === 200)!;
    p.vm!.injectSecret(won.body['secret-header'] as string, won.body['secret-table'] as string);
    p.vm!.resume();
    expect(p.vm!.guestSecrets().map((s) => s.data.toString())).toEqual(['pw']);

    // /launch through b, b stopped, /validate through a new process
    const q = await hostPrepare(b.base, uuid, platform, { firmware: FIRMWARE, policy: 0x1 });
    expect(await b.p.stop()).toBe(0);
    const c = await start();
    const v = await api(c.base, 'POST', `/vm/${uuid}/validate`, q.validate);
    expect(v.status).toBe(200);
    q.vm!.injectSecret(v.body['secret-header'] as string, v.body['secret-table'] as string);
    q.vm!.resume();
    expect(q.vm!.guestSecrets().map((s) => s.data.toString())).toEqual(['pw']);
  }, 180_000);
});
