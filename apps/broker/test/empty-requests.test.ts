import { createDecipheriv, randomBytes } from 'node:crypto';
import { status } from '@grpc/grpc-js';
import { SECRET_TABLE_GUID, guidToBytesLe } from '@kb/sev';
import type { Store } from '@kb/store';
import { failure } from './support/grpc';
import { DRIVERS, policyFor, startTestBroker, testDatabase, type TestBroker } from './support/broker';
import { expectedDigest, prepareLaunch, simulatedLaunch } from './support/host';

const CONN_GUID = '1ee27366-0c87-43a6-af48-28543eaf7cb0';

/**
 * An empty SecretRequests list (issue #14): simple-kbs answers GetSecret with an empty secret table — its 20-byte
 * header padded to 32 bytes, in a normal LAUNCH_SECRET packet — and GetOnlineSecret with an empty map. The launch id
 * is still consumed, the measurement and the tenant default policy still checked.
 */
describe.each(DRIVERS)('empty SecretRequests (%s)', (driver) => {
  let db: Awaited<ReturnType<typeof testDatabase>>;
  let store: Store;
  let t: TestBroker;
  // the tenant default admits the test firmware, debuggable too (policy 0x0, so the test can read the secret page back)
  const admitted = [expectedDigest(0x0)];

  beforeAll(async () => {
    db = await testDatabase(driver);
    store = await db.open();
    t = await startTestBroker(store);
    await t.owner.call('putPolicy', { name: 'default', document_json: policyFor(admitted, { allowDebug: true }) });
  }, 120_000);

  afterAll(async () => {
    await t?.close();
    await store?.close();
    await db?.drop();
  });

  it('GetSecret releases an empty secret table: the 20-byte header padded to 32 bytes', async () => {
    const { secrets, sp, handle } = await simulatedLaunch(t.host, t.platform, { policy: 0x0, requests: [] });
    expect(secrets).toEqual([]);
    const page = sp.debugDecryptSecretPage(handle)!;
    const expected = Buffer.concat([guidToBytesLe(SECRET_TABLE_GUID), Buffer.from([20, 0, 0, 0]), Buffer.alloc(12)]);
    expect(page.toString('hex')).toBe(expected.toString('hex'));
  });

  it('the launch id is consumed: the same request again is refused', async () => {
    const { request, sp, handle } = await prepareLaunch(t.host, t.platform, { policy: 0x1, requests: [] });
    const res = await t.host.getSecret(request);
    expect(Buffer.from(res.LaunchSecretHeader, 'base64')).toHaveLength(52);
    expect(Buffer.from(res.LaunchSecretData, 'base64')).toHaveLength(32);
    sp.launchSecret(handle, Buffer.from(res.LaunchSecretHeader, 'base64'), Buffer.from(res.LaunchSecretData, 'base64'));
    sp.launchFinish(handle);
    expect(sp.guestSecrets(handle)).toEqual([]);
    const again = await failure(t.host.getSecret(request));
    expect(again.code).toBe(status.PERMISSION_DENIED);
    expect(again.details).toMatch(/^attestation failed \(ref [0-9a-f]{12}\)$/);
  });

  it('the measurement is still checked', async () => {
    const { request } = await prepareLaunch(t.host, t.platform, { policy: 0x1, requests: [] });
    const err = await failure(t.host.getSecret({ ...request, FwDigest: randomBytes(32).toString('base64') }));
    expect(err.code).toBe(status.PERMISSION_DENIED);
  });

  it('the tenant default policy is still checked', async () => {
    // a launch of other firmware measures correctly but its digest is not in the default policy
    const firmware = randomBytes(4096);
    const { request } = await prepareLaunch(t.host, t.platform, { policy: 0x1, requests: [], firmware });
    const err = await failure(t.host.getSecret({ ...request, FwDigest: expectedDigest(0x1, firmware).toString('base64') }));
    expect(err.code).toBe(status.PERMISSION_DENIED);
  });

  it('GetOnlineSecret answers an empty map, and still checks the tenant default on the stored launch facts', async () => {
    const { secrets } = await simulatedLaunch(t.host, t.platform, {
      policy: 0x1,
      requests: [{ Guid: CONN_GUID, Format: 'JSON', SecretType: 'connection', Id: '' }],
    });
    const conn = JSON.parse(secrets[0]!.data.toString()) as { client_id: string; key: string };
    const res = await t.host.getOnlineSecret({ ClientId: conn.client_id, SecretRequests: [] });
    const ct = Buffer.from(res.Payload, 'base64');
    const d = createDecipheriv('aes-256-gcm', Buffer.from(conn.key, 'base64'), Buffer.from(res.IV, 'base64'));
    d.setAuthTag(ct.subarray(ct.length - 16));
    const plain = Buffer.concat([d.update(ct.subarray(0, ct.length - 16)), d.final()]);
    expect(plain.toString('hex')).toBe('0000000000000000'); // bincode: u64 LE count 0

    // the tenant default now refuses that launch's digest: the empty request is refused too
    await t.owner.call('putPolicy', { name: 'default', document_json: policyFor([randomBytes(32)], { allowDebug: true }) });
    const err = await failure(t.host.getOnlineSecret({ ClientId: conn.client_id, SecretRequests: [] }));
    expect(err.code).toBe(status.PERMISSION_DENIED);
    await t.owner.call('putPolicy', { name: 'default', document_json: policyFor(admitted, { allowDebug: true }) });
  });
});
