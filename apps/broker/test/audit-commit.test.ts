import { status } from '@grpc/grpc-js';
import { platformChain } from '@kb/sev-sim';
import type { Store } from '@kb/store';
import { Client } from 'pg';
import { policyFor, startTestBroker, testDatabase, type TestBroker } from './support/broker';
import { failure } from './support/grpc';
import { expectedDigest, prepareLaunch, simulatedLaunch } from './support/host';

const KEY = [{ Guid: '736869e5-84f0-4973-92ec-06879ce3da0b', Format: 'binary', SecretType: 'key', Id: 'default/key/disk' }];
/** under a maxReleases policy: its release takes a counter, so the commit is a transaction rather than one INSERT */
const COUNTED = [{ Guid: '1ee27366-0c87-43a6-af48-28543eaf7cb0', Format: 'binary', SecretType: 'key', Id: 'default/key/counted' }];

/**
 * Audit like a secret store (issue #12): a bundle or a secret goes out only if its audit row is stored with it. To
 * prove it is the same commit, not an entry written soon after, PostgreSQL itself refuses the rows (a trigger on
 * audit_log): the call must then fail and leave nothing behind, where a broker auditing after the fact would still
 * hand the secret out.
 */
describe('an audit row the database refuses stops the release it records (PostgreSQL)', () => {
  let db: Awaited<ReturnType<typeof testDatabase>>;
  let store: Store;
  let t: TestBroker;
  let sql: Client;

  beforeAll(async () => {
    db = await testDatabase('pg');
    store = await db.open();
    t = await startTestBroker(store);
    sql = new Client({ connectionString: db.url });
    await sql.connect();
    await sql.query(`CREATE FUNCTION refuse_audit() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        IF NEW.event = current_setting('kb.refuse', true) THEN RAISE EXCEPTION 'audit refused by test'; END IF;
        RETURN NEW;
      END $$`);
    await sql.query('CREATE TRIGGER refuse_audit BEFORE INSERT ON audit_log FOR EACH ROW EXECUTE FUNCTION refuse_audit()');
    await t.owner.call('putPolicy', { name: 'default', document_json: policyFor([expectedDigest(0x1)]) });
    await t.owner.call('putSecret', { id: 'default/key/disk', value: Buffer.from('disk passphrase'), policy_name: '' });
    await t.owner.call('putPolicy', { name: 'counted', document_json: policyFor([expectedDigest(0x1)], { maxReleases: 5 }) });
    await t.owner.call('putSecret', { id: 'default/key/counted', value: Buffer.from('counted'), policy_name: 'counted' });
  }, 120_000);

  afterAll(async () => {
    await sql?.end();
    await t?.close();
    await store?.close();
    await db?.drop();
  });

  /** Refuses audit rows of `event` on every connection from now on (a database-wide setting, new sessions see it). */
  async function refuse(event: string): Promise<void> {
    const name = new URL(db.url).pathname.slice(1);
    await sql.query(`ALTER DATABASE "${name}" SET kb.refuse = '${event}'`);
    await sql.query(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()`, [name]);
  }
  const count = async (q: string, params: unknown[] = []) => Number((await sql.query(q, params)).rows[0].n);

  it.each([
    ['one INSERT (nothing counted)', KEY, 'disk passphrase'],
    ['a transaction (a maxReleases counter)', COUNTED, 'counted'],
  ])('GetSecret, release as %s: no secret without its "released" row, and nothing counted', async (_, requests, value) => {
    const released = (launchId: string) => count(`SELECT count(*)::int AS n FROM audit_log WHERE launch_id = $1 AND outcome = 'released'`, [launchId]);
    const counted = () => count(`SELECT coalesce(sum(count), 0)::int AS n FROM release_counts`);
    const before = await counted();
    const prepared = await prepareLaunch(t.host, t.platform, { policy: 0x1, requests });
    await refuse('secret');
    // the pool replaces the connections the test ended; the first call may meet one of them (UNAVAILABLE)
    let err = await failure(t.host.getSecret(prepared.request));
    if (err.code === status.UNAVAILABLE) err = await failure(t.host.getSecret(prepared.request));
    expect(err.code).toBe(status.INTERNAL);
    expect(await released(prepared.bundle.LaunchId)).toBe(0);
    expect(await counted()).toBe(before);

    await refuse('none');
    const launch = () => simulatedLaunch(t.host, t.platform, { policy: 0x1, requests });
    const ok = await launch().catch(launch);
    expect(ok.secrets[0]!.data.toString()).toBe(value);
    expect(await released(ok.bundle.LaunchId)).toBe(1);
    expect(await counted()).toBe(before + (requests === COUNTED ? 1 : 0));
  });

  it('GetBundle: no bundle without its "issued" row, and no session left pending', async () => {
    const pending = await count(`SELECT count(*)::int AS n FROM launch_sessions WHERE consumed_at IS NULL`);
    await refuse('bundle');
    const chain = platformChain(t.platform).toString('base64');
    let err = await failure(t.host.getBundle({ CertificateChain: chain, Policy: 0x1 }));
    if (err.code === status.UNAVAILABLE) err = await failure(t.host.getBundle({ CertificateChain: chain, Policy: 0x1 }));
    expect(err.code).toBe(status.INTERNAL);
    expect(await count(`SELECT count(*)::int AS n FROM launch_sessions WHERE consumed_at IS NULL`)).toBe(pending);
    await refuse('none');
  });
});
