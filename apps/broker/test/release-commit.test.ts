import { status } from '@grpc/grpc-js';
import type { Store } from '@kb/store';
import { failure } from './support/grpc';
import { DRIVERS, policyFor, startTestBroker, testDatabase, type TestBroker } from './support/broker';
import { expectedDigest, prepareLaunch, simulatedLaunch } from './support/host';

const KEY_GUID = '736869e5-84f0-4973-92ec-06879ce3da0b';
const CONN_GUID = '1ee27366-0c87-43a6-af48-28543eaf7cb0';
const DENIED = /^attestation failed \(ref ([0-9a-f]{12})\)$/;

/** A key under its own policy, plus a connection: the release takes two counters and inserts a row. */
const keyAndConnection = (id: string) => [
  { Guid: KEY_GUID, Format: 'binary', SecretType: 'key', Id: id },
  { Guid: CONN_GUID, Format: 'JSON', SecretType: 'connection', Id: '' },
];

/**
 * The writes of a release (every maxReleases counter and every connection row) are all or nothing: a request refused
 * when they are made — a counter another request took since the reads, a connection row the store refuses — costs no
 * policy a release.
 */
describe.each(DRIVERS)('release writes are all or nothing (%s)', (driver) => {
  let db: Awaited<ReturnType<typeof testDatabase>>;
  let store: Store;
  let t: TestBroker;
  const digest = expectedDigest(0x1);

  beforeAll(async () => {
    db = await testDatabase(driver);
    store = await db.open();
    t = await startTestBroker(store);
    await t.owner.call('putPolicy', { name: 'default', document_json: policyFor([digest], { maxReleases: 1000 }) });
  }, 120_000);

  afterAll(async () => {
    await t?.close();
    await store?.close();
    await db?.drop();
  });

  async function secretUnder(policy: string, maxReleases: number): Promise<string> {
    await t.owner.call('putPolicy', { name: policy, document_json: policyFor([digest], { maxReleases }) });
    const id = `default/key/${policy}`;
    await t.owner.call('putSecret', { id, value: Buffer.from(`secret of ${policy}`), policy_name: policy });
    return id;
  }

  const count = (policy: string) => store.getReleaseCount(`policy:${policy}`);
  const connectionCount = async () => (await store.listConnections()).length;

  async function refusalReason(p: Promise<unknown>): Promise<string> {
    const err = await failure(p);
    expect(err.code).toBe(status.PERMISSION_DENIED);
    const ref = DENIED.exec(err.details)?.[1];
    expect(ref).toBeDefined();
    // audit rows are written off the request path: wait for this one
    for (const deadline = Date.now() + 10_000; ; await new Promise((r) => setTimeout(r, 20))) {
      const r = await t.owner.call<{ entries: { detail_json: string }[] }>('listAudit', { ref_id: ref, limit: 5, since: '', launch_id: '', page_token: '' });
      if (r.entries.length > 0 || Date.now() > deadline) return r.entries.map((e) => e.detail_json).join('\n');
    }
  }

  it("once a secret's policy is exhausted, launches are refused and the tenant default is not charged for them", async () => {
    const id = await secretUnder('once', 1);
    const [defaultBefore, connectionsBefore] = [await count('default'), await connectionCount()];
    await simulatedLaunch(t.host, t.platform, { policy: 0x1, requests: keyAndConnection(id) });
    for (let i = 0; i < 3; i++) {
      expect(await refusalReason(simulatedLaunch(t.host, t.platform, { policy: 0x1, requests: keyAndConnection(id) }))).toMatch(/maxReleases/);
    }
    expect(await count('once')).toBe(1);
    expect(await count('default')).toBe(defaultBefore + 1);
    expect(await connectionCount()).toBe(connectionsBefore + 1);
  });

  it('a counter taken after the reads (another broker, say) refuses at commit and nothing is written', async () => {
    const id = await secretUnder('raced', 1);
    await simulatedLaunch(t.host, t.platform, { policy: 0x1, requests: keyAndConnection(id) });
    const [defaultBefore, connectionsBefore] = [await count('default'), await connectionCount()];
    // The reads see the count from before that release, so the policy passes evaluation and only the commit can refuse.
    const read = store.getReleaseCount;
    store.getReleaseCount = async (key) => (key === 'policy:raced' ? 0 : read(key));
    try {
      const reason = await refusalReason(simulatedLaunch(t.host, t.platform, { policy: 0x1, requests: keyAndConnection(id) }));
      expect(reason).toMatch(/policy 'raced' reached maxReleases 1/);
    } finally {
      store.getReleaseCount = read;
    }
    // 'policy:default' is taken before 'policy:raced': only the rollback leaves it as it was
    expect(await count('default')).toBe(defaultBefore);
    expect(await count('raced')).toBe(1);
    expect(await connectionCount()).toBe(connectionsBefore);
  });

  it('a connection row the store refuses costs no counter', async () => {
    const id = await secretUnder('fragile', 5);
    // A broker whose connections would expire as they are made: the store refuses the row, after every check passed.
    const broken = await startTestBroker(store, { connectionTtlSeconds: 0 });
    try {
      const [defaultBefore, connectionsBefore] = [await count('default'), await connectionCount()];
      const err = await failure(simulatedLaunch(broken.host, broken.platform, { policy: 0x1, requests: keyAndConnection(id) }));
      expect(err.code).toBe(status.INTERNAL);
      expect(await count('default')).toBe(defaultBefore);
      expect(await count('fragile')).toBe(0);
      expect(await connectionCount()).toBe(connectionsBefore);
    } finally {
      await broken.close();
    }
  });

  it('launches racing for a maxReleases 2 policy: exactly 2 released, and only those 2 counted on the tenant default', async () => {
    const id = await secretUnder('twice', 2);
    const [defaultBefore, connectionsBefore] = [await count('default'), await connectionCount()];
    const n = 8;
    const launches = await Promise.all(Array.from({ length: n }, () => prepareLaunch(t.host, t.platform, { policy: 0x1, requests: keyAndConnection(id) })));
    // Every request reads the count before any commits, so all of them pass evaluation and the commits race.
    const read = store.getReleaseCount;
    const allRead = barrier(n);
    store.getReleaseCount = async (key) => {
      const value = await read(key);
      if (key === 'policy:twice') await allRead();
      return value;
    };
    let results: PromiseSettledResult<unknown>[];
    try {
      results = await Promise.allSettled(launches.map((l) => t.host.getSecret(l.request)));
    } finally {
      store.getReleaseCount = read;
    }
    expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(2);
    for (const r of results) if (r.status === 'rejected') expect(r.reason.code).toBe(status.PERMISSION_DENIED);
    expect(await count('twice')).toBe(2);
    expect(await count('default')).toBe(defaultBefore + 2);
    expect(await connectionCount()).toBe(connectionsBefore + 2);
  }, 60_000);
});

/** Resolves every waiter once `n` have arrived (or after a few seconds, so a broken test fails instead of hanging). */
function barrier(n: number): () => Promise<void> {
  let arrived = 0;
  let open!: () => void;
  const opened = new Promise<void>((r) => (open = r));
  const timer = setTimeout(open, 5_000);
  return () => {
    if (++arrived === n) {
      clearTimeout(timer);
      open();
    }
    return opened;
  };
}
