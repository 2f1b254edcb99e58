/**
 * The attestation service (issue #15) end to end over real HTTP on loopback, with libvirt's side played against the
 * simulated SEV host (libs/sev-host-sim): register once, launch (and relaunch), SEV and SEV-ES, direct kernel boot
 * with hashes and disk boot, the refusals, exactly-once /validate, owner isolation.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { cpuSignature } from '@kb/sev';
import { syntheticOvmf } from '@kb/sev-host-sim';
import { createPlatform } from '@kb/sev-sim';
import type { Store } from '@kb/store';
import { LUKS_PASSPHRASE_GUID } from '../src/attestation-service/registration';
import { ADMIN_TOKEN, startTestBroker, testDatabase, type TestBroker } from './support/broker';
import { api, cmdlineHashHex, hostLaunch, hostPrepare, launchBody, ocaOf, sevRegistration, sha256hex } from './support/attestation';
import { serviceBase } from './support/attestation-broker';

const FIRMWARE = syntheticOvmf({ label: 'attestation-service test firmware' });
const OTHER_FIRMWARE = syntheticOvmf({ label: 'a firmware nobody registered' });
const GENERIC_GUID = 'a3e5d8f1-2b4c-4d6e-8f00-112233445566';
const MILAN = { family: 25, model: 1, stepping: 1 };
const KERNEL = { kernel: randomBytes(64 * 1024), initrd: randomBytes(16 * 1024), cmdline: 'console=ttyS0 root=/dev/vda1' };

describe('attestation service /sev/v1 over HTTP (PGlite)', () => {
  let db: Awaited<ReturnType<typeof testDatabase>>;
  let store: Store;
  let t: TestBroker;
  let base: string;

  const registration = (over: Record<string, unknown> = {}) => ({
    scheme: 'amd-sev',
    'cloud-cert': ocaOf(t.platform),
    policy: 0x1,
    'cpu-count': 1,
    'firmware-hashes': [sha256hex(FIRMWARE)],
    secrets: [
      { type: 'luks-passphrase', passphrase: 'correct horse battery staple' },
      { guid: GENERIC_GUID, data: Buffer.from('generic secret bytes').toString('base64') },
    ],
    ...over,
  });
  const register = async (over: Record<string, unknown> = {}, token = ADMIN_TOKEN) => {
    const uuid = randomUUID();
    const r = await api(base, 'POST', `/vm/${uuid}`, registration(over), token);
    expect(r).toMatchObject({ status: 201 });
    return uuid;
  };

  beforeAll(async () => {
    db = await testDatabase('pglite');
    store = await db.open();
    t = await startTestBroker(store);
    base = serviceBase(t);
    expect(await api(base, 'POST', '/firmware', FIRMWARE, ADMIN_TOKEN)).toMatchObject({ status: 201, body: { sha256: sha256hex(FIRMWARE) } });
  }, 120_000);

  afterAll(async () => {
    await t?.close();
    await store?.close();
    await db?.drop();
  });

  const secretsOf = (s: { guid: string; data: Buffer }[] | undefined) => new Map((s ?? []).map((e) => [e.guid, e.data.toString('utf8')]));

  it('SEV disk boot: registered once, launched twice (a reboot); the guest reads the LUKS passphrase and the generic secret', async () => {
    const uuid = await register();
    for (let boot = 0; boot < 2; boot++) {
      const r = await hostLaunch(base, uuid, t.platform, { firmware: FIRMWARE, policy: 0x1 });
      expect(r.validate?.status).toBe(200);
      const got = secretsOf(r.secrets);
      expect(got.get(LUKS_PASSPHRASE_GUID)).toBe('correct horse battery staple');
      expect(got.get(GENERIC_GUID)).toBe('generic secret bytes');
    }
  });

  it('SEV direct kernel boot: the kernel-hashes table comes from the three registered hashes', async () => {
    const uuid = await register({
      'kernel-hash': sha256hex(KERNEL.kernel),
      'initrd-hash': sha256hex(KERNEL.initrd),
      'cmdline-hash': cmdlineHashHex(KERNEL.cmdline),
    });
    const ok = await hostLaunch(base, uuid, t.platform, { firmware: FIRMWARE, policy: 0x1, kernel: KERNEL });
    expect(ok.validate?.status).toBe(200);
    expect(secretsOf(ok.secrets).get(LUKS_PASSPHRASE_GUID)).toBe('correct horse battery staple');
    // another command line measures differently: refused
    const bad = await hostLaunch(base, uuid, t.platform, { firmware: FIRMWARE, policy: 0x1, kernel: { ...KERNEL, cmdline: 'init=/bin/sh' } });
    expect(bad.validate).toMatchObject({ status: 403, body: { error: 'denied' } });
  });

  it.each([1, 2, 3, 8])('SEV-ES with %d vCPU(s): VMSAs from cpu-count and the allowed CPU model', async (vcpus) => {
    const uuid = await register({ policy: 0x5, 'cpu-count': vcpus, 'cpu-models': ['EPYC-Milan'] });
    const r = await hostLaunch(base, uuid, t.platform, { firmware: FIRMWARE, policy: 0x5, vcpus, vcpu: MILAN });
    expect(r.validate?.status).toBe(200);
    expect(secretsOf(r.secrets).get(GENERIC_GUID)).toBe('generic secret bytes');
  });

  it('SEV-ES direct kernel boot with hashes', async () => {
    const uuid = await register({
      policy: 0x5,
      'cpu-count': 2,
      'cpu-models': [{ signature: cpuSignature(25, 1, 1) }],
      'kernel-hash': sha256hex(KERNEL.kernel),
      'initrd-hash': sha256hex(KERNEL.initrd),
      'cmdline-hash': cmdlineHashHex(KERNEL.cmdline),
    });
    const r = await hostLaunch(base, uuid, t.platform, { firmware: FIRMWARE, policy: 0x5, vcpus: 2, vcpu: MILAN, kernel: KERNEL });
    expect(r.validate?.status).toBe(200);
  });

  describe('refusals: the host learns the class and a reference, the audit trail the reason', () => {
    const reasonOf = async (ref: unknown) => {
      const entries = await store.listAudit({ refId: ref as string, limit: 10 });
      return entries.map((e) => JSON.stringify(e.detail)).join(' ');
    };
    const refusedWith = async (answer: { status: number; body: Record<string, unknown> } | undefined, reason: RegExp) => {
      expect(answer).toMatchObject({ status: 403, body: { error: 'denied', message: expect.stringMatching(/^attestation failed \(ref [0-9a-f]+\)$/) } });
      let text = '';
      for (let i = 0; i < 50 && !reason.test(text); i++) {
        text = await reasonOf(answer!.body.ref);
        if (!reason.test(text)) await new Promise((r) => setTimeout(r, 100));
      }
      expect(text).toMatch(reason);
      expect(JSON.stringify(answer!.body)).not.toMatch(reason);
    };

    it('unknown VM', async () => {
      const r = await api(base, 'POST', `/vm/${randomUUID()}/launch`, launchBody(t.platform));
      await refusedWith(r, /is not registered/);
    });

    it('a host whose chain carries another OCA', async () => {
      const other = createPlatform({ name: 'another-cloud' });
      const uuid = await register({ 'cloud-cert': ocaOf(other) });
      const r = await api(base, 'POST', `/vm/${uuid}/launch`, launchBody(t.platform));
      await refusedWith(r, /OCA .* is not one of the registered cloud-certs/);
    });

    it('firmware not registered: the host loaded another image', async () => {
      const uuid = await register();
      const r = await hostLaunch(base, uuid, t.platform, { firmware: OTHER_FIRMWARE, policy: 0x1 });
      await refusedWith(r.validate, /is not one of the registered firmware-hashes/);
    });

    it('firmware registered by hash but not in the catalogue', async () => {
      const uuid = await register({ 'firmware-hashes': [sha256hex(OTHER_FIRMWARE)] });
      const r = await hostLaunch(base, uuid, t.platform, { firmware: OTHER_FIRMWARE, policy: 0x1 });
      await refusedWith(r.validate, /not in the firmware catalogue/);
    });

    it('SEV-ES: a CPU model the owner does not allow', async () => {
      const uuid = await register({ policy: 0x5, 'cpu-models': ['EPYC-Rome'] });
      const r = await hostLaunch(base, uuid, t.platform, { firmware: FIRMWARE, policy: 0x5, vcpu: MILAN });
      await refusedWith(r.launch, /not one of the registered cpu-models/);
    });

    it('SEV-ES: a host lying about its vCPU is caught by the measurement', async () => {
      const uuid = await register({ policy: 0x5, 'cpu-models': ['EPYC-Milan', 'EPYC-Rome'] });
      const p = await hostPrepare(
        base,
        uuid,
        t.platform,
        { firmware: FIRMWARE, policy: 0x5, vcpu: MILAN },
        { 'cpu-id': { family: 23, model: 49, stepping: 0 } },
      );
      const v = await api(base, 'POST', `/vm/${uuid}/validate`, p.validate);
      await refusedWith(v, /measurement does not verify/);
    });

    it('measurement mismatch (a forged measurement)', async () => {
      const uuid = await register();
      const r = await hostLaunch(base, uuid, t.platform, { firmware: FIRMWARE, policy: 0x1 }, { measurement: randomBytes(48).toString('base64') });
      await refusedWith(r.validate, /measurement does not verify/);
    });

    it('a replayed /validate is refused; the first one was served', async () => {
      const uuid = await register();
      const p = await hostPrepare(base, uuid, t.platform, { firmware: FIRMWARE, policy: 0x1 });
      expect((await api(base, 'POST', `/vm/${uuid}/validate`, p.validate)).status).toBe(200);
      await refusedWith(await api(base, 'POST', `/vm/${uuid}/validate`, p.validate), /launch id unknown, expired or already used/);
    });

    it('a launch opened for one VM cannot validate another', async () => {
      const a = await register();
      const b = await register();
      const p = await hostPrepare(base, a, t.platform, { firmware: FIRMWARE, policy: 0x1 });
      await refusedWith(await api(base, 'POST', `/vm/${b}/validate`, p.validate), /was not opened for VM/);
    });

    it('max-launches: the second boot past the limit is refused', async () => {
      const uuid = await register({ 'max-launches': 1 });
      expect((await hostLaunch(base, uuid, t.platform, { firmware: FIRMWARE, policy: 0x1 })).validate?.status).toBe(200);
      await refusedWith((await hostLaunch(base, uuid, t.platform, { firmware: FIRMWARE, policy: 0x1 })).validate, /max-launches reached maxReleases 1/);
    });
  });

  it('50 concurrent /validate for one launch: exactly one success', async () => {
    const uuid = await register();
    const p = await hostPrepare(base, uuid, t.platform, { firmware: FIRMWARE, policy: 0x1 });
    const answers = await Promise.all(Array.from({ length: 50 }, () => api(base, 'POST', `/vm/${uuid}/validate`, p.validate)));
    expect(answers.filter((a) => a.status === 200)).toHaveLength(1);
    expect(answers.filter((a) => a.status === 403)).toHaveLength(49);
  });

  describe('owners', () => {
    let alice: string;
    let bob: string;
    beforeAll(async () => {
      alice = (await t.owner.call<{ token: string }>('createOwner', { name: 'alice' })).token;
      bob = (await t.owner.call<{ token: string }>('createOwner', { name: 'bob' })).token;
    });

    it("an owner reads, replaces, lists and deletes its own VMs only; another owner's are not found", async () => {
      const uuid = await register({}, alice);
      expect(await api(base, 'GET', `/vm/${uuid}`, undefined, alice)).toMatchObject({
        status: 200,
        body: {
          uuid,
          owner: 'alice',
          secrets: [
            { guid: LUKS_PASSPHRASE_GUID, type: 'luks-passphrase' },
            { guid: GENERIC_GUID, type: 'generic' },
          ],
        },
      });
      // secrets are never returned
      expect(JSON.stringify((await api(base, 'GET', `/vm/${uuid}`, undefined, alice)).body)).not.toMatch(/horse|Z2VuZXJpYy/);
      expect((await api(base, 'GET', `/vm/${uuid}`, undefined, bob)).status).toBe(404);
      expect((await api(base, 'PUT', `/vm/${uuid}`, registration({ policy: 0x3 }), bob)).status).toBe(404);
      expect((await api(base, 'DELETE', `/vm/${uuid}`, undefined, bob)).status).toBe(404);
      const bobs = await api(base, 'GET', '/vm', undefined, bob);
      expect((bobs.body.vms as { uuid: string }[]).map((v) => v.uuid)).not.toContain(uuid);
      const alices = await api(base, 'GET', '/vm', undefined, alice);
      expect((alices.body.vms as { uuid: string }[]).map((v) => v.uuid)).toEqual([uuid]);
      // the admin sees it; alice replaces and deletes it
      expect((await api(base, 'GET', `/vm/${uuid}`, undefined, ADMIN_TOKEN)).status).toBe(200);
      expect(await api(base, 'PUT', `/vm/${uuid}`, registration({ policy: 0x3 }), alice)).toMatchObject({ status: 200, body: { policy: 3 } });
      expect((await api(base, 'DELETE', `/vm/${uuid}`, undefined, alice)).status).toBe(204);
      expect((await api(base, 'GET', `/vm/${uuid}`, undefined, alice)).status).toBe(404);
    });

    it('no token, a wrong token, a deleted owner: 401', async () => {
      expect((await api(base, 'GET', '/vm')).status).toBe(401);
      expect((await api(base, 'GET', '/vm', undefined, 'kbo_not-a-token')).status).toBe(401);
      const carol = (await t.owner.call<{ token: string }>('createOwner', { name: 'carol' })).token;
      expect((await api(base, 'GET', '/vm', undefined, carol)).status).toBe(200);
      await t.owner.call('deleteOwner', { name: 'carol' });
      expect((await api(base, 'GET', '/vm', undefined, carol)).status).toBe(401);
    });

    it('a registration conflict is 409', async () => {
      const uuid = await register({}, alice);
      expect((await api(base, 'POST', `/vm/${uuid}`, registration(), bob)).status).toBe(409);
    });
  });

  it('firmware catalogue: list, idempotent add, delete', async () => {
    const list = await api(base, 'GET', '/firmware', undefined, ADMIN_TOKEN);
    expect((list.body.firmware as { sha256: string; size: number }[]).find((f) => f.sha256 === sha256hex(FIRMWARE))).toMatchObject({ size: FIRMWARE.length });
    const extra = syntheticOvmf({ label: 'deleted later' });
    expect((await api(base, 'POST', '/firmware', extra, ADMIN_TOKEN)).status).toBe(201);
    expect((await api(base, 'DELETE', `/firmware/${sha256hex(extra)}`, undefined, ADMIN_TOKEN)).status).toBe(204);
    expect((await api(base, 'DELETE', `/firmware/${sha256hex(extra)}`, undefined, ADMIN_TOKEN)).status).toBe(404);
  });

  it('serves its OpenAPI 3.1 document', async () => {
    const r = await api(base, 'GET', '/openapi.json');
    expect(r).toMatchObject({ status: 200, body: { openapi: '3.1.0', servers: [{ url: '/sev/v1' }] } });
    expect(Object.keys(r.body.paths as object)).toEqual(expect.arrayContaining(['/vm/{uuid}', '/vm/{uuid}/launch', '/vm/{uuid}/validate', '/firmware']));
  });
});

describe('over HTTP, every field fuzzed: 400 with the field named, nothing written', () => {
  let db: Awaited<ReturnType<typeof testDatabase>>;
  let store: Store;
  let t: TestBroker;
  let base: string;
  beforeAll(async () => {
    db = await testDatabase('pglite');
    store = await db.open();
    t = await startTestBroker(store);
    base = serviceBase(t);
  }, 120_000);
  afterAll(async () => {
    await t?.close();
    await store?.close();
  });

  const BAD: unknown[] = [null, true, -1, 1.5, '5', '', 'x'.repeat(600), [], [7], {}, { a: 1 }, 'zz'];
  it('registration fields: wrong types are refused, not coerced; unknown fields are refused, not dropped', async () => {
    const good: Record<string, unknown> = {
      scheme: 'amd-sev',
      'cloud-cert': ocaOf(t.platform),
      policy: 1,
      'cpu-count': 1,
      'firmware-hashes': [sha256hex(FIRMWARE)],
      'kernel-hash': sha256hex('k'),
      secrets: [{ type: 'luks-passphrase', passphrase: 'pw' }],
      'max-launches': 2,
    };
    const uuid = randomUUID();
    for (const field of Object.keys(good)) {
      for (const bad of BAD) {
        if (field === 'secrets' && Array.isArray(bad) && bad.length === 0) continue; // no secrets is valid
        const r = await api(base, 'POST', `/vm/${uuid}`, { ...good, [field]: bad }, ADMIN_TOKEN);
        expect([r.status, r.body.error, `${field}=${JSON.stringify(bad)}`]).toEqual([400, 'invalid', `${field}=${JSON.stringify(bad)}`]);
        expect(r.body.message).toMatch(/\(ref [0-9a-f]+\)$/);
      }
    }
    const extra = await api(base, 'POST', `/vm/${uuid}`, { ...good, surprise: 1 }, ADMIN_TOKEN);
    expect(extra).toMatchObject({ status: 400, body: { error: 'invalid' } });
    expect(await api(base, 'POST', `/vm/${uuid}`, '{"scheme": "amd-sev",', ADMIN_TOKEN)).toMatchObject({ status: 400, body: { error: 'invalid' } });
    expect(await api(base, 'POST', '/vm/not-a-uuid', good, ADMIN_TOKEN)).toMatchObject({ status: 400, body: { error: 'invalid' } });
    expect(await store.listVms(null, undefined, 10)).toEqual([]);
  }, 120_000);

  it('/launch and /validate fields: 400, and the launch session survives them', async () => {
    expect((await api(base, 'POST', '/firmware', FIRMWARE, ADMIN_TOKEN)).status).toBe(201);
    const uuid = randomUUID();
    const reg = sevRegistration(t.platform, FIRMWARE);
    expect((await api(base, 'POST', `/vm/${uuid}`, reg, ADMIN_TOKEN)).status).toBe(201);
    for (const field of ['pdh', 'cert-chain', 'cpu-id']) {
      for (const bad of BAD) expect((await api(base, 'POST', `/vm/${uuid}/launch`, { ...launchBody(t.platform), [field]: bad })).status).toBe(400);
    }
    const p = await hostPrepare(base, uuid, t.platform, { firmware: FIRMWARE, policy: 0x1 });
    for (const field of Object.keys(p.validate!)) {
      for (const bad of BAD) expect([(await api(base, 'POST', `/vm/${uuid}/validate`, { ...p.validate, [field]: bad })).status, field]).toEqual([400, field]);
    }
    const v = await api(base, 'POST', `/vm/${uuid}/validate`, p.validate);
    expect(v.status).toBe(200);
  }, 120_000);
});
