import { randomUUID } from 'node:crypto';
import { status, type ServiceError } from '@grpc/grpc-js';
import type { Store } from '@kb/store';
import { failure } from './support/grpc';
import { policyFor, startTestBroker, testDatabase, type TestBroker } from './support/broker';
import { expectedDigest, prepareLaunch } from './support/host';
import { eventually } from './support/wait';

const KEY_GUID = '736869e5-84f0-4973-92ec-06879ce3da0b';
const REF = / \(ref ([0-9a-f]{12})\)$/;

/**
 * Every reference the broker hands a host is in the audit trail (what `kbctl audit --ref` reads): an entry of event
 * `call` naming the gRPC code, the call, the peer and the reason — for each class of failure — and never the request.
 */
describe('every reference a host receives has an audit entry', () => {
  let db: Awaited<ReturnType<typeof testDatabase>>;
  let store: Store;
  let t: TestBroker;

  beforeAll(async () => {
    db = await testDatabase('pglite');
    store = await db.open();
    t = await startTestBroker(store, { bundleRatePerSecond: 0.001, bundleBurst: 3, requestTimeoutSeconds: 0.5 });
    await t.owner.call('putPolicy', { name: 'default', document_json: policyFor([expectedDigest(0x1)]) });
    await t.owner.call('putSecret', { id: 'default/key/disk', value: Buffer.from('disk passphrase'), policy_name: '' });
  }, 120_000);

  afterAll(async () => {
    await t?.close();
    await store?.close();
    await db?.drop();
  });

  const refOf = (e: ServiceError) => {
    const m = REF.exec(e.details);
    if (!m) throw new Error(`no reference in ${status[e.code]}: ${e.details}`);
    return m[1]!;
  };
  const callEntry = (ref: string) => eventually(async () => (await store.listAudit({ refId: ref })).find((e) => e.event === 'call'));

  it('INVALID_ARGUMENT, PERMISSION_DENIED, RESOURCE_EXHAUSTED, DEADLINE_EXCEEDED and INTERNAL: each reference is found with its class, call and peer', async () => {
    const answers: ServiceError[] = [];
    // malformed input (a field check)
    answers.push(await failure(t.host.getBundle({ CertificateChain: '***not base64***', Policy: 1 })));
    // an attestation refusal: an unknown launch id
    const unknown = randomUUID();
    const KEY = [{ Guid: KEY_GUID, Format: 'binary', SecretType: 'key', Id: 'default/key/disk' }];
    const launch = await prepareLaunch(t.host, t.platform, { policy: 0x1, requests: KEY });
    answers.push(await failure(t.host.getSecret({ ...launch.request, LaunchId: unknown })));
    // the GetBundle rate limit (burst 3: prepareLaunch took one, the malformed call another)
    let exhausted: ServiceError | undefined;
    for (let i = 0; i < 5 && !exhausted; i++) {
      const e = await failure(t.host.getBundle({ CertificateChain: 'AAAA', Policy: 1 }));
      if (e.code === status.RESOURCE_EXHAUSTED) exhausted = e;
    }
    answers.push(exhausted!);
    // a stuck database (its consume never answers within --request-timeout), then one that fails outright
    const consume = store.consumeLaunchSession;
    try {
      store.consumeLaunchSession = () => new Promise(() => undefined);
      answers.push(await failure(t.host.getSecret(launch.request)));
      store.consumeLaunchSession = () => Promise.reject(new Error('injected store failure'));
      answers.push(await failure(t.host.getSecret(launch.request)));
    } finally {
      store.consumeLaunchSession = consume;
    }

    const found: Record<string, unknown> = {};
    for (const a of answers) {
      const entry = await callEntry(refOf(a));
      const detail = entry?.detail as { rpc?: string; class?: string; reason?: string } | undefined;
      found[status[a.code]] = entry && {
        outcome: entry.outcome,
        rpc: detail?.rpc,
        class: detail?.class,
        peer: /^(ipv4:)?127\.0\.0\.1:\d+$/.test(entry.peer ?? ''),
        reason: typeof detail?.reason,
      };
    }
    expect(found).toEqual({
      INVALID_ARGUMENT: { outcome: 'INVALID_ARGUMENT', rpc: 'GetBundle', class: 'invalid', peer: true, reason: 'string' },
      PERMISSION_DENIED: { outcome: 'PERMISSION_DENIED', rpc: 'GetSecret', class: 'denied', peer: true, reason: 'string' },
      RESOURCE_EXHAUSTED: { outcome: 'RESOURCE_EXHAUSTED', rpc: 'GetBundle', class: 'exhausted', peer: true, reason: 'string' },
      DEADLINE_EXCEEDED: { outcome: 'DEADLINE_EXCEEDED', rpc: 'GetSecret', class: 'timeout', peer: true, reason: 'string' },
      INTERNAL: { outcome: 'INTERNAL', rpc: 'GetSecret', class: 'internal', peer: true, reason: 'string' },
    });
    // the refusal's own entry (with the reason the owner needs) shares the reference
    const deniedRef = refOf(answers[1]!);
    const decision = await eventually(async () => (await store.listAudit({ refId: deniedRef })).find((e) => e.event === 'secret'));
    expect(decision).toMatchObject({ outcome: 'refused', launchId: unknown, detail: { reason: 'launch id unknown, expired or already used' } });
    // the internal failure's reason is there for the owner, never in the host's answer
    expect(JSON.stringify((await callEntry(refOf(answers[4]!)))?.detail)).toContain('injected store failure');
    expect(answers[4]!.details).not.toContain('injected');
  });

  it('the request itself is never in the call entry', async () => {
    const marker = 'Zm9vYmFyIG1hcmtlciAxMjM0NTY3ODk';
    const e = await failure(
      t.host.getSecret({
        LaunchId: randomUUID(),
        LaunchMeasurement: marker,
        FwDigest: marker,
        ApiMajor: 1,
        ApiMinor: 0,
        BuildId: 1,
        Policy: 1,
        SecretRequests: [],
        LaunchDescription: marker,
      }),
    );
    expect(status[e.code]).toBe('INVALID_ARGUMENT');
    const entry = await callEntry(refOf(e));
    expect(entry).toBeDefined();
    expect(JSON.stringify(entry)).not.toContain(marker);
  });
});
