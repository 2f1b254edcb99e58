import { generateKeyPairSync, randomBytes, randomUUID } from 'node:crypto';
import { Metadata, status, type Client, type ServiceError } from '@grpc/grpc-js';
import fc from 'fast-check';
import { admin, keybroker } from '@kb/grpc-api';
import { createPlatform, platformChain, type SimulatedPlatform } from '@kb/sev-sim';
import type { Store } from '@kb/store';
import { ADMIN_TOKEN, DRIVERS, policyFor, startTestBroker, testDatabase, type TestBroker } from './support/broker';
import { failure } from './support/grpc';
import { eventually } from './support/wait';
import { expectedDigest, simulatedLaunch } from './support/host';
import {
  ADMIN_METHODS,
  adminCall,
  badBase64,
  badId,
  badSecretRequests,
  CHAIN_DENIED,
  DENIED,
  NIL_GUID,
  nonUuid,
  outOfByte,
  prepareLaunch,
  printable,
  rawClient,
  rawUnary,
  snapshot,
  STATE_WORDS,
  unencodablePolicy,
  validId,
  wireGarbage,
  wrongLengthBase64,
  type AdminMethod,
  type ListMutation,
} from './support/fuzz';

/**
 * Property tests: malformed messages of every field to every RPC. Each answer must be an error of the right class whose
 * message says nothing beyond the expected format, nothing may be written by a refused request (in particular a
 * malformed GetSecret keeps its launch id usable), and the broker keeps serving.
 */

const KEY_GUID = '736869e5-84f0-4973-92ec-06879ce3da0b';
const LIMITED_GUID = '5d8b2d0e-54a4-4f7a-9f9a-1b6c1f0e9e21';
const CONN_GUID = '1ee27366-0c87-43a6-af48-28543eaf7cb0';
const GOOD: keybroker.RequestDetails[] = [
  { Guid: KEY_GUID, Format: 'binary', SecretType: 'key', Id: 'default/key/disk' },
  { Guid: LIMITED_GUID, Format: 'binary', SecretType: 'key', Id: 'default/key/limited' },
  { Guid: CONN_GUID, Format: 'JSON', SecretType: 'connection', Id: '' },
];
const ONLINE_GOOD: keybroker.RequestDetails[] = [
  { Guid: KEY_GUID, Format: 'binary', SecretType: 'key', Id: 'default/key/disk' },
  { Guid: LIMITED_GUID, Format: 'json', SecretType: 'key', Id: 'default/key/limited' },
];
const MAX_SECRETS = 64; // BrokerConfig.maxSecretsPerRequest
const LAUNCH_POLICIES = [0x1, 0x3, 0x5, 0x7];

/** A platform whose (synthetic) root the broker is never told about. */
let rogue: SimulatedPlatform | undefined;
const roguePlatform = () => (rogue ??= createPlatform({ name: 'rogue' }));

/** Details end with "(ref <12 hex>)" and the same ref is in the kb-ref trailer. */
function expectRef(err: ServiceError): string {
  const m = / \(ref ([0-9a-f]{12})\)$/.exec(err.details);
  expect(m).not.toBeNull();
  expect(err.metadata?.get('kb-ref')).toEqual([m![1]]);
  return m![1]!;
}

function expectInvalid(err: ServiceError, pattern: RegExp): void {
  if (err.code !== status.INVALID_ARGUMENT) throw new Error(`expected INVALID_ARGUMENT, got ${status[err.code]}: ${err.details}`);
  expect(err.details).toMatch(pattern);
  expect(err.details).not.toMatch(STATE_WORDS);
  expectRef(err);
}

function expectDenied(err: ServiceError, pattern = DENIED): string {
  if (err.code !== status.PERMISSION_DENIED) throw new Error(`expected PERMISSION_DENIED, got ${status[err.code]}: ${err.details}`);
  expect(err.details).toMatch(pattern);
  return expectRef(err);
}

