import { randomUUID } from 'node:crypto';
import { syntheticOvmf } from '@kb/sev-host-sim';
import { platformRoot } from '@kb/sev-sim';
import { AttestationService } from '../src/attestation-service/service';
import { AuditTrail } from '../src/audit';
import { createCore } from '../src/core';
import { EcdhPool } from '../src/keybroker/ecdh-pool';
import { silentLogger } from '../src/log';
import { startTestBroker, testConfig, testDatabase, testPlatform } from './support/broker';
import { launchBody, ocaOf, sevRegistration, sha256hex, cmdlineHashHex } from './support/attestation';
import { SimulatedHypervisor } from '@kb/sev-host-sim';

/**
 * The attestation service's handlers on the broker core without the HTTP layer: the digest the broker computes from a
 * registration (firmware catalogue, kernel-hashes table, SEV-ES VMSAs) is the one the simulated host measures, and
 * the secrets reach the guest. (attestation-service.test.ts runs the same over HTTP.)
 */
/** Closed after each test, passed or failed: an open PGlite or ECDH worker would keep jest from exiting. */
const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c().catch(() => undefined);
});

it('SEV and SEV-ES, disk and direct kernel boot: registered digests match what the simulated host measures', async () => {
  const db = await testDatabase('pglite');
  const store = await db.open();
  const platform = testPlatform();
  const ctx = {
    config: testConfig(),
    store,
    logger: silentLogger,
    audit: new AuditTrail(store, silentLogger),
    extraRoots: [platformRoot(platform)],
    now: () => new Date(),
  };
  const ecdh = new EcdhPool();
  cleanups.push(
    () => store.close(),
    () => ecdh.close(),
  );
  const svc = new AttestationService(ctx as never, createCore(ctx as never, ecdh));
  const info = { peer: 'ipv4:127.0.0.1:1', refId: 'r1', signal: new AbortController().signal };
  const fw = syntheticOvmf({ label: 'x' });
  await svc.addFirmware({ admin: true }, fw, info);
  const K = { kernel: Buffer.from('kernel'), initrd: Buffer.from('initrd'), cmdline: 'console=ttyS0' };
  for (const [policy, vcpus, kernel] of [
    [1, 1, false],
    [5, 3, false],
    [1, 1, true],
    [5, 2, true],
  ] as const) {
    const uuid = randomUUID();
    await svc.register(
      { admin: true },
      uuid,
      sevRegistration(platform, fw, {
        policy,
        'cpu-count': vcpus,
        ...(kernel ? { 'kernel-hash': sha256hex(K.kernel), 'initrd-hash': sha256hex(K.initrd), 'cmdline-hash': cmdlineHashHex(K.cmdline) } : {}),
      }),
      info,
    );
    const l = await svc.launch(uuid, launchBody(platform, { family: 25, model: 1, stepping: 1 }), info);
    const vm = new SimulatedHypervisor(platform).createVm({
      firmware: fw,
      policy,
      godhCert: Buffer.from(l['owner-cert'] as string, 'base64'),
      session: Buffer.from(l.session as string, 'base64'),
      vcpus,
      vcpu: { family: 25, model: 1, stepping: 1 },
      ...(kernel ? { kernel: K, kernelHashes: true } : {}),
    });
    vm.start({ paused: true });
    const q = vm.querySev();
    const v = await svc.validate(
      uuid,
      {
        'launch-id': l['launch-id'],
        'api-major': q.apiMajor,
        'api-minor': q.apiMinor,
        'build-id': q.buildId,
        policy,
        measurement: vm.launchMeasurement(),
        'firmware-hash': sha256hex(fw),
        'cpu-count': vcpus,
      },
      info,
    );
    vm.injectSecret(v['secret-header'] as string, v['secret-table'] as string);
    vm.resume();
    expect(vm.guestSecrets().map((s) => s.data.toString())).toEqual(['pw']);
  }
  await ctx.audit.flush();
}, 120_000);

