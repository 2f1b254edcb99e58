import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { status } from '@grpc/grpc-js';
import { createPlatform, platformChain } from '@kb/sev-sim';
import type { Store } from '@kb/store';
import { failure } from './support/grpc';
import { DRIVERS, policyFor, startTestBroker, testDatabase, type TestBroker } from './support/broker';
import { expectedDigest, FIRMWARE, prepareLaunch, simulatedLaunch } from './support/host';

const GUID = '736869e5-84f0-4973-92ec-06879ce3da0b';
const KEY = [{ Guid: GUID, Format: 'binary', SecretType: 'key', Id: 'default/key/disk' }];
const DENIED = /^attestation failed \(ref ([0-9a-f]{12})\)$/;
const VECTORS = join(__dirname, '../../../../shared/vectors/sev');

describe.each(DRIVERS)('refusals and attacks (%s)', (driver) => {
  let db: Awaited<ReturnType<typeof testDatabase>>;
  let store: Store;
  let t: TestBroker;
  let clock = Date.now();

  beforeAll(async () => {
    db = await testDatabase(driver);
    store = await db.open();
    t = await startTestBroker(store, { sessionTtlSeconds: 600 }, () => new Date(clock));
    await t.owner.call('putSecret', { id: 'default/key/disk', value: Buffer.from('disk passphrase'), policy_name: '' });
  }, 120_000);

  afterAll(async () => {
    await t?.close();
    await store?.close();
    await db?.drop();
  });

  async function reasonFor(refId: string): Promise<string> {
    const r = await t.owner.call<{ entries: { detail_json: string }[] }>('listAudit', { ref_id: refId, limit: 5, since: '', launch_id: '', page_token: '' });
    return r.entries.map((e) => e.detail_json).join('\n');
  }

  async function refused(p: Promise<unknown>, reason: RegExp): Promise<void> {
    const err = await failure(p);
    expect(err.code).toBe(status.PERMISSION_DENIED);
    const m = DENIED.exec(err.details);
    expect(m).not.toBeNull();
    // audit rows are written off the request path: wait for this one
    let text = '';
    for (const deadline = Date.now() + 10_000; !(text = await reasonFor(m![1]!)) && Date.now() < deadline;) await new Promise((r) => setTimeout(r, 20));
    expect(text).toMatch(reason);
  }

  it('without a tenant default policy nothing is released', async () => {
    await refused(simulatedLaunch(t.host, t.platform, { policy: 0x1, requests: KEY }), /no.*default|tenant-default policy 'default' does not exist/);
  });

  describe('with a tenant default policy', () => {
    beforeAll(async () => {
      const digests = [0x0, 0x1, 0x3, 0x5].map((p) => expectedDigest(p));
      await t.owner.call('putPolicy', { name: 'default', document_json: policyFor(digests) });
    });

    it('policy-binding attack: a bundle for a debuggable policy cannot be claimed as NODBG', async () => {
      // the host asks for policy 0 (debugging allowed), launches with it, and claims 0x3 in GetSecret
      await refused(simulatedLaunch(t.host, t.platform, { policy: 0x0, requests: KEY, claim: { Policy: 0x3 } }), /policy mismatch/);
      // claiming the truth is refused too: the default policy does not allow debuggable guests
      await refused(simulatedLaunch(t.host, t.platform, { policy: 0x0, requests: KEY }), /NODBG|debug/i);
    });

    it('byte-truncation attack: API numbers above 255 are malformed and do not consume the launch', async () => {
      const fw = t.platform.firmware;
      const err = await failure(simulatedLaunch(t.host, t.platform, { policy: 0x1, requests: KEY, claim: { ApiMajor: fw.apiMajor + 256 } }));
      expect(err.code).toBe(status.INVALID_ARGUMENT);
      expect(err.details).toMatch(/ApiMajor must be 0..255/);
    });

    it('launch-id replay: a launch id works once', async () => {
      const first = await simulatedLaunch(t.host, t.platform, { policy: 0x1, requests: KEY });
      expect(first.secrets[0]!.data.toString()).toBe('disk passphrase');
      await refused(simulatedLaunch(t.host, t.platform, { policy: 0x1, requests: KEY, claim: { LaunchId: first.bundle.LaunchId } }), /already used/);
    });

    it('a launch id is consumed exactly once under 50 concurrent GetSecret calls', async () => {
      const { request } = await prepareLaunch(t.host, t.platform, { policy: 0x1, requests: KEY });
      const results = await Promise.allSettled(Array.from({ length: 50 }, () => t.host.getSecret(request)));
      expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
      for (const r of results.filter((x): x is PromiseRejectedResult => x.status === 'rejected')) {
        expect(r.reason.code).toBe(status.PERMISSION_DENIED);
      }
    });

    it('wrong firmware: the measurement does not verify against the expected digest', async () => {
      const other = Buffer.from(FIRMWARE);
      other[0] = other[0]! ^ 1;
      await refused(simulatedLaunch(t.host, t.platform, { policy: 0x1, requests: KEY, firmware: other }), /measurement does not verify/);
    });

    it('an honest digest that the owner did not allow is refused by policy', async () => {
      const other = Buffer.from(FIRMWARE);
      other[1] = other[1]! ^ 1;
      const digest = expectedDigest(0x1, other).toString('base64');
      await refused(simulatedLaunch(t.host, t.platform, { policy: 0x1, requests: KEY, firmware: other, claim: { FwDigest: digest } }), /allowedDigests/);
    });

    it('a missing secret refuses the launch, with the same answer as any other refusal', async () => {
      await refused(
        simulatedLaunch(t.host, t.platform, { policy: 0x1, requests: [{ Guid: GUID, Format: 'binary', SecretType: 'key', Id: 'default/key/nope' }] }),
        /default\/key\/nope.*does not exist/,
      );
    });

    it('an expired launch session is refused', async () => {
      const { request } = await prepareLaunch(t.host, t.platform, { policy: 0x1, requests: KEY });
      clock += 601_000;
      try {
        await refused(t.host.getSecret(request), /expired/);
      } finally {
        clock -= 601_000;
      }
    });

    it('maxReleases caps how often a policy releases', async () => {
      await t.owner.call('putPolicy', { name: 'once', document_json: policyFor([expectedDigest(0x1)], { maxReleases: 1 }) });
      await t.owner.call('putSecret', { id: 'default/key/once', value: Buffer.from('one time'), policy_name: 'once' });
      const req = [{ Guid: GUID, Format: 'binary', SecretType: 'key', Id: 'default/key/once' }];
      await simulatedLaunch(t.host, t.platform, { policy: 0x1, requests: req });
      await refused(simulatedLaunch(t.host, t.platform, { policy: 0x1, requests: req }), /maxReleases/);
    });

    it('host-facing refusal messages do not differ by reason', async () => {
      const msgs = await Promise.all([
        failure(simulatedLaunch(t.host, t.platform, { policy: 0x1, requests: [{ Guid: GUID, Format: 'binary', SecretType: 'key', Id: 'no/such' }] })),
        failure(simulatedLaunch(t.host, t.platform, { policy: 0x1, requests: KEY, claim: { Policy: 0x3 } })),
        failure(simulatedLaunch(t.host, t.platform, { policy: 0x1, requests: KEY, claim: { FwDigest: Buffer.alloc(32).toString('base64') } })),
      ]);
      expect(new Set(msgs.map((m) => m.details.replace(/\(ref [0-9a-f]+\)/, '')))).toEqual(new Set(['attestation failed ']));
    });
  });

  describe('GetBundle', () => {
    it('accepts a real AMD chain (Milan) through the pinned roots', async () => {
      const chain = readFileSync(join(VECTORS, 'platform-chains/milan_full_chain.bin'));
      const b = await t.host.getBundle({ CertificateChain: chain.toString('base64'), Policy: 0x1 });
      expect(Buffer.from(b.GuestOwnerPublicKey, 'base64')).toHaveLength(2084);
      expect(Buffer.from(b.LaunchBlob, 'base64')).toHaveLength(128);
      expect(b.LaunchId).toMatch(/^[0-9a-f-]{36}$/);
    });

    it('refuses a chain under a root nobody told it to trust', async () => {
      const rogue = createPlatform({ name: 'rogue' });
      const err = await failure(t.host.getBundle({ CertificateChain: platformChain(rogue).toString('base64'), Policy: 0x1 }));
      expect(err.code).toBe(status.PERMISSION_DENIED);
      expect(err.details).toMatch(/^certificate chain not trusted \(ref [0-9a-f]{12}\)$/);
    });

    it('refuses policies the sev crate cannot encode', async () => {
      const err = await failure(t.host.getBundle({ CertificateChain: platformChain(t.platform).toString('base64'), Policy: 0x10001 }));
      expect(err.code).toBe(status.INVALID_ARGUMENT);
    });
  });
});