describe.each(DRIVERS)('malformed and hostile input (%s)', (driver) => {
  let db: Awaited<ReturnType<typeof testDatabase>>;
  let store: Store;
  let t: TestBroker;
  let raw: Client;
  let rawAdmin: Client;
  let clientId: string;
  const tokenMd = () => {
    const md = new Metadata();
    md.set('authorization', `Bearer ${ADMIN_TOKEN}`);
    return md;
  };

  beforeAll(async () => {
    db = await testDatabase(driver);
    store = await db.open();
    t = await startTestBroker(store);
    raw = rawClient(t.broker.address);
    rawAdmin = rawClient(t.broker.adminAddress);
    const digests = LAUNCH_POLICIES.map((p) => expectedDigest(p));
    await t.owner.call('putPolicy', { name: 'default', document_json: policyFor(digests) });
    await t.owner.call('putPolicy', { name: 'limited', document_json: policyFor(digests, { maxReleases: 1_000_000 }) });
    await t.owner.call('putPolicy', { name: 'unused', document_json: policyFor(digests) });
    await t.owner.call('putSecret', { id: 'default/key/disk', value: Buffer.from('disk passphrase'), policy_name: '' });
    await t.owner.call('putSecret', { id: 'default/key/limited', value: Buffer.from('counted secret'), policy_name: 'limited' });
    await t.owner.call('putSecret', { id: 'default/key/spare', value: Buffer.alloc(16, 7), policy_name: '' });
    await t.owner.call('putSecret', { id: 'default/key/big1', value: Buffer.alloc(2000, 1), policy_name: '' });
    await t.owner.call('putSecret', { id: 'default/key/big2', value: Buffer.alloc(2000, 2), policy_name: '' });
    await t.owner.call('putKeyset', { id: 'KEYSET-1', secret_ids: ['default/key/disk', 'default/key/spare'], policy_name: '' });
    await t.owner.call('putResource', { id: 'default/res/cfg', data: Buffer.from('config bytes'), policy_name: '' });
    await t.owner.call('createReportKey', { id: 'report-1', policy_name: '', private_key_pem: '' });
    const { secrets } = await simulatedLaunch(t.host, t.platform, { policy: 0x1, requests: [GOOD[2]!] });
    clientId = (JSON.parse(secrets[0]!.data.toString()) as { client_id: string }).client_id;
  }, 120_000);

  afterAll(async () => {
    raw?.close();
    rawAdmin?.close();
    await t?.close();
    await store?.close();
    await db?.drop();
  });

  /* --------------------------------------------------------------------- GetBundle --------------------------------------------------------------------- */

  type ChainMutation = { kind: 'encoding' | 'structure' | 'untrusted'; value: string };

  /** CertificateChain values that are not base64, too large, not a SEV chain, or a chain the broker does not trust. */
  function chainMutation(): fc.Arbitrary<ChainMutation> {
    const genuine = platformChain(t.platform);
    const b64 = (b: Uint8Array) => Buffer.from(b).toString('base64');
    const enc = (value: string): ChainMutation => ({ kind: 'encoding', value });
    const structure = (b: Uint8Array): ChainMutation => ({ kind: 'structure', value: b64(b) });
    const untrusted = (b: Uint8Array): ChainMutation => ({ kind: 'untrusted', value: b64(b) });
    const rogueChain = platformChain(roguePlatform());
    const SEV_PART = 4 * 2084;
    return fc.oneof(
      badBase64.map(enc),
      fc.integer({ min: 16 * 1024 + 1, max: 20_000 }).map((n) => enc(b64(randomBytes(n)))),
      fc.uint8Array({ minLength: 1, maxLength: 12_000 }).map(structure),
      fc.integer({ min: 1, max: genuine.length - 1 }).map((n) => structure(genuine.subarray(0, n))),
      fc.uint8Array({ minLength: 1, maxLength: 64 }).map((tail) => structure(Buffer.concat([genuine, tail]))),
      fc.constant(untrusted(rogueChain)),
      // the rogue platform's certificates under the trusted ASK/ARK: the CEK signature cannot verify
      fc.constant(untrusted(Buffer.concat([rogueChain.subarray(0, SEV_PART), genuine.subarray(SEV_PART)]))),
      // one byte changed in a signed part: the PDH body and signature, or the pinned ASK/ARK
      fc
        .tuple(fc.oneof(fc.integer({ min: 0, max: 1195 }), fc.integer({ min: SEV_PART, max: genuine.length - 1 })), fc.integer({ min: 1, max: 255 }))
        .map(([at, x]) => {
          const c = Buffer.from(genuine);
          c[at]! ^= x;
          return { kind: 'untrusted' as const, value: b64(c) };
        }),
    );
  }

  it('GetBundle: bad chains and unencodable policies are refused with the right code and a format-only message; no session is created', async () => {
    const genuine = platformChain(t.platform).toString('base64');
    const mutation = fc
      .record({ chain: chainMutation(), policy: unencodablePolicy }, { requiredKeys: [] })
      .filter((m) => m.chain !== undefined || m.policy !== undefined);
    const before = await snapshot(store);
    const seen = new Set<string>();
    await fc.assert(
      fc.asyncProperty(mutation, fc.constantFrom(...LAUNCH_POLICIES), async (m, goodPolicy) => {
        const err = await failure(t.host.getBundle({ CertificateChain: m.chain?.value ?? genuine, Policy: m.policy ?? goodPolicy }));
        if (m.chain?.kind === 'encoding') {
          seen.add('encoding');
          expectInvalid(err, /^CertificateChain (is required|is not valid base64|is too long|must decode to at most 16384 bytes) /);
        } else if (m.policy !== undefined) {
          seen.add('policy');
          expectInvalid(err, /^Policy: guest policy 0x[0-9a-f]+ sets bits outside the flags \(0x3f\)/);
        } else if (m.chain?.kind === 'structure') {
          seen.add('structure');
          expectInvalid(err, /^CertificateChain is not a SEV certificate chain: /);
        } else {
          seen.add(`untrusted:${status[err.code]}`);
          // a changed byte may break the layout (INVALID_ARGUMENT) or a signature / the pinned root (PERMISSION_DENIED)
          if (err.code === status.INVALID_ARGUMENT) expectInvalid(err, /^CertificateChain is not a SEV certificate chain: /);
          else expectDenied(err, CHAIN_DENIED);
        }
      }),
      { numRuns: 120 },
    );
    expect([...seen]).toEqual(expect.arrayContaining(['encoding', 'policy', 'structure', 'untrusted:PERMISSION_DENIED']));
    expect(await snapshot(store)).toEqual(before);
  });

  it('GetBundle: a chain whose certificates are out of order is malformed input (INVALID_ARGUMENT), not an untrusted chain', async () => {
    // Regression test: the broker once got this wrong (found by this suite).
    const genuine = platformChain(t.platform);
    const cert = (i: number) => genuine.subarray(i * 2084, (i + 1) * 2084);
    const ca = genuine.subarray(4 * 2084);
    const half = ca.length / 2; // ASK and ARK are the same size here (RSA-2048 synthetic roots)
    const variants = {
      'PEK‖PDH‖OCA‖CEK‖ASK‖ARK': Buffer.concat([cert(1), cert(0), cert(2), cert(3), ca]),
      'PDH‖PEK‖CEK‖OCA‖ASK‖ARK': Buffer.concat([cert(0), cert(1), cert(3), cert(2), ca]),
      'CEK‖OCA‖PEK‖PDH‖ASK‖ARK': Buffer.concat([cert(3), cert(2), cert(1), cert(0), ca]),
      'PDH‖PEK‖OCA‖CEK‖ARK‖ASK': Buffer.concat([cert(0), cert(1), cert(2), cert(3), ca.subarray(half), ca.subarray(0, half)]),
    };
    const before = await snapshot(store);
    const observed: Record<string, string> = {};
    for (const [name, chain] of Object.entries(variants)) {
      const err = await failure(t.host.getBundle({ CertificateChain: chain.toString('base64'), Policy: 1 }));
      observed[name] = `${status[err.code]}: ${err.details.replace(/ \(ref [0-9a-f]{12}\)$/, '')}`;
    }
    expect(await snapshot(store)).toEqual(before);
    for (const [name, got] of Object.entries(observed)) {
      expect(`${name} → ${got}`).toMatch(/→ INVALID_ARGUMENT: CertificateChain is not a SEV certificate chain: /);
    }
  });

  /* --------------------------------------------------------------------- GetSecret --------------------------------------------------------------------- */

  /** Field checks in the order get-secret.ts makes them: the first malformed field names the error. */
  const SECRET_FIELDS = ['LaunchId', 'LaunchMeasurement', 'FwDigest', 'ApiMajor', 'ApiMinor', 'BuildId', 'SecretRequests', 'LaunchDescription'] as const;
  type SecretField = (typeof SECRET_FIELDS)[number];
  type SecretMutation = Partial<Record<Exclude<SecretField, 'SecretRequests'>, string | number>> & { SecretRequests?: ListMutation };

  const FIELD_MESSAGE: Record<Exclude<SecretField, 'SecretRequests'>, RegExp> = {
    LaunchId: /^LaunchId must be a UUID /,
    LaunchMeasurement: /^LaunchMeasurement (is required|is not valid base64|is too long|must decode to 48 bytes, got \d+) /,
    FwDigest: /^FwDigest (is required|is not valid base64|is too long|must decode to 32 bytes, got \d+) /,
    ApiMajor: /^ApiMajor must be 0\.\.255, got \d+ /,
    ApiMinor: /^ApiMinor must be 0\.\.255, got \d+ /,
    BuildId: /^BuildId must be 0\.\.255, got \d+ /,
    LaunchDescription: /^LaunchDescription is too long /,
  };

  function secretMutation(): fc.Arbitrary<SecretMutation> {
    const fields = {
      LaunchId: nonUuid,
      LaunchMeasurement: fc.oneof(badBase64, wrongLengthBase64(48, 120)),
      FwDigest: fc.oneof(badBase64, wrongLengthBase64(32, 100)),
      ApiMajor: outOfByte,
      ApiMinor: outOfByte,
      BuildId: outOfByte,
      SecretRequests: badSecretRequests(GOOD, { max: MAX_SECRETS }),
      LaunchDescription: fc.tuple(fc.integer({ min: 4097, max: 9000 }), fc.constantFrom('x', ' ', 'é', '\u0000')).map(([n, c]) => c.repeat(n)),
    };
    const single = fc.oneof(...SECRET_FIELDS.map((f) => (fields[f] as fc.Arbitrary<unknown>).map((v) => ({ [f]: v }) as SecretMutation)));
    const several = fc
      .record(fields as { [K in SecretField]: fc.Arbitrary<NonNullable<SecretMutation[K]>> }, { requiredKeys: [] })
      .filter((m) => Object.keys(m).length > 1);
    return fc.oneof({ arbitrary: single, weight: 3 }, { arbitrary: several as fc.Arbitrary<SecretMutation>, weight: 1 });
  }

  function applySecretMutation(req: keybroker.SecretRequest, m: SecretMutation): { req: keybroker.SecretRequest; expect: RegExp } {
    const out = { ...req, ...m, SecretRequests: m.SecretRequests?.list ?? req.SecretRequests } as keybroker.SecretRequest;
    const first = SECRET_FIELDS.find((f) => m[f] !== undefined)!;
    return { req: out, expect: first === 'SecretRequests' ? m.SecretRequests!.expect : FIELD_MESSAGE[first] };
  }

  it('GetSecret: every malformed field is INVALID_ARGUMENT naming only the format, writes nothing and leaves the launch id usable', async () => {
    const launch = await prepareLaunch(t.host, t.platform, { policy: 0x3 });
    const good = launch.request(GOOD);
    const before = await snapshot(store);
    const firstFields = new Set<SecretField>();
    await fc.assert(
      fc.asyncProperty(secretMutation(), async (m) => {
        const { req, expect: pattern } = applySecretMutation(good, m);
        firstFields.add(SECRET_FIELDS.find((f) => m[f] !== undefined)!);
        const err = await failure(t.host.getSecret(req));
        expectInvalid(err, pattern);
        expect(err.details).not.toContain(launch.bundle.LaunchId);
      }),
      { numRuns: 250 },
    );
    expect([...firstFields].sort()).toEqual([...SECRET_FIELDS].sort()); // every field's check was the one that fired
    expect(await snapshot(store)).toEqual(before);

    // the launch id was not consumed: the honest request still succeeds, exactly once
    const secrets = launch.open(await t.host.getSecret(good));
    expect(secrets.find((s) => s.guid === KEY_GUID)!.data.toString()).toBe('disk passphrase');
    expect(secrets.find((s) => s.guid === LIMITED_GUID)!.data.toString()).toBe('counted secret');
    const after = await snapshot(store);
    expect(after.pendingSessions).toBe(before.pendingSessions - 1);
    expect(after.connections).toHaveLength(before.connections.length + 1);
    expect(after.releaseCounts.limited).toBe(before.releaseCounts.limited! + 1);
    expectDenied(await failure(t.host.getSecret(good)));
  });

  type DenialKind = 'unknown launch' | 'measurement' | 'digest' | 'policy' | 'api' | 'unknown secret' | 'digest not allowed' | 'retry after refusal';

  it('GetSecret: well-formed but wrong claims are PERMISSION_DENIED "attestation failed (ref …)" and write nothing', async () => {
    const denial = fc.record({
      kind: fc.constantFrom<DenialKind>(
        'unknown launch',
        'measurement',
        'digest',
        'policy',
        'api',
        'unknown secret',
        'digest not allowed',
        'retry after refusal',
      ),
      policy: fc.constantFrom(...LAUNCH_POLICIES),
      claimedPolicy: fc.integer({ min: 0, max: 0xffff_ffff }),
      bytes48: fc.uint8Array({ minLength: 48, maxLength: 48 }),
      bytes32: fc.uint8Array({ minLength: 32, maxLength: 32 }),
      apiField: fc.constantFrom('ApiMajor', 'ApiMinor', 'BuildId') as fc.Arbitrary<'ApiMajor' | 'ApiMinor' | 'BuildId'>,
      apiValue: fc.integer({ min: 0, max: 255 }),
      missing: fc.record({
        Guid: fc.uuid(),
        SecretType: fc.constantFrom('key', 'resource', 'bundle', 'report'),
        Format: fc.constant('binary'),
        Id: validId.map((s) => `nope/${s}`),
      }),
      // LAUNCH_UPDATE_DATA takes whole 16-byte blocks
      firmware: fc.integer({ min: 1, max: 128 }).chain((n) => fc.uint8Array({ minLength: 16 * n, maxLength: 16 * n })),
      description: printable({ maxLength: 64 }),
    });
    const before = await snapshot(store);
    await fc.assert(
      fc.asyncProperty(denial, async (d) => {
        if (d.kind === 'unknown launch') {
          const launch = await prepareLaunch(t.host, t.platform, { policy: d.policy });
          // a well-formed request for a launch id that was never issued (the real one stays pending until consumed below)
          expectDenied(await failure(t.host.getSecret({ ...launch.request(GOOD), LaunchId: randomUUID() })));
          expectDenied(await failure(t.host.getSecret({ ...launch.request(GOOD), LaunchMeasurement: Buffer.from(d.bytes48).toString('base64') })));
          return;
        }
        const launch = await prepareLaunch(
          t.host,
          t.platform,
          d.kind === 'digest not allowed' ? { policy: d.policy, firmware: Buffer.from(d.firmware) } : { policy: d.policy },
        );
        const good = { ...launch.request(GOOD), LaunchDescription: d.description };
        let req: keybroker.SecretRequest = good;
        switch (d.kind) {
          case 'measurement':
          case 'retry after refusal':
            req = { ...good, LaunchMeasurement: Buffer.from(d.bytes48).toString('base64') };
            break;
          case 'digest':
            req = { ...good, FwDigest: Buffer.from(d.bytes32).toString('base64') };
            break;
          case 'policy':
            req = { ...good, Policy: d.claimedPolicy === d.policy ? d.policy ^ 0x2 : d.claimedPolicy };
            break;
          case 'api':
            req = { ...good, [d.apiField]: d.apiValue === good[d.apiField] ? (d.apiValue + 1) & 0xff : d.apiValue };
            break;
          case 'unknown secret':
            req = { ...good, SecretRequests: [...GOOD, d.missing] };
            break;
          case 'digest not allowed':
            break; // honest measurement of a firmware no policy allows
        }
        const err = await failure(t.host.getSecret(req));
        expectDenied(err);
        expect(err.details).not.toContain(launch.bundle.LaunchId);
        // one attempt per GetBundle: even the honest request is now refused, with the same message
        if (d.kind === 'retry after refusal') expectDenied(await failure(t.host.getSecret(good)));
      }),
      { numRuns: 60 },
    );
    expect(await snapshot(store)).toEqual(before);
  });

  it('GetSecret: the nil GUID is refused as malformed (INVALID_ARGUMENT) before the launch id is consumed', async () => {
    // Regression test: the broker once got this wrong (found by this suite).
    const launch = await prepareLaunch(t.host, t.platform, { policy: 0x1 });
    const before = await snapshot(store);
    const err = await failure(t.host.getSecret(launch.request([{ Guid: NIL_GUID, Format: 'binary', SecretType: 'key', Id: 'default/key/disk' }])));
    const mid = await snapshot(store);
    let honestAfterwards = 'succeeded';
    try {
      launch.open(await t.host.getSecret(launch.request(GOOD)));
    } catch (e) {
      honestAfterwards = `${status[(e as ServiceError).code]}`;
    }
    expect({
      code: status[err.code],
      details: err.details.replace(/ \(ref [0-9a-f]{12}\)$/, ''),
      launchIdConsumed: mid.pendingSessions !== before.pendingSessions,
      honestRequestAfterwards: honestAfterwards,
    }).toEqual({
      code: 'INVALID_ARGUMENT',
      details: expect.stringMatching(/^SecretRequests\[0\]\.Guid /),
      launchIdConsumed: false,
      honestRequestAfterwards: 'succeeded',
    });
  });

  it('GetSecret: a request refused because its secrets overflow the 4 KiB secret page writes nothing', async () => {
    // Regression test: the broker once got this wrong (found by this suite).
    const before = await snapshot(store);
    const requests = [
      ...GOOD,
      { Guid: randomUUID(), Format: 'binary', SecretType: 'key', Id: 'default/key/big1' },
      { Guid: randomUUID(), Format: 'binary', SecretType: 'key', Id: 'default/key/big2' },
    ];
    const err = await failure(simulatedLaunch(t.host, t.platform, { policy: 0x1, requests }));
    expectDenied(err);
    const after = await snapshot(store);
    expect({
      newConnections: after.connections.length - before.connections.length,
      releasesSpent: after.releaseCounts.limited! - before.releaseCounts.limited!,
      pendingSessions: after.pendingSessions - before.pendingSessions,
    }).toEqual({ newConnections: 0, releasesSpent: 0, pendingSessions: 0 });
  });

  it('GetSecret: every refusal and release is in the audit trail, whatever LaunchDescription the host sends', async () => {
    // Regression test: the broker once got this wrong (found by this suite).
    const poll = async (find: () => Promise<boolean>) => {
      for (let i = 0; i < 40; i++) {
        if (await find()) return true;
        await new Promise((r) => setTimeout(r, 25));
      }
      return false;
    };
    const missing: string[] = [];
    for (const description of ['plain description', 'emoji 😀 and \u2028 line separator', 'nul \u0000 inside']) {
      const refused = await prepareLaunch(t.host, t.platform, { policy: 0x1 });
      const err = await failure(t.host.getSecret({ ...refused.request(GOOD), LaunchDescription: description, FwDigest: randomBytes(32).toString('base64') }));
      const ref = expectDenied(err);
      if (!(await poll(async () => (await store.listAudit({ refId: ref })).some((e) => e.outcome === 'refused'))))
        missing.push(`refused: ${JSON.stringify(description)}`);

      const released = await prepareLaunch(t.host, t.platform, { policy: 0x1 });
      released.open(await t.host.getSecret({ ...released.request([GOOD[0]!]), LaunchDescription: description }));
      const launchId = released.bundle.LaunchId;
      if (!(await poll(async () => (await store.listAudit({ launchId })).some((e) => e.outcome === 'released'))))
        missing.push(`released: ${JSON.stringify(description)}`);
    }
    expect(missing).toEqual([]);
  });

  /* ------------------------------------------------------------------ GetOnlineSecret ------------------------------------------------------------------ */

  it('GetOnlineSecret: malformed fields are INVALID_ARGUMENT, unknown clients and secrets PERMISSION_DENIED; nothing is written', async () => {
    const request = fc.oneof(
      nonUuid.map((ClientId) => ({ req: { ClientId, SecretRequests: ONLINE_GOOD }, code: status.INVALID_ARGUMENT, expect: /^ClientId must be a UUID / })),
      fc.tuple(nonUuid, badSecretRequests(ONLINE_GOOD, { max: MAX_SECRETS, online: true })).map(([ClientId, m]) => ({
        req: { ClientId, SecretRequests: m.list },
        code: status.INVALID_ARGUMENT,
        expect: /^ClientId must be a UUID /,
      })),
      badSecretRequests(ONLINE_GOOD, { max: MAX_SECRETS, online: true }).map((m) => ({
        req: { ClientId: clientId, SecretRequests: m.list },
        code: status.INVALID_ARGUMENT,
        expect: m.expect,
      })),
      fc.tuple(fc.uuid(), fc.boolean()).map(([id, upper]) => ({
        req: { ClientId: upper ? id.toUpperCase() : id, SecretRequests: ONLINE_GOOD },
        code: status.PERMISSION_DENIED,
        expect: DENIED,
      })),
      fc
        .record({
          Guid: fc.uuid(),
          SecretType: fc.constantFrom('key', 'resource', 'bundle', 'report'),
          Format: fc.constant('binary'),
          Id: validId.map((s) => `nope/${s}`),
        })
        .map((missing) => ({ req: { ClientId: clientId, SecretRequests: [...ONLINE_GOOD, missing] }, code: status.PERMISSION_DENIED, expect: DENIED })),
    );
    const before = await snapshot(store);
    await fc.assert(
      fc.asyncProperty(request, async ({ req, code, expect: pattern }) => {
        const err = await failure(t.host.getOnlineSecret(req));
        if (code === status.INVALID_ARGUMENT) expectInvalid(err, pattern);
        else expectDenied(err, pattern);
      }),
      { numRuns: 200 },
    );
    expect(await snapshot(store)).toEqual(before);
    const ok = await t.host.getOnlineSecret({ ClientId: clientId, SecretRequests: ONLINE_GOOD });
    expect(Buffer.from(ok.IV, 'base64')).toHaveLength(12);
  });

  /* -------------------------------------------------------------------- wire level -------------------------------------------------------------------- */

  it('wire level: random and mis-framed protobuf bytes to every keybroker RPC are INVALID_ARGUMENT with a reference, never a crash', async () => {
    const paths = Object.values(keybroker.KeyBrokerServiceService).map((d) => d.path);
    const before = await snapshot(store);
    const refs: { ref: string; outcome: string }[] = [];
    const undecodable = { count: 0 };
    await fc.assert(
      fc.asyncProperty(fc.constantFrom(...paths), wireGarbage, async (path, bytes) => {
        const r = await rawUnary(raw, path, bytes);
        if (r.code === status.PERMISSION_DENIED) {
          // garbage that happens to decode to a well-formed request (a UUID client id, no secrets asked for, which
          // is valid since an empty list is): an unknown connection, refused with the generic message
          expect(r.details).toMatch(/^attestation failed \(ref [0-9a-f]{12}\)$/);
        } else {
          expect(`${status[r.code]}: ${r.details}`).toMatch(/^INVALID_ARGUMENT: .* \(ref [0-9a-f]{12}\)$/);
          expect(r.details).not.toMatch(STATE_WORDS);
          if (r.details.startsWith('the request is not a valid protobuf message')) undecodable.count++;
        }
        refs.push({ ref: r.details.slice(-13, -1), outcome: status[r.code] });
      }),
      { numRuns: 400 },
    );
    // the generator does produce bytes no decoder accepts (so the answer above is the decoder's refusal, not a field check)
    expect(undecodable.count).toBeGreaterThan(0);
    // every reference handed out is in the audit trail (the class, the call, the peer)
    const missing: string[] = [];
    for (const { ref, outcome } of refs.slice(0, 40)) {
      const found = await eventually(async () => (await store.listAudit({ refId: ref })).find((e) => e.event === 'call' && e.outcome === outcome));
      if (!found) missing.push(ref);
    }
    expect(missing).toEqual([]);

    // above the 64 KiB receive limit, an unknown method, an empty message
    expect(status[(await rawUnary(raw, paths[0]!, randomBytes(70 * 1024))).code]).toBe('RESOURCE_EXHAUSTED');
    expect(status[(await rawUnary(raw, '/keybroker.KeyBrokerService/GetEverything', randomBytes(10))).code]).toBe('UNIMPLEMENTED');
    for (const p of paths) expect(status[(await rawUnary(raw, p, Buffer.alloc(0))).code]).toBe('INVALID_ARGUMENT');

    // the owner's read-only calls with an authenticated but undecodable or arbitrary body: never a handler crash
    const readOnly = ADMIN_METHODS.filter((m) => /^(get|list)/.test(m)).map((m) => admin.BrokerAdminService[m].path as string);
    await fc.assert(
      fc.asyncProperty(fc.constantFrom(...readOnly), wireGarbage, async (path, bytes) => {
        const r = await rawUnary(rawAdmin, path, bytes, tokenMd());
        expect(r.details).not.toMatch(/^internal error/);
      }),
      { numRuns: 150 },
    );
    expect(await snapshot(store)).toEqual(before);
    const { secrets } = await simulatedLaunch(t.host, t.platform, { policy: 0x5, requests: [GOOD[0]!] });
    expect(secrets[0]!.data.toString()).toBe('disk passphrase');
  });

  it('wire level: invalid UTF-8 in a string field is INVALID_ARGUMENT (proto3), valid UTF-8 of any character is decoded', async () => {
    const field1 = (bytes: number[]) => Buffer.from([0x0a, bytes.length, ...bytes]);
    const getBundle = keybroker.KeyBrokerServiceService.getBundle.path;
    const getSecret = keybroker.KeyBrokerServiceService.getSecret.path;
    const answers: Record<string, string> = {};
    const ask = async (name: string, path: string, bytes: Buffer) => {
      const r = await rawUnary(raw, path, bytes);
      answers[name] = `${status[r.code]}: ${r.details.replace(/ \(ref [0-9a-f]{12}\)$/, '')}`;
    };
    await ask('lone continuation byte', getBundle, field1([0x41, 0x80, 0x42]));
    await ask('0xff', getBundle, field1([0xff]));
    await ask('overlong encoding of /', getBundle, field1([0xc0, 0xaf]));
    await ask('UTF-16 surrogate as UTF-8', getBundle, field1([0xed, 0xa0, 0x80]));
    await ask('truncated sequence', getBundle, field1([0xe2, 0x82]));
    // a launch's GetSecret with an invalid LaunchDescription (field 8): refused before anything is looked at
    const launch = await prepareLaunch(t.host, t.platform, { policy: 0x1 });
    const before = await snapshot(store);
    const good = keybroker.SecretRequest.encode(launch.request(GOOD)).finish();
    await ask('nested in GetSecret', getSecret, Buffer.concat([Buffer.from(good), Buffer.from([0x42, 0x02, 0xc3, 0x28])]));
    expect(await snapshot(store)).toEqual(before);
    // U+FFFD itself, well encoded, is text: the field check (base64) answers, not the decoder
    await ask('U+FFFD well encoded', getBundle, field1([0xef, 0xbf, 0xbd]));
    const utf8 = 'INVALID_ARGUMENT: the request is not a valid protobuf message: a string field is not valid UTF-8';
    expect(answers).toEqual({
      'lone continuation byte': utf8,
      '0xff': utf8,
      'overlong encoding of /': utf8,
      'UTF-16 surrogate as UTF-8': utf8,
      'truncated sequence': utf8,
      'nested in GetSecret': utf8,
      'U+FFFD well encoded': 'INVALID_ARGUMENT: CertificateChain is not valid base64',
    });
    // the launch id was not consumed by the refused request
    launch.open(await t.host.getSecret(launch.request(GOOD)));
    // and the admin API refuses it too (an owner's tool sending bad bytes)
    const r = await rawUnary(rawAdmin, admin.BrokerAdminService.getPolicy.path, field1([0x64, 0xff]), tokenMd());
    expect(`${status[r.code]}: ${r.details}`).toBe(utf8);
  });

  /* ---------------------------------------------------------------------- admin ---------------------------------------------------------------------- */

  /** A request per admin method that would change or reveal something if the token check were skipped. */
  const ADMIN_SAMPLES = (): Record<AdminMethod, unknown> => ({
    putPolicy: { name: 'default', document_json: JSON.stringify({ version: 1, allowedDigests: 'any', allowDebug: true }) },
    getPolicy: { name: 'default' },
    listPolicies: { prefix: '', page_size: 0, page_token: '' },
    deletePolicy: { name: 'unused' },
    putSecret: { id: 'default/key/disk', value: Buffer.from('overwritten'), policy_name: '' },
    getSecretInfo: { name: 'default/key/disk' },
    listSecrets: { prefix: '', page_size: 0, page_token: '' },
    deleteSecret: { name: 'default/key/spare' },
    putKeyset: { id: 'KEYSET-1', secret_ids: ['default/key/disk'], policy_name: '' },
    getKeyset: { name: 'KEYSET-1' },
    listKeysets: { prefix: '', page_size: 0, page_token: '' },
    deleteKeyset: { name: 'KEYSET-1' },
    putResource: { id: 'default/res/cfg', data: Buffer.from('overwritten'), policy_name: '' },
    getResourceInfo: { name: 'default/res/cfg' },
    listResources: { prefix: '', page_size: 0, page_token: '' },
    deleteResource: { name: 'default/res/cfg' },
    createReportKey: { id: 'fuzz/unauthenticated-report-key', policy_name: '', private_key_pem: '' },
    getReportKey: { name: 'report-1' },
    listReportKeys: { prefix: '', page_size: 0, page_token: '' },
    deleteReportKey: { name: 'report-1' },
    listConnections: { prefix: '', page_size: 0, page_token: '' },
    revokeConnection: { client_id: clientId },
    listAudit: { since: '', launch_id: '', ref_id: '', limit: 10, page_token: '' },
    importSnpCertificates: { files: [{ name: 'vcek.der', data: Buffer.from([0x30, 0x00]) }] },
    listSnpCertificates: { prefix: '', page_size: 0, page_token: '' },
    putKbsResource: { path: 'default/key/kbs', data: Buffer.from('overwritten'), policy_name: '' },
    getKbsResourceInfo: { name: 'default/key/kbs' },
    listKbsResources: { prefix: '', page_size: 0, page_token: '' },
    deleteKbsResource: { name: 'default/key/kbs' },
    createOwner: { name: 'fuzz-unauthenticated-owner' },
    listOwners: { prefix: '', page_size: 0, page_token: '' },
    deleteOwner: { name: 'alice' },
  });

  type Auth = { header: string; value: string } | null;
  const badAuth: fc.Arbitrary<Auth> = fc.oneof(
    fc.constant(null),
    fc.constant({ header: 'authorization', value: '' }),
    printable({ maxLength: 80 })
      .filter((s) => s.trim() !== ADMIN_TOKEN)
      .map((s) => ({ header: 'authorization', value: `Bearer ${s}` })),
    fc
      .constantFrom(ADMIN_TOKEN, `Bearer${ADMIN_TOKEN}`, `Basic ${ADMIN_TOKEN}`, `Token ${ADMIN_TOKEN}`, `Bearer "${ADMIN_TOKEN}"`)
      .map((value) => ({ header: 'authorization', value })),
    fc.integer({ min: 0, max: ADMIN_TOKEN.length - 1 }).map((n) => ({ header: 'authorization', value: `Bearer ${ADMIN_TOKEN.slice(0, n)}` })),
    printable({ minLength: 1, maxLength: 8 })
      .filter((s) => s.trim() !== '')
      .map((s) => ({ header: 'authorization', value: `Bearer ${ADMIN_TOKEN}${s.trim()}` })),
    fc.tuple(fc.nat(ADMIN_TOKEN.length - 1), fc.integer({ min: 0x21, max: 0x7e })).map(([i, c]) => {
      const ch = String.fromCharCode(c) === ADMIN_TOKEN[i] ? '~' : String.fromCharCode(c);
      return { header: 'authorization', value: `Bearer ${ADMIN_TOKEN.slice(0, i)}${ch}${ADMIN_TOKEN.slice(i + 1)}` };
    }),
    fc.constantFrom('x-authorization', 'token', 'admin-token', 'proxy-authorization').map((header) => ({ header, value: `Bearer ${ADMIN_TOKEN}` })),
  );

  it('admin: every method refuses a missing or wrong bearer token with UNAUTHENTICATED and changes nothing', async () => {
    const samples = ADMIN_SAMPLES();
    expect(Object.keys(samples).sort()).toEqual([...ADMIN_METHODS].sort());
    const before = await snapshot(store);
    for (const m of ADMIN_METHODS) {
      const r = await adminCall(rawAdmin, m, samples[m]);
      expect(`${m}: ${status[r.code]}`).toBe(`${m}: UNAUTHENTICATED`);
    }
    await fc.assert(
      fc.asyncProperty(fc.constantFrom(...ADMIN_METHODS), badAuth, async (m, auth) => {
        const md = new Metadata();
        if (auth) md.set(auth.header, auth.value);
        const r = await adminCall(rawAdmin, m, samples[m], md);
        expect(`${m}: ${status[r.code]}`).toBe(`${m}: UNAUTHENTICATED`);
        expect(r.details).toBe('a valid admin bearer token is required');
      }),
      { numRuns: 200 },
    );
    expect(await snapshot(store)).toEqual(before);
    // the samples do work with the token (so the refusals above were the token check)
    expect(status[(await adminCall(rawAdmin, 'getPolicy', samples.getPolicy, tokenMd())).code]).toBe('OK');
  });

  function badPolicyDocument(): fc.Arbitrary<string> {
    const digest = expectedDigest(1).toString('hex');
    const valid = { version: 1, allowedDigests: [digest] };
    const FIELDS = [
      'version',
      'allowedDigests',
      'allowedPolicies',
      'requiredPolicyBits',
      'forbiddenPolicyBits',
      'allowDebug',
      'minFwApiMajor',
      'minFwApiMinor',
      'allowedBuildIds',
      'allowedChips',
      'maxReleases',
      'notBefore',
      'notAfter',
      'simpleKbsCompat',
    ];
    const isInt = (v: unknown, max: number) => typeof v === 'number' && Number.isInteger(v) && v >= 0 && v <= max;
    /** values of the right JSON type are filtered out; explicit wrong values of the right type are listed below */
    const acceptableType: Record<string, (v: unknown) => boolean> = {
      version: (v) => v === 1,
      allowedDigests: (v) => v === 'any' || Array.isArray(v),
      allowedPolicies: (v) => v === 'any' || Array.isArray(v),
      allowedBuildIds: (v) => v === 'any' || Array.isArray(v),
      allowedChips: (v) => v === 'any' || Array.isArray(v),
      requiredPolicyBits: Array.isArray,
      forbiddenPolicyBits: Array.isArray,
      allowDebug: (v) => typeof v === 'boolean',
      simpleKbsCompat: (v) => typeof v === 'boolean',
      minFwApiMajor: (v) => isInt(v, 255),
      minFwApiMinor: (v) => isInt(v, 255),
      maxReleases: (v) => isInt(v, Number.MAX_SAFE_INTEGER),
      notBefore: (v) => typeof v === 'string',
      notAfter: (v) => typeof v === 'string',
    };
    const wrongValues: [string, unknown][] = [
      ['version', '1'],
      ['version', 2],
      ['version', 0],
      ['allowedDigests', 'all'],
      ['allowedDigests', ['xyz']],
      ['allowedDigests', [digest.slice(2)]],
      ['allowedDigests', [digest + '00']],
      ['allowedDigests', [123]],
      ['allowedDigests', [null]],
      ['allowedPolicies', [0x40]],
      ['allowedPolicies', [-1]],
      ['allowedPolicies', [1.5]],
      ['allowedPolicies', ['1']],
      ['allowedBuildIds', [256]],
      ['allowedBuildIds', [-1]],
      ['allowedChips', ['']],
      ['allowedChips', ['a b']],
      ['allowedChips', [5]],
      ['requiredPolicyBits', ['FOO']],
      ['requiredPolicyBits', ['nodbg']],
      ['requiredPolicyBits', [0]],
      ['requiredPolicyBits', [0x40]],
      ['forbiddenPolicyBits', [true]],
      ['maxReleases', 2 ** 60],
      ['notBefore', 'yesterday'],
      ['notAfter', '2024-13-01T00:00:00Z'],
    ];
    return fc.oneof(
      // not JSON at all
      fc.string({ maxLength: 40 }).filter((s) => {
        try {
          JSON.parse(s);
          return false;
        } catch {
          return true;
        }
      }),
      fc.constantFrom(
        '',
        '{',
        `{"version":1,"allowedDigests":["${digest}"],}`,
        "{'version':1}",
        'NaN',
        'undefined',
        '{"version":1}{"allowedDigests":"any"}',
        `{"version":1,"allowedDigests":["${digest}"]`,
      ),
      // JSON, but not an object
      fc
        .oneof(fc.integer(), fc.boolean(), fc.constant(null), fc.string({ maxLength: 20 }), fc.array(fc.jsonValue({ maxDepth: 1 }), { maxLength: 3 }))
        .map((v) => JSON.stringify(v)),
      fc.constant(JSON.stringify([valid])),
      // unknown fields
      fc
        .tuple(
          fc.oneof(fc.string({ maxLength: 20 }), fc.constantFrom('__proto__', 'constructor', 'Version', 'allowed_digests', 'allowDebug ', 'maxReleases2')),
          fc.jsonValue({ maxDepth: 1 }),
        )
        .filter(([k]) => !FIELDS.includes(k))
        .map(([k, v]) => JSON.stringify({ ...valid, [k]: v === undefined ? null : v })),
      // required fields missing
      fc.constantFrom(JSON.stringify({ allowedDigests: [digest] }), JSON.stringify({ version: 1 }), '{}'),
      // empty lists
      fc
        .constantFrom('allowedDigests', 'allowedPolicies', 'allowedBuildIds', 'allowedChips', 'requiredPolicyBits', 'forbiddenPolicyBits')
        .map((k) => JSON.stringify({ ...valid, [k]: [] })),
      // wrong types
      fc.constantFrom(...Object.keys(acceptableType)).chain((k) =>
        fc
          .jsonValue({ maxDepth: 2 })
          .filter((v) => v !== undefined && !acceptableType[k]!(JSON.parse(JSON.stringify(v))))
          .map((v) => JSON.stringify({ ...valid, [k]: v })),
      ),
      // right types, values out of range or contradictory
      fc.constantFrom(...wrongValues).map(([k, v]) => JSON.stringify({ ...valid, [k]: v })),
      fc.constant(JSON.stringify({ ...valid, requiredPolicyBits: ['ES'], forbiddenPolicyBits: ['ES'] })),
      fc.constant(JSON.stringify({ ...valid, minFwApiMinor: 5 })),
    );
  }

  it('admin: malformed policy documents and names are INVALID_ARGUMENT and nothing is stored', async () => {
    const validDoc = policyFor([expectedDigest(1)]);
    const attempt = fc.oneof(
      { arbitrary: fc.tuple(fc.constantFrom('default', 'limited', 'fuzz-new-policy'), badPolicyDocument()), weight: 5 },
      { arbitrary: fc.tuple(badId, fc.constant(validDoc)), weight: 1 },
    );
    const before = await snapshot(store);
    await fc.assert(
      fc.asyncProperty(attempt, async ([name, document_json]) => {
        const err = await failure(t.owner.call('putPolicy', { name, document_json }));
        expect(`${status[err.code]}: ${err.details}`).toMatch(/^INVALID_ARGUMENT: /);
      }),
      { numRuns: 250 },
    );
    expect(await snapshot(store)).toEqual(before);
    expect(status[(await failure(t.owner.call('getPolicy', { name: 'fuzz-new-policy' }))).code]).toBe('NOT_FOUND');
  });

  it('admin: secret and resource values that are empty or over 4096 bytes, or bad ids, are INVALID_ARGUMENT and nothing is stored', async () => {
    const attempt = fc.oneof(
      fc.record({
        kind: fc.constantFrom('secret', 'resource'),
        id: fc.constantFrom('default/key/disk', 'default/res/cfg', 'fuzz/new-item'),
        value: fc.oneof(
          fc.constant(new Uint8Array(0)),
          fc.integer({ min: 4097, max: 9000 }).map((n) => new Uint8Array(randomBytes(n))),
        ),
      }),
      fc.record({ kind: fc.constantFrom('secret', 'resource'), id: badId, value: fc.uint8Array({ minLength: 1, maxLength: 64 }) }),
    );
    const before = await snapshot(store);
    await fc.assert(
      fc.asyncProperty(attempt, async ({ kind, id, value }) => {
        const err =
          kind === 'secret'
            ? await failure(t.owner.call('putSecret', { id, value: Buffer.from(value), policy_name: '' }))
            : await failure(t.owner.call('putResource', { id, data: Buffer.from(value), policy_name: '' }));
        expect(`${status[err.code]}: ${err.details}`).toMatch(/^INVALID_ARGUMENT: /);
      }),
      { numRuns: 100 },
    );
    expect(await snapshot(store)).toEqual(before);
    // exactly 4096 bytes is the limit, not above it
    await t.owner.call('putSecret', { id: 'fuzz/max-size', value: Buffer.alloc(4096, 9), policy_name: '' });
    await t.owner.call('deleteSecret', { name: 'fuzz/max-size' });
  });

  it('admin: keysets naming unknown secrets or policies are FAILED_PRECONDITION, empty, repeating or malformed ones INVALID_ARGUMENT; nothing is stored', async () => {
    const known = ['default/key/disk', 'default/key/limited', 'default/key/spare', 'default/key/big1'];
    const attempt = fc.oneof(
      {
        arbitrary: fc
          .tuple(
            fc.constantFrom('KEYSET-1', 'fuzz-keyset'),
            fc.subarray(known),
            fc.uniqueArray(
              validId.map((s) => `nope/${s}`),
              { minLength: 1, maxLength: 3 },
            ),
            fc.nat(),
          )
          .map(([id, k, unknown, at]) => ({
            req: { id, secret_ids: [...k.slice(0, at % (k.length + 1)), ...unknown, ...k.slice(at % (k.length + 1))], policy_name: '' },
            code: 'FAILED_PRECONDITION',
          })),
        weight: 4,
      },
      {
        arbitrary: fc
          .constantFrom('KEYSET-1', 'fuzz-keyset')
          .map((id) => ({ req: { id, secret_ids: [] as string[], policy_name: '' }, code: 'INVALID_ARGUMENT' })),
        weight: 1,
      },
      {
        arbitrary: fc
          .tuple(fc.subarray(known), badId)
          .map(([k, bad]) => ({ req: { id: 'fuzz-keyset', secret_ids: [...k, bad], policy_name: '' }, code: 'INVALID_ARGUMENT' })),
        weight: 1,
      },
      { arbitrary: badId.map((id) => ({ req: { id, secret_ids: known, policy_name: '' }, code: 'INVALID_ARGUMENT' })), weight: 1 },
      {
        arbitrary: fc
          .tuple(fc.subarray(known, { minLength: 1 }), fc.nat())
          .map(([k, i]) => ({ req: { id: 'fuzz-keyset', secret_ids: [...k, k[i % k.length]!], policy_name: '' }, code: 'INVALID_ARGUMENT' })),
        weight: 1,
      },
      { arbitrary: validId.map((p) => ({ req: { id: 'fuzz-keyset', secret_ids: known, policy_name: `nope/${p}` }, code: 'FAILED_PRECONDITION' })), weight: 1 },
    );
    const before = await snapshot(store);
    await fc.assert(
      fc.asyncProperty(attempt, async ({ req, code }) => {
        const err = await failure(t.owner.call('putKeyset', req));
        expect(`${status[err.code]}: ${err.details}`).toMatch(new RegExp(`^${code}: `));
      }),
      { numRuns: 80 },
    );
    expect(await snapshot(store)).toEqual(before);
  });

  it('admin: importing a report key that is not an ECDSA P-256 private key is INVALID_ARGUMENT and nothing is stored', async () => {
    const pem = (k: ReturnType<typeof generateKeyPairSync>['privateKey'], type: 'pkcs8' | 'sec1' | 'pkcs1' = 'pkcs8') =>
      k.export({ format: 'pem', type } as never).toString();
    const ec = (namedCurve: string) => generateKeyPairSync('ec', { namedCurve });
    const p256 = ec('P-256');
    const keys = [
      pem(ec('P-384').privateKey),
      pem(ec('P-384').privateKey, 'sec1'),
      pem(ec('P-521').privateKey),
      pem(ec('secp256k1').privateKey),
      pem(generateKeyPairSync('rsa', { modulusLength: 1024 }).privateKey),
      pem(generateKeyPairSync('rsa', { modulusLength: 1024 }).privateKey, 'pkcs1'),
      pem(generateKeyPairSync('ed25519').privateKey),
      pem(generateKeyPairSync('x25519').privateKey),
      p256.publicKey.export({ format: 'pem', type: 'spki' }).toString(),
      pem(p256.privateKey).slice(0, 120),
      pem(p256.privateKey).replace(/[A-Za-z](?=[^-]*-----END)/, '*'),
    ];
    // report keys are create-only (an existing id is ALREADY_EXISTS before the key is looked at), so only new ids here
    const attempt = fc.tuple(
      fc.constantFrom('fuzz-report', 'fuzz/report-2'),
      fc.oneof({ arbitrary: fc.constantFrom(...keys), weight: 3 }, { arbitrary: fc.string({ minLength: 1, maxLength: 200 }), weight: 1 }),
    );
    const before = await snapshot(store);
    await fc.assert(
      fc.asyncProperty(attempt, async ([id, private_key_pem]) => {
        const err = await failure(t.owner.call('createReportKey', { id, policy_name: '', private_key_pem }));
        expect(`${status[err.code]}: ${err.details}`).toMatch(/^INVALID_ARGUMENT: /);
      }),
      { numRuns: 60 },
    );
    expect(await snapshot(store)).toEqual(before);
    // a P-256 key is accepted (the refusals above were about the key type)
    await t.owner.call('createReportKey', { id: 'fuzz-p256', policy_name: '', private_key_pem: pem(p256.privateKey) });
    await t.owner.call('deleteReportKey', { name: 'fuzz-p256' });
  });

  /* --------------------------------------------------------------------- afterwards --------------------------------------------------------------------- */

  it('after all of the above the broker still serves full launches and online requests', async () => {
    for (const policy of LAUNCH_POLICIES) {
      const { secrets } = await simulatedLaunch(t.host, t.platform, {
        policy,
        requests: [
          { Guid: KEY_GUID, Format: 'binary', SecretType: 'key', Id: 'default/key/disk' },
          { Guid: randomUUID(), Format: 'JSON', SecretType: 'bundle', Id: 'KEYSET-1' },
          { Guid: randomUUID(), Format: 'binary', SecretType: 'resource', Id: 'default/res/cfg' },
          { Guid: randomUUID(), Format: 'json', SecretType: 'report', Id: 'report-1' },
        ],
      });
      expect(secrets).toHaveLength(4);
      expect(secrets.find((s) => s.guid === KEY_GUID)!.data.toString()).toBe('disk passphrase');
    }
    const ok = await t.host.getOnlineSecret({ ClientId: clientId, SecretRequests: ONLINE_GOOD });
    expect(ok.Payload.length).toBeGreaterThan(0);
  });
});