describe('every field fuzzed: a clear "invalid" naming the field, nothing written, no session consumed', () => {
  const BAD: unknown[] = [null, true, -1, 1.5, 2 ** 40, '', 'x'.repeat(10_000), 'zz', [], [null], {}, { a: 1 }, '%%%%', '0'.repeat(63), '🙂'];

  it('registration, /launch and /validate', async () => {
    const db = await testDatabase('pglite');
    const store = await db.open();
    const platform = testPlatform();
    const ctx = {
      config: testConfig(),
      store,
      logger: silentLogger,
      audit: new AuditTrail(store, silentLogger),
      extraRoots: [platformRoot(platform)],
      now: () => new Date(),
    };
    const ecdh = new EcdhPool();
    cleanups.push(
      () => store.close(),
      () => ecdh.close(),
    );
    const svc = new AttestationService(ctx as never, createCore(ctx as never, ecdh));
    const info = { peer: 'ipv4:127.0.0.1:1', refId: 'r1', signal: new AbortController().signal };
    const fw = syntheticOvmf({ label: 'fuzz' });
    await svc.addFirmware({ admin: true }, fw, info);
    const good: Record<string, unknown> = {
      scheme: 'amd-sev',
      'cloud-cert': ocaOf(platform),
      policy: 5,
      'cpu-count': 2,
      'firmware-hashes': [sha256hex(fw)],
      'kernel-hash': sha256hex('k'),
      'initrd-hash': sha256hex('i'),
      'cmdline-hash': cmdlineHashHex('c'),
      secrets: [
        { type: 'luks-passphrase', passphrase: 'pw' },
        { guid: 'a3e5d8f1-2b4c-4d6e-8f00-112233445566', data: 'AAEC' },
      ],
      'cpu-models': ['EPYC-Milan'],
      'launch-digests': [sha256hex('d')],
      'not-before': '2020-01-01T00:00:00Z',
      'not-after': '2099-01-01T00:00:00Z',
      'max-launches': 3,
      policies: [],
      'vmsa-fpu': 'legacy',
    };
    const invalidOf = async (p: Promise<unknown>, what = '') => {
      const e = await p.then(
        () => `accepted ${what}`,
        (err: unknown) => err,
      );
      expect(e).toMatchObject({ kind: 'invalid' });
      return (e as Error & { publicMessage: string }).publicMessage;
    };
    const uuid = randomUUID();
    for (const field of Object.keys(good)) {
      for (const bad of BAD) {
        if ((field === 'secrets' || field === 'policies') && Array.isArray(bad) && bad.length === 0) continue; // valid: none
        const msg = await invalidOf(svc.register({ admin: true }, uuid, { ...good, [field]: bad }, info), `${field}=${JSON.stringify(bad)}`);
        // the message is about the registration's fields, in the API's names
        expect(msg).toMatch(/[a-z-]+/);
      }
      const without = { ...good };
      delete without[field];
      if (['scheme', 'policy', 'cpu-count', 'firmware-hashes', 'cloud-cert', 'kernel-hash'].includes(field))
        await invalidOf(svc.register({ admin: true }, uuid, without, info));
    }
    await invalidOf(svc.register({ admin: true }, uuid, { ...good, surprise: 1 }, info));
    await invalidOf(svc.register({ admin: true }, 'not-a-uuid', good, info));
    expect(await store.getVm(uuid)).toBeUndefined();
    expect(await store.listVms(null, undefined, 10)).toEqual([]);

    // the real registration, then /launch and /validate with every field broken in turn
    await svc.register({ admin: true }, uuid, { ...good, 'kernel-hash': sha256hex('k') }, info);
    const launchGood = launchBody(platform, { family: 25, model: 1, stepping: 1 });
    for (const field of ['pdh', 'cert-chain', 'cpu-id']) {
      for (const bad of BAD) await invalidOf(svc.launch(uuid, { ...launchGood, [field]: bad }, info), `${field}=${JSON.stringify(bad)}`);
    }
    await invalidOf(svc.launch(uuid, { ...launchGood, extra: 1 }, info));
    expect(await store.countPendingSessions(new Date())).toBe(0);
    const l = await svc.launch(uuid, launchGood, info);
    const validateGood = {
      'launch-id': l['launch-id'],
      'api-major': 1,
      'api-minor': 0,
      'build-id': 0,
      policy: 5,
      measurement: Buffer.alloc(48).toString('base64'),
      'firmware-hash': sha256hex(fw),
      'cpu-count': 2,
    };
    for (const field of Object.keys(validateGood)) {
      for (const bad of BAD) await invalidOf(svc.validate(uuid, { ...validateGood, [field]: bad }, info), `${field}=${JSON.stringify(bad)}`);
    }
    // nothing consumed the session: it is still pending
    expect(await store.countPendingSessions(new Date())).toBe(1);
    await ctx.audit.flush();
  }, 120_000);
});