describe('limits', () => {
  let store: Store;
  let db: Awaited<ReturnType<typeof testDatabase>>;
  beforeAll(async () => {
    db = await testDatabase('pglite');
    store = await db.open();
  });
  afterAll(async () => {
    await store.close();
  });

  it('rate-limits GetBundle per peer', async () => {
    const t = await startTestBroker(store, { bundleRatePerSecond: 0.001, bundleBurst: 2 });
    try {
      const req = { CertificateChain: platformChain(t.platform).toString('base64'), Policy: 0x1 };
      await t.host.getBundle(req);
      await t.host.getBundle(req);
      const err = await failure(t.host.getBundle(req));
      expect(err.code).toBe(status.RESOURCE_EXHAUSTED);
    } finally {
      await t.close();
    }
  });

  it('caps pending launch sessions', async () => {
    const t = await startTestBroker(store, { maxPendingSessions: (await store.countPendingSessions(new Date())) + 2 });
    try {
      const req = { CertificateChain: platformChain(t.platform).toString('base64'), Policy: 0x1 };
      await t.host.getBundle(req);
      await t.host.getBundle(req);
      const err = await failure(t.host.getBundle(req));
      expect(err.code).toBe(status.RESOURCE_EXHAUSTED);
    } finally {
      await t.close();
    }
  });
});
