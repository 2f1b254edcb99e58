/**
 * End to end over real HTTP on loopback (issue #17): the simulated SEV-SNP guest, launched on the simulated SP with
 * its synthetic ARK → ASK → VCEK chain, runs the real KBS client (auth → attest with its signed report bound to the
 * nonce and its TEE key → GET resource, the JWE decrypted by the client) against a broker that trusts the synthetic
 * roots only because it is told to (`kbs.snpRoots`). Owners set everything up through the admin API (what
 * `kbctl policy put`, `kbctl kbs-resource put` and `kbctl snp import-certs` call). Refusals: the guest sees the class
 * and a reference (kbs-protocol.md §7), the reason is in the audit trail.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { IgvmPlatformType, measureIgvm, type IgvmFile } from '@kb/sev';
import { SimulatedSnpGuest, type KbsProtocolError } from '@kb/sev-host-sim';
import { createPlatform, loadSnpCa, SimulatedSnpAttestation, SimulatedSnpChip, SimulatedSnpFirmware, syntheticSnpRoots } from '@kb/sev-sim';
import { openStore, PGLITE_MEMORY, type Store } from '@kb/store';
import { startBroker, type RunningBroker } from '../../src/broker';
import { silentLogger } from '../../src/log';
import { ADMIN_TOKEN, DRIVERS, MASTER_KEY, testConfig, testDatabase } from '../support/broker';
import { OwnerClient } from '../support/grpc';

const FIXTURES = join(__dirname, '../../../../libs/sev-sim/fixtures');
const DEBUG = 1n << 19n;
const SECRET = randomBytes(300);

/** A small SNP guest image: firmware pages, the secrets page (VMPCKs), one BSP VMSA; `variant` changes one page. */
function image(policy: bigint, variant: number): IgvmFile {
  const page = (gpa: number, fill: number) => ({
    kind: 'page_data' as const,
    gpa: BigInt(gpa),
    compatibilityMask: 1,
    flags: 0,
    dataType: 0,
    data: Buffer.alloc(4096, fill),
  });
  const vmsa = Buffer.alloc(4096);
  vmsa.write('e2e vmsa', 0);
  return {
    formatVersion: 1,
    platforms: [{ compatibilityMask: 1, highestVtl: 0, platformType: IgvmPlatformType.SEV_SNP, platformVersion: 1, sharedGpaBoundary: 0n }],
    initializations: [{ kind: 'guest_policy', policy, compatibilityMask: 1 }],
    directives: [
      page(0xffff_d000, 0x91),
      page(0xffff_e000, 0x92),
      page(0xffff_f000, variant),
      { kind: 'page_data', gpa: 0x80_0000n, compatibilityMask: 1, flags: 0, dataType: 1 },
      { kind: 'vp_context', form: 'snp', gpa: 0xffff_ffff_f000n, compatibilityMask: 1, vpIndex: 0, reserved: 0, data: vmsa },
    ],
  };
}

const GOOD = image(0x30000n, 0x93);

