import { createDecipheriv, createPublicKey, createVerify, randomUUID } from 'node:crypto';
import { status } from '@grpc/grpc-js';
import type { Store } from '@kb/store';
import { decodeBincodeMap } from '../src/secret-types/bincode';
import { failure } from './support/grpc';
import { DRIVERS, policyFor, startTestBroker, testDatabase, type TestBroker } from './support/broker';
import { expectedDigest, simulatedLaunch } from './support/host';

const KEY_GUID = '736869e5-84f0-4973-92ec-06879ce3da0b';
const BUNDLE_GUID = 'e6f5a162-d67f-4750-a67c-5d065f2a9910';
const CONN_GUID = '1ee27366-0c87-43a6-af48-28543eaf7cb0';
const RES_GUID = '0a46e24d-478c-4eb1-8696-113eeec3aa99';
const REPORT_GUID = '2cf13667-ea72-4013-9dd6-155e89c5a28f';
const JSON_GUID = '11111111-2222-4333-8444-555555555555';

describe.each(DRIVERS)('full launches through the broker (%s)', (driver) => {
  let db: Awaited<ReturnType<typeof testDatabase>>;
  let store: Store;
  let t: TestBroker;

  beforeAll(async () => {
    db = await testDatabase(driver);
    store = await db.open();
    t = await startTestBroker(store);
    const digests = [0x1, 0x3, 0x5, 0x7].map((p) => expectedDigest(p));
    await t.owner.call('putPolicy', { name: 'default', document_json: policyFor(digests) });
    await t.owner.call('putPolicy', { name: 'es-only', document_json: policyFor(digests, { requiredPolicyBits: ['ES'] }) });
    await t.owner.call('putSecret', { id: 'default/key/disk', value: Buffer.from('disk passphrase'), policy_name: '' });
    await t.owner.call('putSecret', { id: 'default/key/k1', value: Buffer.alloc(32, 1), policy_name: '' });
    await t.owner.call('putSecret', { id: 'default/key/k2', value: Buffer.alloc(32, 2), policy_name: '' });
    await t.owner.call('putSecret', { id: 'default/key/es', value: Buffer.from('only for ES guests'), policy_name: 'es-only' });
    await t.owner.call('putKeyset', { id: 'KEYSET-1', secret_ids: ['default/key/k1', 'default/key/k2'], policy_name: '' });
    await t.owner.call('putResource', { id: 'default/res/cfg', data: Buffer.from('config bytes'), policy_name: '' });
    await t.owner.call('createReportKey', { id: 'report-1', policy_name: '', private_key_pem: '' });
  }, 120_000);

  afterAll(async () => {
    await t?.close();
    await store?.close();
    await db?.drop();
  });

  const everyType = [
    { Guid: KEY_GUID, Format: 'binary', SecretType: 'key', Id: 'default/key/disk' },
    { Guid: JSON_GUID, Format: 'JSON', SecretType: 'key', Id: 'default/key/disk' },
    { Guid: BUNDLE_GUID, Format: 'JSON', SecretType: 'bundle', Id: 'KEYSET-1' },
    { Guid: RES_GUID, Format: 'binary', SecretType: 'resource', Id: 'default/res/cfg' },
    { Guid: REPORT_GUID, Format: 'json', SecretType: 'report', Id: 'report-1' },
    { Guid: CONN_GUID, Format: 'JSON', SecretType: 'connection', Id: '' },
  ];

  it.each([0x1, 0x3, 0x5, 0x7])('policy 0x%s: every secret type reaches the guest in its simple-kbs format', async (policy) => {
    const { secrets } = await simulatedLaunch(t.host, t.platform, { policy, requests: everyType });
    const byGuid = new Map(secrets.map((s) => [s.guid, s.data]));
    expect([...byGuid.keys()].sort()).toEqual(everyType.map((r) => r.Guid).sort());
    expect(byGuid.get(KEY_GUID)!.toString()).toBe('disk passphrase');
    expect(JSON.parse(byGuid.get(JSON_GUID)!.toString())).toEqual({ id: 'default/key/disk', payload: Buffer.from('disk passphrase').toString('base64') });
    expect(JSON.parse(byGuid.get(BUNDLE_GUID)!.toString())).toEqual({
      'default/key/k1': Buffer.alloc(32, 1).toString('base64'),
      'default/key/k2': Buffer.alloc(32, 2).toString('base64'),
    });
    expect(byGuid.get(RES_GUID)!.toString()).toBe('config bytes');

    const report = JSON.parse(byGuid.get(REPORT_GUID)!.toString()) as { connection: string; signature: string };
    const facts = JSON.parse(report.connection);
    expect(facts).toEqual({
      policy,
      fw_api_major: t.platform.firmware.apiMajor,
      fw_api_minor: t.platform.firmware.apiMinor,
      fw_build_id: t.platform.firmware.build,
      launch_description: '',
      fw_digest: expectedDigest(policy).toString('base64'),
    });
    const pub = await t.owner.call<{ public_key_pem: string }>('getReportKey', { name: 'report-1' });
    expect(createVerify('sha256').update(report.connection).verify(createPublicKey(pub.public_key_pem), Buffer.from(report.signature, 'base64'))).toBe(true);

    const conn = JSON.parse(byGuid.get(CONN_GUID)!.toString()) as { client_id: string; key: string };
    expect(Buffer.from(conn.key, 'base64')).toHaveLength(32);
  });

  it('resources in JSON format are bincode of {Id: base64}, as simple-kbs sends them', async () => {
    const { secrets } = await simulatedLaunch(t.host, t.platform, {
      policy: 0x1,
      requests: [{ Guid: RES_GUID, Format: 'json', SecretType: 'resource', Id: 'default/res/cfg' }],
    });
    const map = decodeBincodeMap(secrets[0]!.data);
    expect(map.get('default/res/cfg')!.toString()).toBe(Buffer.from('config bytes').toString('base64'));
  });

  it('a secret behind its own policy is released only when that policy passes too', async () => {
    const req = [{ Guid: KEY_GUID, Format: 'binary', SecretType: 'key', Id: 'default/key/es' }];
    const ok = await simulatedLaunch(t.host, t.platform, { policy: 0x5, requests: req });
    expect(ok.secrets[0]!.data.toString()).toBe('only for ES guests');
    const err = await failure(simulatedLaunch(t.host, t.platform, { policy: 0x1, requests: req }));
    expect(err.code).toBe(status.PERMISSION_DENIED);
    expect(err.details).toMatch(/^attestation failed \(ref [0-9a-f]{12}\)$/);
  });

  it('online flow: a connection from launch serves further secrets over AES-256-GCM, keyed by the request GUID', async () => {
    const { secrets } = await simulatedLaunch(t.host, t.platform, {
      policy: 0x3,
      requests: [{ Guid: CONN_GUID, Format: 'JSON', SecretType: 'connection', Id: '' }],
    });
    const conn = JSON.parse(secrets[0]!.data.toString()) as { client_id: string; key: string };
    const guid = randomUUID();
    const res = await t.host.getOnlineSecret({
      ClientId: conn.client_id,
      SecretRequests: [
        { Guid: guid, Format: 'binary', SecretType: 'key', Id: 'default/key/disk' },
        { Guid: RES_GUID, Format: 'binary', SecretType: 'resource', Id: 'default/res/cfg' },
      ],
    });
    const iv = Buffer.from(res.IV, 'base64');
    expect(iv).toHaveLength(12);
    const ct = Buffer.from(res.Payload, 'base64');
    const d = createDecipheriv('aes-256-gcm', Buffer.from(conn.key, 'base64'), iv);
    d.setAuthTag(ct.subarray(ct.length - 16));
    const map = decodeBincodeMap(Buffer.concat([d.update(ct.subarray(0, ct.length - 16)), d.final()]));
    expect(map.get(guid)!.toString()).toBe('disk passphrase');
    expect(map.get(RES_GUID)!.toString()).toBe('config bytes');

    // connections cannot mint connections online
    const mint = await failure(
      t.host.getOnlineSecret({ ClientId: conn.client_id, SecretRequests: [{ Guid: guid, Format: 'json', SecretType: 'connection', Id: '' }] }),
    );
    expect(mint.code).toBe(status.INVALID_ARGUMENT);

    // revoked: refused with the generic message
    await t.owner.call('revokeConnection', { client_id: conn.client_id });
    const err = await failure(
      t.host.getOnlineSecret({ ClientId: conn.client_id, SecretRequests: [{ Guid: guid, Format: 'binary', SecretType: 'key', Id: 'default/key/disk' }] }),
    );
    expect(err.code).toBe(status.PERMISSION_DENIED);
    expect(err.details).toMatch(/^attestation failed/);
  });

  it('200 concurrent launches each receive only their own secrets', async () => {
    const n = 200;
    await Promise.all(
      Array.from({ length: n }, (_, i) => t.owner.call('putSecret', { id: `tenant/key/vm-${i}`, value: Buffer.from(`secret of vm ${i}`), policy_name: '' })),
    );
    const results = await Promise.all(
      Array.from({ length: n }, (_, i) =>
        simulatedLaunch(t.host, t.platform, {
          policy: [0x1, 0x3, 0x5, 0x7][i % 4]!,
          requests: [{ Guid: KEY_GUID, Format: 'binary', SecretType: 'key', Id: `tenant/key/vm-${i}` }],
        }),
      ),
    );
    results.forEach((r, i) => expect(r.secrets).toEqual([{ guid: KEY_GUID, data: Buffer.from(`secret of vm ${i}`) }]));
    expect(new Set(results.map((r) => r.bundle.LaunchId)).size).toBe(n);
  }, 180_000);
});