describe('PostgreSQL: one launch session, two brokers', () => {
  /** A broker's core and attestation service on its own store (its own connection pool) over one database. */
  async function replica(db: Awaited<ReturnType<typeof testDatabase>>) {
    const store = await db.open();
    const platform = testPlatform();
    const ctx = {
      config: testConfig(),
      store,
      logger: silentLogger,
      audit: new AuditTrail(store, silentLogger),
      extraRoots: [platformRoot(platform)],
      now: () => new Date(),
    };
    const ecdh = new EcdhPool();
    const close = async () => {
      await ctx.audit.flush();
      await ecdh.close();
      await store.close();
    };
    cleanups.push(close);
    return { svc: new AttestationService(ctx as never, createCore(ctx as never, ecdh)), store, close };
  }
  const info = { peer: 'ipv4:127.0.0.1:1', refId: 'r1', signal: new AbortController().signal };
  const fw = syntheticOvmf({ label: 'pg' });

  async function prepared(svc: AttestationService) {
    const platform = testPlatform();
    await svc.addFirmware({ admin: true }, fw, info);
    const uuid = randomUUID();
    await svc.register({ admin: true }, uuid, sevRegistration(platform, fw), info);
    const l = await svc.launch(uuid, launchBody(platform), info);
    const vm = new SimulatedHypervisor(platform).createVm({
      firmware: fw,
      policy: 1,
      godhCert: Buffer.from(l['owner-cert'] as string, 'base64'),
      session: Buffer.from(l.session as string, 'base64'),
    });
    vm.start({ paused: true });
    const q = vm.querySev();
    const body = {
      'launch-id': l['launch-id'],
      'api-major': q.apiMajor,
      'api-minor': q.apiMinor,
      'build-id': q.buildId,
      policy: 1,
      measurement: vm.launchMeasurement(),
      'firmware-hash': sha256hex(fw),
      'cpu-count': 1,
    };
    return { uuid, vm, body };
  }

  it('50 concurrent /validate split over two brokers: exactly one success', async () => {
    const db = await testDatabase('pg');
    cleanups.push(() => db.drop());
    const [a, b] = [await replica(db), await replica(db)];
    const { uuid, vm, body } = await prepared(a.svc);
    const results = await Promise.allSettled(Array.from({ length: 50 }, (_, i) => (i % 2 ? b : a).svc.validate(uuid, body, info)));
    const ok = results.filter((r) => r.status === 'fulfilled') as PromiseFulfilledResult<Record<string, unknown>>[];
    expect(ok).toHaveLength(1);
    expect(results.filter((r) => r.status === 'rejected' && (r.reason as { kind?: string }).kind === 'denied')).toHaveLength(49);
    vm.injectSecret(ok[0]!.value['secret-header'] as string, ok[0]!.value['secret-table'] as string);
    vm.resume();
    expect(vm.guestSecrets().map((s) => s.data.toString())).toEqual(['pw']);
  }, 120_000);

  it('/launch follows a registration replaced or removed through another broker at once (cached terms never decide alone)', async () => {
    const db = await testDatabase('pg');
    cleanups.push(() => db.drop());
    const [a, b] = [await replica(db), await replica(db)];
    const platform = testPlatform();
    const uuid = randomUUID();
    const registration = (policy: number) => sevRegistration(platform, fw, { policy });
    const body = launchBody(platform); // no cpu-id: fine for SEV (policy 1), refused for SEV-ES (policy 5)
    await a.svc.addFirmware({ admin: true }, fw, info);
    await a.svc.register({ admin: true }, uuid, registration(1), info);
    expect((await a.svc.launch(uuid, body, { ...info, refId: 'ok-1' })).policy).toBe(1); // a now holds policy 1's terms
    let reads = 0;
    const getVm = a.store.getVm.bind(a.store);
    a.store.getVm = (u) => (reads++, getVm(u));
    expect((await a.svc.launch(uuid, body, { ...info, refId: 'ok-0' })).policy).toBe(1);
    expect(reads).toBe(0); // unchanged registration: the session's statement is the launch's only round trip
    await b.svc.replace({ admin: true }, uuid, registration(5), info);
    await expect(a.svc.launch(uuid, body, { ...info, refId: 'es' })).rejects.toMatchObject({ kind: 'denied' });
    await b.svc.replace({ admin: true }, uuid, registration(1), info); // a now holds policy 5's: they refuse, the database allows
    const l2 = await a.svc.launch(uuid, body, { ...info, refId: 'ok-2' });
    expect(l2.policy).toBe(1);
    // a policy changed between /launch and /validate: the owner's latest word holds, the launch gets no secret
    await b.svc.replace({ admin: true }, uuid, registration(3), info);
    const claims = { 'api-major': 1, 'api-minor': 51, 'build-id': 3, policy: 1, measurement: Buffer.alloc(48).toString('base64'), 'cpu-count': 1 };
    await expect(
      a.svc.validate(uuid, { ...claims, 'launch-id': l2['launch-id'], 'firmware-hash': sha256hex(fw) }, { ...info, refId: 'changed' }),
    ).rejects.toMatchObject({ kind: 'denied', detail: 'the registered policy changed since /launch (0x1 then, 0x3 now)' });
    await b.svc.remove({ admin: true }, uuid, info);
    await expect(a.svc.launch(uuid, body, { ...info, refId: 'gone' })).rejects.toMatchObject({ kind: 'denied' });
    await a.close();
    const trail = (await b.store.listAudit({ event: 'vm-launch' })).map((e) => [e.refId, e.outcome, (e.detail as { reason?: string }).reason ?? '']);
    expect(trail.sort()).toEqual([
      ['es', 'refused', 'an SEV-ES launch needs the host to name its vCPU (cpu-id)'],
      ['gone', 'refused', `VM ${uuid} is not registered`],
      ['ok-0', 'issued', ''],
      ['ok-1', 'issued', ''],
      ['ok-2', 'issued', ''],
    ]);
    // one session per issued launch, each bound to the VM
    expect(await b.store.countPendingSessions(new Date())).toBe(2); // ok-2's was consumed by its refused /validate
    expect(reads).toBe(3); // es, ok-2 and gone each read the registration once more
  }, 120_000);

  it('a broker restarted between /launch and /validate finishes the launch', async () => {
    const db = await testDatabase('pg');
    cleanups.push(() => db.drop());
    const first = await replica(db);
    const { uuid, vm, body } = await prepared(first.svc);
    await first.close();
    const second = await replica(db);
    const v = await second.svc.validate(uuid, body, info);
    vm.injectSecret(v['secret-header'] as string, v['secret-table'] as string);
    vm.resume();
    expect(vm.guestSecrets().map((s) => s.data.toString())).toEqual(['pw']);
  }, 120_000);
});