describe.each(DRIVERS)('a simulated SNP guest against the broker over HTTP (%s)', (driver) => {
  let db: Awaited<ReturnType<typeof testDatabase>>;
  let store: Store;
  let broker: RunningBroker;
  let owner: OwnerClient;
  let sp: SimulatedSnpAttestation;
  let chip: SimulatedSnpChip;
  let url: string;
  const guests: SimulatedSnpGuest[] = [];
  const launch = (file: IgvmFile, certTable: 'vcek' | 'chain' | 'none' = 'vcek') => {
    const g = SimulatedSnpGuest.launch({ sp, image: { igvm: file }, certTable });
    guests.push(g);
    return g;
  };

  /** The reason of a refusal, by the reference the guest was given. */
  async function reasonOf(e: unknown): Promise<string> {
    const ref = /\(ref ([0-9a-f]+)\)/.exec((e as Error).message)?.[1];
    expect(ref).toBeDefined();
    for (let i = 0; i < 100; i++) {
      const call = (await store.listAudit({ refId: ref! })).find((x) => x.event === 'call');
      if (call) return JSON.stringify(call.detail);
      await new Promise((r) => setTimeout(r, 20));
    }
    throw new Error(`no audit entry for ref ${ref}`);
  }
  async function refusal(p: Promise<unknown>): Promise<KbsProtocolError> {
    try {
      await p;
    } catch (e) {
      return e as KbsProtocolError;
    }
    throw new Error('expected a refusal');
  }

  beforeAll(async () => {
    const ca = await loadSnpCa({ name: 'sev-sim-snp', generation: 'genoa', dir: FIXTURES });
    chip = new SimulatedSnpChip(ca);
    sp = new SimulatedSnpAttestation(new SimulatedSnpFirmware(createPlatform({ name: 'sev-sim-snp' })), chip);
    db = await testDatabase(driver);
    store = await db.open();
    broker = await startBroker(testConfig(), { store, logger: silentLogger, kbs: { snpRoots: syntheticSnpRoots(ca) } });
    url = `http://${broker.httpAddress!}`;
    owner = new OwnerClient(broker.adminAddress, ADMIN_TOKEN);
    const m = measureIgvm(GOOD).digest.toString('hex');
    await owner.call('putPolicy', { name: 'default', document_json: JSON.stringify({ version: 1, snp: { allowedMeasurements: [m] } }) });
    await owner.call('putKbsResource', { path: 'default/key/disk', data: SECRET, policy_name: '' });
  }, 120_000);
  afterAll(async () => {
    for (const g of guests) g.shutdown();
    owner?.close();
    await broker?.close();
    await store?.close();
    await db?.drop();
  });

  it('the owner’s guest gets exactly the published bytes: 401 → auth → attest (signed report) → GET → JWE decrypted', async () => {
    const exchanges: { method: string; path: string; status: number }[] = [];
    const client = launch(GOOD).kbsClient(url, { onExchange: (e) => exchanges.push({ method: e.method, path: e.path, status: e.status }) });
    const got = await client.getResource('default/key/disk');
    expect(got.equals(SECRET)).toBe(true);
    expect(exchanges.map((e) => `${e.method} ${e.path} ${e.status}`)).toEqual([
      'GET /kbs/v0/resource/default/key/disk 401',
      'POST /kbs/v0/auth 200',
      'POST /kbs/v0/attest 200',
      'GET /kbs/v0/resource/default/key/disk 200',
    ]);
    const claims = client.token!.claims as { submods: { cpu0: Record<string, { tee?: string }> } };
    expect(JSON.stringify(claims.submods.cpu0)).toContain(measureIgvm(GOOD).digest.toString('hex'));
    // the Bearer path (the CDH) with the same token
    expect((await client.getResourceWithToken('default/key/disk')).equals(SECRET)).toBe(true);
  });

  it('a guest with another measurement attests but is refused by snp.allowedMeasurements: 403, a reference, the reason audited', async () => {
    const e = await refusal(launch(image(0x30000n, 0x66)).kbsClient(url).getResource('default/key/disk'));
    expect(e.status).toBe(403);
    expect(e.message).toContain('PolicyDeny');
    expect(e.message).not.toMatch(/allowedMeasurements|measurement/);
    expect(await reasonOf(e)).toContain('snp.allowedMeasurements');
  });

  it('a debuggable guest with the owner’s pages is refused by the SNP debug rule', async () => {
    const dbg = image(0x30000n | DEBUG, 0x93);
    expect(measureIgvm(dbg).digest.equals(measureIgvm(GOOD).digest)).toBe(true); // the policy is not measured
    const e = await refusal(launch(dbg).kbsClient(url).getResource('default/key/disk'));
    expect(e.status).toBe(403);
    expect(await reasonOf(e)).toContain('snp.allowDebug');
  });

  it('evidence without a VCEK is refused until the operator imports the chip’s VCEK into the offline store', async () => {
    const guest = launch(GOOD, 'none');
    const before = await refusal(guest.kbsClient(url).attest());
    expect(before.status).toBe(401);
    expect(await reasonOf(before)).toMatch(/VCEK|vcek/);
    const r = await owner.call<{ imported: { kind: string }[] }>('importSnpCertificates', { files: [{ name: 'vcek.der', data: chip.vcek().der }] });
    expect(r.imported.map((x) => x.kind)).toEqual(['vcek']);
    expect((await guest.kbsClient(url).getResource('default/key/disk')).equals(SECRET)).toBe(true);
  });

  it('an attestation bound to another session’s nonce is refused (401) and the session stays unattested', async () => {
    const client = launch(GOOD).kbsClient(url);
    const post = async (path: string, body: string, cookie?: string) => {
      const res = await fetch(`${url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json', ...(cookie ? { cookie } : {}) }, body });
      return { status: res.status, cookie: res.headers.getSetCookie()[0]?.split(';')[0], body: await res.text() };
    };
    const a = await post('/kbs/v0/auth', client.requestBody());
    const replayed = await client.attestationBody(JSON.parse(a.body));
    expect((await post('/kbs/v0/attest', replayed, a.cookie)).status).toBe(200);
    const b = await post('/kbs/v0/auth', client.requestBody());
    expect(JSON.parse(b.body).nonce).not.toBe(JSON.parse(a.body).nonce);
    const r = await post('/kbs/v0/attest', replayed, b.cookie);
    expect(r.status).toBe(401);
    expect(JSON.parse(r.body).type).toMatch(/AttestationError$/);
    const e = new Error(JSON.parse(r.body).detail);
    expect(await reasonOf(e)).toMatch(/nonce|REPORT_DATA/);
    const get = await fetch(`${url}/kbs/v0/resource/default/key/disk`, { headers: { cookie: b.cookie! } });
    expect(get.status).toBe(401);
  });
});

describe('--snp-trust-root FILE (the operator option for labs and simulators)', () => {
  const pem = (der: Uint8Array) =>
    `-----BEGIN CERTIFICATE-----\n${Buffer.from(der).toString('base64').replace(/.{64}/g, '$&\n').replace(/\n?$/, '\n')}-----END CERTIFICATE-----\n`;
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'kb-snp-root-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('a broker given the synthetic ARK+ASK as PEM serves the simulated guest; without it the same guest is refused', async () => {
    const ca = await loadSnpCa({ name: 'sev-sim-snp', generation: 'genoa', dir: FIXTURES });
    const sp = new SimulatedSnpAttestation(new SimulatedSnpFirmware(createPlatform({ name: 'sev-sim-snp' })), new SimulatedSnpChip(ca));
    const file = join(dir, 'sim-genoa.pem');
    writeFileSync(file, pem(ca.ask.der) + pem(ca.ark.der));
    const warnings: string[] = [];
    const logger = { ...silentLogger, warn: (m: string) => warnings.push(m) };
    const m = measureIgvm(GOOD).digest.toString('hex');
    for (const trusted of [true, false]) {
      const store = await openStore({ driver: 'pglite', dataDir: PGLITE_MEMORY, masterKey: MASTER_KEY });
      const broker = await startBroker(testConfig(trusted ? { snpTrustRoots: [file] } : {}), { store, logger });
      const guest = SimulatedSnpGuest.launch({ sp, image: { igvm: GOOD } });
      try {
        await store.putPolicy('default', { version: 1, snp: { allowedMeasurements: [m] } });
        await store.putKbsResource({ id: 'default/key/disk', bytes: SECRET });
        const client = guest.kbsClient(`http://${broker.httpAddress!}`);
        if (trusted) expect((await client.getResource('default/key/disk')).equals(SECRET)).toBe(true);
        else
          expect(
            await client.attest().then(
              () => 0,
              (e: KbsProtocolError) => e.status,
            ),
          ).toBe(401);
      } finally {
        guest.shutdown();
        await broker.close();
        await store.close();
      }
    }
    expect(warnings.filter((w) => w.includes('NON-AMD SNP ROOT'))).toHaveLength(1);
  });

  it('a file without an ARK and an ASK stops the start-up with a clear error', async () => {
    const ca = await loadSnpCa({ name: 'sev-sim-snp', generation: 'genoa', dir: FIXTURES });
    const file = join(dir, 'ark-only.pem');
    writeFileSync(file, pem(ca.ark.der));
    await expect(startBroker(testConfig({ snpTrustRoots: [file] }), { logger: silentLogger })).rejects.toThrow(
      /--snp-trust-root .*ark-only.pem must hold the ARK and ASK.*found ARK/,
    );
  });
});
