import { Metadata, Server, ServerCredentials, status } from '@grpc/grpc-js';
import { keybroker } from '@kb/grpc-api';
import { openStore, type Store } from '@kb/store';
import { Client } from 'pg';
import type { BrokerContext } from '../src/context';
import { createLogger } from '../src/log';
import { unary, type CallInfo } from '../src/unary';
import { MASTER_KEY, policyFor, startTestBroker, testConfig, testDatabase, type TestBroker } from './support/broker';
import { failure, HostClient } from './support/grpc';
import { expectedDigest, prepareLaunch, simulatedLaunch } from './support/host';
import { eventually, sleep } from './support/wait';

const KEY = [{ Guid: '0b6f2c0e-3f5e-4c1a-9d55-7f1d2a9b8c41', Format: 'binary', SecretType: 'key', Id: 'deadline/key/disk' }];
const TIMEOUT_S = 0.3;
/** Longer than the request and statement timeouts: a lock held this long outlives the stuck statement. */
const HOLD_MS = 900;
const REF = /\(ref ([0-9a-f]{12})\)$/;

describe('call deadlines (unary): every call is answered within --request-timeout', () => {
  let server: Server;
  let client: HostClient;
  const lines: Record<string, unknown>[] = [];
  const audited: { refId?: string; event?: string; outcome?: string }[] = [];
  /** what the slow handler saw when it returned */
  const seen: { aborted: boolean; reason?: string; afterMs: number }[] = [];
  let release: (() => void) | undefined;

  beforeAll(async () => {
    const logger = createLogger('debug', (l) => lines.push(JSON.parse(l) as Record<string, unknown>));
    // unary() reads the configuration, the logger and the audit trail (the call entry of every reference) only.
    const ctx = {
      config: testConfig({ requestTimeoutSeconds: TIMEOUT_S }),
      logger,
      audit: { record: (e: { refId?: string }) => audited.push(e), saturated: () => false, pending: () => 0 },
    } as unknown as BrokerContext;
    const slow = async (_req: unknown, info: CallInfo) => {
      const t0 = Date.now();
      // Waits until released by the test or aborted, then a little longer: its result must be dropped.
      await new Promise<void>((resolve) => {
        release = resolve;
        info.signal.addEventListener('abort', () => resolve());
      });
      await sleep(50);
      seen.push({ aborted: info.signal.aborted, afterMs: Date.now() - t0, ...(info.signal.aborted ? { reason: (info.signal.reason as Error).message } : {}) });
      return { GuestOwnerPublicKey: 'late', LaunchBlob: 'late', LaunchId: 'late' };
    };
    server = new Server();
    server.addService(keybroker.KeyBrokerServiceService, {
      getBundle: unary(ctx, 'GetBundle', slow),
      getSecret: unary(ctx, 'GetSecret', async () => ({ LaunchSecretHeader: 'fast', LaunchSecretData: 'fast' })),
      getOnlineSecret: unary(ctx, 'GetOnlineSecret', async () => {
        throw new Error('not used');
      }),
    });
    const port = await new Promise<number>((resolve, reject) =>
      server.bindAsync('127.0.0.1:0', ServerCredentials.createInsecure(), (e, p) => (e ? reject(e) : resolve(p))),
    );
    client = new HostClient(`127.0.0.1:${port}`);
  });

  afterAll(async () => {
    client?.close();
    await new Promise<void>((resolve) => server.tryShutdown(() => resolve()));
  });

  beforeEach(() => {
    lines.length = 0;
    seen.length = 0;
    release = undefined;
  });

  it('a handler outliving the timeout: DEADLINE_EXCEEDED with a reference, the handler told, its late result dropped, others served meanwhile', async () => {
    const t0 = Date.now();
    const slow = failure(client.getBundle({ CertificateChain: '', Policy: 1 }));
    // Served while the slow call is pending.
    expect(await client.getSecret(keybroker.SecretRequest.fromPartial({}))).toEqual({ LaunchSecretHeader: 'fast', LaunchSecretData: 'fast' });
    const err = await slow;
    const elapsed = Date.now() - t0;
    expect(err.code).toBe(status.DEADLINE_EXCEEDED);
    expect(err.details).toMatch(/^the broker did not answer in time; retry later \(ref [0-9a-f]{12}\)$/);
    const ref = REF.exec(err.details)![1];
    expect(err.metadata.get('kb-ref')).toEqual([ref]);
    expect(audited.filter((e) => e.refId === ref)).toEqual([expect.objectContaining({ event: 'call', outcome: 'DEADLINE_EXCEEDED' })]);
    expect(elapsed).toBeGreaterThanOrEqual(TIMEOUT_S * 1000 - 20);
    expect(elapsed).toBeLessThan(5_000);

    await eventually(async () => seen[0]);
    expect(seen).toEqual([{ aborted: true, reason: expect.stringContaining('--request-timeout'), afterMs: expect.any(Number) }]);
    const logged = await eventually(async () => lines.find((l) => l.msg === 'GetBundle finished after its deadline; the answer was dropped'));
    expect(logged).toMatchObject({ ref });
    expect(lines.find((l) => l.msg === 'GetBundle failed')).toMatchObject({
      level: 'warn',
      class: 'timeout',
      ref,
      reason: expect.stringContaining('--request-timeout'),
    });
  });

  it("a client whose own, shorter deadline passes: the handler's signal is aborted too", async () => {
    const md = new Metadata();
    const err = await new Promise<{ code: number }>((resolve) =>
      client.raw.getBundle({ CertificateChain: '', Policy: 1 }, md, { deadline: Date.now() + 80 }, (e) => resolve(e!)),
    );
    expect(err.code).toBe(status.DEADLINE_EXCEEDED);
    await eventually(async () => seen[0]);
    // The client's deadline (80 ms), not the broker's timeout (300 ms), ended it.
    expect(seen[0]).toMatchObject({ aborted: true, reason: expect.stringContaining('the client cancelled the call, or its own deadline passed') });
  });

  it('a handler finishing in time is answered normally and its signal never aborts', async () => {
    const pending = client.getBundle({ CertificateChain: '', Policy: 1 });
    await eventually(async () => release);
    release!();
    expect(await pending).toEqual({ GuestOwnerPublicKey: 'late', LaunchBlob: 'late', LaunchId: 'late' });
    expect(seen).toEqual([{ aborted: false, afterMs: expect.any(Number) }]);
    expect(lines.filter((l) => l.level === 'warn' || l.level === 'error')).toEqual([]);
  });
});