it('owner tokens: created through the admin API, shown once, stored hashed, scoped by name, revoked by delete', async () => {
  const db = await testDatabase('pglite');
  const store = await db.open();
  cleanups.push(() => store.close());
  const t = await startTestBroker(store);
  cleanups.push(() => t.close());
  const { token } = await t.owner.call<{ name: string; token: string }>('createOwner', { name: 'alice' });
  expect(token).toMatch(/^kbo_[A-Za-z0-9_-]{43}$/);
  await expect(t.owner.call('createOwner', { name: 'alice' })).rejects.toMatchObject({ code: 6 }); // ALREADY_EXISTS
  expect(await t.owner.call('listOwners', { prefix: '', page_size: 0, page_token: '' })).toMatchObject({ owners: [{ name: 'alice' }] });
  const ctx = { config: testConfig(), store, logger: silentLogger, audit: new AuditTrail(store, silentLogger), extraRoots: [], now: () => new Date() };
  const ecdh = new EcdhPool();
  cleanups.push(() => ecdh.close());
  const svc = new AttestationService(ctx as never, createCore(ctx as never, ecdh));
  expect(await svc.ownerForToken(token)).toBe('alice');
  expect(await svc.ownerForToken(token + 'x')).toBeUndefined();
  await t.owner.call('deleteOwner', { name: 'alice' });
  expect(await svc.ownerForToken(token)).toBeUndefined();
}, 120_000);