describe('call deadlines on PostgreSQL: a stuck database does not hold hosts, and a timed-out call changes nothing it did not finish', () => {
  let db: Awaited<ReturnType<typeof testDatabase>>;
  let store: Store;
  let tb: TestBroker;
  let locker: Client;

  beforeAll(async () => {
    db = await testDatabase('pg');
    // What kb-broker --database-url does with --request-timeout: the same bound as the statement timeout.
    store = await openStore({ driver: 'pg', url: db.url, masterKey: MASTER_KEY, statementTimeoutMs: TIMEOUT_S * 1000 });
    tb = await startTestBroker(store, { requestTimeoutSeconds: TIMEOUT_S });
    // maxReleases makes every release write its counter: the step test 2 stalls.
    await tb.owner.call('putPolicy', { name: 'default', document_json: policyFor([expectedDigest(0x1)], { maxReleases: 1000 }) });
    await tb.owner.call('putSecret', { id: 'deadline/key/disk', value: Buffer.from('disk passphrase'), policy_name: '' });
    locker = new Client({ connectionString: db.url });
    await locker.connect();
  }, 120_000);

  afterAll(async () => {
    await locker?.end();
    await tb?.close();
    await store?.close();
    await db?.drop();
  });

  const complete = (p: Awaited<ReturnType<typeof prepareLaunch>>, res: keybroker.SecretResponse) => {
    p.sp.launchSecret(p.handle, Buffer.from(res.LaunchSecretHeader, 'base64'), Buffer.from(res.LaunchSecretData, 'base64'));
    p.sp.launchFinish(p.handle);
    return p.sp.guestSecrets(p.handle).map((s) => s.data.toString());
  };
  const counts = async () => (await locker.query<{ key: string; count: string }>('SELECT key, count FROM release_counts ORDER BY key')).rows;

  /** Runs `during` while a transaction holds `lockSql`'s row locks, then keeps them HOLD_MS from the start in all. */
  async function whileLocked<T>(lockSql: string, params: unknown[], during: () => Promise<T>): Promise<T> {
    const t0 = Date.now();
    await locker.query('BEGIN');
    try {
      await locker.query(lockSql, params);
      const r = await during();
      await sleep(Math.max(0, HOLD_MS - (Date.now() - t0)));
      return r;
    } finally {
      await locker.query('ROLLBACK');
    }
  }

  it('GetSecret stuck on its launch row: DEADLINE_EXCEEDED, other hosts served meanwhile, and the launch id still works afterwards (nothing was consumed)', async () => {
    const stuck = await prepareLaunch(tb.host, tb.platform, { policy: 0x1, requests: KEY });
    const other = new HostClient(tb.broker.address);
    try {
      const { err, meanwhile } = await whileLocked('SELECT 1 FROM launch_sessions WHERE id = $1 FOR UPDATE', [stuck.bundle.LaunchId], async () => {
        const t0 = Date.now();
        const pending = failure(tb.host.getSecret(stuck.request));
        const meanwhile = await prepareLaunch(other, tb.platform, { policy: 0x1, requests: KEY }); // GetBundle served
        const err = await pending;
        expect(Date.now() - t0).toBeLessThan(HOLD_MS);
        return { err, meanwhile };
      });
      expect(err.code).toBe(status.DEADLINE_EXCEEDED);
      expect(err.details).toMatch(REF);
      expect(complete(meanwhile, await other.getSecret(meanwhile.request))).toEqual(['disk passphrase']);
      // The consume was cancelled by the statement timeout while the lock was held: the host may try again.
      expect(complete(stuck, await tb.host.getSecret(stuck.request))).toEqual(['disk passphrase']);
    } finally {
      other.close();
    }
  });

  it('GetBundle stuck on its session insert: DEADLINE_EXCEEDED, no session left behind, and GetBundle works again once the lock is gone', async () => {
    const pendingBefore = await store.countPendingSessions(new Date());
    const err = await whileLocked('LOCK TABLE launch_sessions IN EXCLUSIVE MODE', [], () =>
      failure(prepareLaunch(tb.host, tb.platform, { policy: 0x1, requests: KEY })),
    );
    expect(err.code).toBe(status.DEADLINE_EXCEEDED);
    expect(await store.countPendingSessions(new Date())).toBe(pendingBefore);
    const p = await prepareLaunch(tb.host, tb.platform, { policy: 0x1, requests: KEY });
    expect(complete(p, await tb.host.getSecret(p.request))).toEqual(['disk passphrase']);
  });

  it('a release stuck on its counter: DEADLINE_EXCEEDED, audited as refused with the reason, not counted, and the launch id is used up', async () => {
    await simulatedLaunch(tb.host, tb.platform, { policy: 0x1, requests: KEY }); // a release: the counter row exists
    const before = await counts();
    expect(before.length).toBeGreaterThan(0);
    const p = await prepareLaunch(tb.host, tb.platform, { policy: 0x1, requests: KEY });
    const err = await whileLocked('SELECT 1 FROM release_counts FOR UPDATE', [], () => failure(tb.host.getSecret(p.request)));
    expect(err.code).toBe(status.DEADLINE_EXCEEDED);
    const ref = REF.exec(err.details)![1]!;

    const entry = await eventually(async () => (await store.listAudit({ refId: ref })).find((e) => e.event === 'secret'));
    expect(entry).toMatchObject({ event: 'secret', outcome: 'refused', launchId: p.bundle.LaunchId });
    expect(JSON.stringify(entry!.detail)).toMatch(/statement/);
    expect(await counts()).toEqual(before);
    // One attempt per GetBundle, whatever its outcome.
    expect((await failure(tb.host.getSecret(p.request))).code).toBe(status.PERMISSION_DENIED);
  });

  it('GetOnlineSecret stuck on its counter: DEADLINE_EXCEEDED, audited as refused, not counted, and the connection serves again afterwards', async () => {
    const { secrets } = await simulatedLaunch(tb.host, tb.platform, {
      policy: 0x1,
      requests: [{ Guid: '5d8f3c1a-9b7e-4f2d-8a6c-1e0b9d7f3a25', Format: 'JSON', SecretType: 'connection', Id: '' }],
    });
    const { client_id: clientId } = JSON.parse(secrets[0]!.data.toString()) as { client_id: string };
    const online = { ClientId: clientId, SecretRequests: KEY };
    const before = await counts();
    const err = await whileLocked('SELECT 1 FROM release_counts FOR UPDATE', [], () => failure(tb.host.getOnlineSecret(online)));
    expect(err.code).toBe(status.DEADLINE_EXCEEDED);
    const ref = REF.exec(err.details)![1]!;
    const entry = await eventually(async () => (await store.listAudit({ refId: ref })).find((e) => e.event === 'online-secret'));
    expect(entry).toMatchObject({ event: 'online-secret', outcome: 'refused' });
    expect(await counts()).toEqual(before);
    expect((await tb.host.getOnlineSecret(online)).Payload.length).toBeGreaterThan(0);
  });
});
