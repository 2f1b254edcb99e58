import { randomBytes } from 'node:crypto';
import { Client, credentials, Metadata, status } from '@grpc/grpc-js';
import fc from 'fast-check';
import { admin, type keybroker } from '@kb/grpc-api';
import { PolicyFlag } from '@kb/sev';
import { platformChain, SimulatedSecureProcessor, type SimulatedPlatform } from '@kb/sev-sim';
import type { Store } from '@kb/store';
import type { HostClient } from './grpc';
import { expectedDigest, FIRMWARE, VMSA } from './host';

/** Helpers for the malformed-input suite: raw calls, store snapshots and generators of malformed field values. */

export const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
export const NIL_GUID = '00000000-0000-0000-0000-000000000000';
/** What a host may learn about a refusal: the class and a reference, nothing else. */
export const DENIED = /^attestation failed \(ref [0-9a-f]{12}\)$/;
export const CHAIN_DENIED = /^certificate chain not trusted \(ref [0-9a-f]{12}\)$/;
/** Words that would tell a host which check failed or what the broker holds (launch state, policies, secrets). */
export const STATE_WORDS = /exist|expired|already used|revoked|mismatch|does not verify|maxReleases|tenant|allowed|refus|secret '|keyset '|policy '/i;

export interface RawResult {
  code: status;
  details: string;
  metadata?: Metadata;
}

/** One unary call with the request bytes sent as they are (no serialisation). */
export function rawUnary(client: Client, path: string, bytes: Buffer, md: Metadata = new Metadata()): Promise<RawResult> {
  return new Promise((resolve) => {
    client.makeUnaryRequest(
      path,
      (b: Buffer) => b,
      (b: Buffer) => b,
      bytes,
      md,
      { deadline: Date.now() + 20_000 },
      (err) => resolve(err ? { code: err.code, details: err.details, metadata: err.metadata } : { code: status.OK, details: '' }),
    );
  });
}

export function rawClient(address: string): Client {
  return new Client(address, credentials.createInsecure());
}

export type AdminMethod = keyof typeof admin.BrokerAdminService;
export const ADMIN_METHODS = Object.keys(admin.BrokerAdminService) as AdminMethod[];

/** An admin call with the caller's own metadata (or none), through the generated (de)serialisers. */
export function adminCall(client: Client, method: AdminMethod, req: unknown, md: Metadata = new Metadata()): Promise<RawResult & { response?: unknown }> {
  const def = admin.BrokerAdminService[method] as unknown as {
    path: string;
    requestSerialize: (v: unknown) => Buffer;
    responseDeserialize: (b: Buffer) => unknown;
  };
  return new Promise((resolve) => {
    client.makeUnaryRequest(def.path, def.requestSerialize, def.responseDeserialize, req, md, { deadline: Date.now() + 20_000 }, (err, res) =>
      resolve(err ? { code: err.code, details: err.details } : { code: status.OK, details: '', response: res }),
    );
  });
}

/** Everything a refused request must leave as it was. */
export async function snapshot(store: Store, now = new Date()) {
  const policyNames = (await store.listPolicyNames()).sort();
  const all = <T>(ids: string[], get: (id: string) => Promise<T>) => Promise.all([...ids].sort().map(get));
  return {
    pendingSessions: await store.countPendingSessions(now),
    connections: await store.listConnections(),
    releaseCounts: Object.fromEntries(await Promise.all(policyNames.map(async (n) => [n, await store.getReleaseCount(`policy:${n}`)] as const))),
    policies: await all(policyNames, (n) => store.getPolicy(n)),
    secrets: await all(await store.listSecretIds(), (id) => store.getSecret(id)),
    keysets: await all(await store.listKeysetIds(), (id) => store.getKeyset(id)),
    resources: await all(await store.listResourceIds(), (id) => store.getResource(id)),
    reportKeys: await all(await store.listReportKeyIds(), (id) => store.getReportKey(id)),
  };
}

export interface PreparedLaunch {
  bundle: keybroker.BundleResponse;
  /** The honest GetSecret for this launch (the measurement the simulated firmware took). */
  request(requests: keybroker.RequestDetails[]): keybroker.SecretRequest;
  /** LAUNCH_SECRET + finish: the secrets the guest reads. */
  open(res: keybroker.SecretResponse): { guid: string; data: Buffer }[];
}

/** GetBundle, LAUNCH_START and the measurement — everything of a launch up to (not including) GetSecret. */
export async function prepareLaunch(
  host: HostClient,
  platform: SimulatedPlatform,
  o: { policy?: number; firmware?: Uint8Array } = {},
): Promise<PreparedLaunch> {
  const policy = o.policy ?? PolicyFlag.NODBG;
  const firmware: typeof FIRMWARE = o.firmware ? Buffer.from(o.firmware) : FIRMWARE;
  const sp = new SimulatedSecureProcessor(platform);
  const bundle = await host.getBundle({ CertificateChain: platformChain(platform).toString('base64'), Policy: policy });
  const handle = sp.launchStart({
    policy,
    godhCert: Buffer.from(bundle.GuestOwnerPublicKey, 'base64'),
    launchBlob: Buffer.from(bundle.LaunchBlob, 'base64'),
  });
  sp.launchUpdateData(handle, firmware);
  if (policy & PolicyFlag.ES) sp.launchUpdateVmsa(handle, VMSA);
  const measurement = sp.launchMeasure(handle);
  const fw = platform.firmware;
  return {
    bundle,
    request: (requests) => ({
      LaunchMeasurement: measurement.toString('base64'),
      LaunchId: bundle.LaunchId,
      Policy: policy,
      ApiMajor: fw.apiMajor,
      ApiMinor: fw.apiMinor,
      BuildId: fw.build,
      FwDigest: expectedDigest(policy, firmware).toString('base64'),
      LaunchDescription: 'malformed-input suite',
      SecretRequests: requests,
    }),
    open(res) {
      sp.launchSecret(handle, Buffer.from(res.LaunchSecretHeader, 'base64'), Buffer.from(res.LaunchSecretData, 'base64'));
      sp.launchFinish(handle);
      return sp.guestSecrets(handle);
    },
  };
}

/* ------------------------------------------------------------------ generators ------------------------------------------------------------------ */

const printableChar = fc.integer({ min: 0x20, max: 0x7e }).map((c) => String.fromCharCode(c));
/** Printable ASCII (what a header value may hold). */
export const printable = (o: { minLength?: number; maxLength?: number } = {}) => fc.string({ unit: printableChar, ...o });
/** A syntactically valid id (1–256 printable ASCII characters without spaces). */
export const validId = fc.string({ unit: fc.integer({ min: 0x21, max: 0x7e }).map((c) => String.fromCharCode(c)), minLength: 1, maxLength: 40 });

function insertAt(s: string, c: string, i: number): string {
  const at = 1 + (i % Math.max(1, s.length - 1));
  return s.slice(0, at) + c + s.slice(at);
}

/** Anything but a UUID in the 8-4-4-4-12 hex form (the UUID check is case-insensitive, so case changes stay valid). */
export const nonUuid: fc.Arbitrary<string> = fc
  .oneof(
    fc.string({ maxLength: 60 }),
    fc.string({ unit: 'binary', maxLength: 40 }),
    fc.constant(''),
    fc.uuid().map((u) => u.replace(/-/g, '')),
    fc.uuid().map((u) => `{${u}}`),
    fc.uuid().map((u) => `urn:uuid:${u}`),
    fc.tuple(fc.uuid(), fc.nat(35), fc.constantFrom('g', 'z', 'G', ' ', '_', 'x', '\u0000', 'é')).map(([u, i, c]) => u.slice(0, i) + c + u.slice(i + 1)),
    fc.tuple(fc.uuid(), fc.integer({ min: 1, max: 35 })).map(([u, n]) => u.slice(0, n)),
    fc.tuple(fc.uuid(), fc.constantFrom(' ', '\n', '0', 'a', '-')).map(([u, c]) => u + c),
    fc.tuple(fc.constantFrom(' ', '\t', '0'), fc.uuid()).map(([c, u]) => c + u),
  )
  .filter((s) => !UUID_RE.test(s));

const B64_CHARS = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';
const b64Char = fc.constantFrom(...B64_CHARS.split(''));

/** Not base64 (or empty): illegal characters, misplaced padding, lengths that are not a multiple of 4. */
export const badBase64: fc.Arbitrary<string> = fc.oneof(
  fc.constant(''),
  // an illegal character strictly inside, where trimming cannot remove it
  fc
    .tuple(fc.uint8Array({ minLength: 3, maxLength: 60 }), fc.constantFrom('-', '_', '!', '*', '.', ' ', '\t', '\n', 'é', '\u0000', '%', ':', '\\'), fc.nat())
    .map(([b, c, i]) => insertAt(Buffer.from(b).toString('base64'), c, i)),
  // 1–3 characters too many for whole quadruples
  fc
    .tuple(
      fc.integer({ min: 1, max: 20 }).chain((n) => fc.uint8Array({ minLength: 3 * n, maxLength: 3 * n })),
      fc.array(b64Char, { minLength: 1, maxLength: 3 }),
    )
    .map(([b, extra]) => Buffer.from(b).toString('base64') + extra.join('')),
  // padding in the middle or too much of it
  fc
    .tuple(
      fc.integer({ min: 1, max: 20 }).chain((n) => fc.uint8Array({ minLength: 3 * n, maxLength: 3 * n })),
      fc.constantFrom('=', '==', '===', '===='),
      fc.nat(),
    )
    .map(([b, pad, i]) => {
      const s = Buffer.from(b).toString('base64');
      return pad.length >= 3 ? s.slice(0, s.length - 4) + 'A' + pad.slice(0, 3) : insertAt(s, pad, i);
    })
    .filter((s) => !/^[A-Za-z0-9+/]*={0,2}$/.test(s) || s.length % 4 !== 0),
  // URL-safe alphabet
  fc
    .uint8Array({ minLength: 30, maxLength: 60 })
    .map((b) => Buffer.from(b).toString('base64url'))
    .filter((s) => /[-_]/.test(s)),
);

/** Valid base64 that decodes to any length but `exact` (and not zero: empty is covered by badBase64). */
export const wrongLengthBase64 = (exact: number, max = 3 * exact) =>
  fc
    .integer({ min: 1, max })
    .filter((n) => n !== exact)
    .chain((n) => fc.uint8Array({ minLength: n, maxLength: n }))
    .map((b) => Buffer.from(b).toString('base64'));

/** A SEV-reported byte (API major/minor, build id) that does not fit a byte but does fit the u32 wire field. */
export const outOfByte = fc.oneof(fc.integer({ min: 256, max: 0xffff_ffff }), fc.integer({ min: 256, max: 300 }), fc.constant(0xffff_ffff));

/** SEV guest policies with a bit outside the six flags the sev crate can encode. */
export const unencodablePolicy = fc.oneof(
  fc.integer({ min: 0x40, max: 0xffff_ffff }),
  fc.tuple(fc.integer({ min: 6, max: 31 }), fc.integer({ min: 0, max: 0x3f })).map(([bit, flags]) => ((1 << bit) | flags) >>> 0),
);

const SECRET_TYPES = ['key', 'bundle', 'report', 'connection', 'resource'];
const validType = fc.constantFrom('key', 'resource', 'bundle', 'report', 'KEY', 'Resource');
const validItem: fc.Arbitrary<keybroker.RequestDetails> = fc.record({
  Guid: fc.uuid(),
  SecretType: validType,
  Format: fc.constantFrom('binary', 'json', 'JSON', 'Binary'),
  Id: validId,
});

export const unknownSecretType = fc
  .oneof(
    fc.string({ maxLength: 20 }),
    fc.string({ unit: 'binary', maxLength: 12 }),
    fc.constantFrom('', 'keys', 'Key ', ' key', 'secret', 'KEYSET', 'conn', 'reports', 'resources'),
  )
  .filter((s) => !SECRET_TYPES.includes(s.toLowerCase()));
export const unknownFormat = fc
  .oneof(fc.string({ maxLength: 20 }), fc.constantFrom('', 'bin', 'JSON ', ' binary', 'base64', 'text', 'jsn', 'raw'))
  .filter((s) => !['binary', 'json'].includes(s.toLowerCase()));
export const badId = fc.oneof(
  fc.constant(''),
  fc.integer({ min: 257, max: 400 }).map((n) => 'k'.repeat(n)),
  fc.tuple(validId, fc.constantFrom(' ', '\t', '\n', '\u007f', '\u0000', 'é', '\u2028', '😀'), fc.nat()).map(([s, c, i]) => insertAt(s + 'x', c, i)),
);

export interface ListMutation {
  list: keybroker.RequestDetails[];
  /** what the INVALID_ARGUMENT message must say (it names the offending entry's field) */
  expect: RegExp;
  kind: string;
}

/**
 * SecretRequests lists that fail validation: too long, or `base` with one bad entry inserted (an empty list is valid:
 * simple-kbs answers it with an empty secret table). Generated GUIDs
 * are never the nil GUID (see the dedicated test: it passes validation).
 */
export function badSecretRequests(base: keybroker.RequestDetails[], o: { max: number; online?: boolean }): fc.Arbitrary<ListMutation> {
  const at = fc.nat(base.length);
  const insert = (item: keybroker.RequestDetails, i: number) => [...base.slice(0, i), item, ...base.slice(i)];
  const variants: fc.Arbitrary<ListMutation>[] = [
    fc.uniqueArray(fc.uuid(), { minLength: o.max + 1, maxLength: o.max + 10, selector: (u) => u.toLowerCase() }).map((guids) => ({
      kind: 'too many',
      list: guids.map((Guid) => ({ Guid, SecretType: 'key', Format: 'binary', Id: 'default/key/disk' })),
      expect: new RegExp(`^SecretRequests may name at most ${o.max} secrets `),
    })),
    fc
      .tuple(validItem, nonUuid, at)
      .map(([item, Guid, i]) => ({ kind: 'guid', list: insert({ ...item, Guid }, i), expect: /^SecretRequests\[\d+\]\.Guid must be a GUID / })),
    fc.tuple(validItem, fc.nat(), fc.boolean()).map(([item, j, upper]) => {
      const src = base[j % base.length]!;
      return {
        kind: 'duplicate guid',
        list: [...base, { ...item, Guid: upper ? src.Guid.toUpperCase() : src.Guid }],
        expect: /^SecretRequests\[\d+\]\.Guid repeats an earlier entry /,
      };
    }),
    fc.tuple(validItem, unknownSecretType, at).map(([item, SecretType, i]) => ({
      kind: 'type',
      list: insert({ ...item, SecretType }, i),
      expect: /^SecretRequests\[\d+\]\.SecretType must be one of /,
    })),
    fc.tuple(validItem, fc.constantFrom('key', 'resource', 'Key', 'RESOURCE'), unknownFormat, at).map(([item, SecretType, Format, i]) => ({
      kind: 'format',
      list: insert({ ...item, SecretType, Format }, i),
      expect: /^SecretRequests\[\d+\]\.Format must be binary or json /,
    })),
    fc
      .tuple(validItem, badId, at)
      .map(([item, Id, i]) => ({ kind: 'id', list: insert({ ...item, Id }, i), expect: /^SecretRequests\[\d+\]\.Id must be 1–256 printable characters / })),
  ];
  if (o.online) {
    variants.push(
      fc.tuple(fc.uuid(), fc.constantFrom('connection', 'Connection', 'CONNECTION'), at).map(([Guid, SecretType, i]) => ({
        kind: 'connection online',
        list: insert({ Guid, SecretType, Format: 'json', Id: '' }, i),
        expect: /^SecretRequests\[\d+\]\.SecretType 'connection' is not served by this call /,
      })),
    );
  }
  return fc.oneof(...variants);
}

/* ------------------------------------------------------------- protobuf wire garbage ------------------------------------------------------------- */

function varint(v: bigint): Buffer {
  const out: number[] = [];
  let x = v;
  do {
    let b = Number(x & 0x7fn);
    x >>= 7n;
    if (x > 0n) b |= 0x80;
    out.push(b);
  } while (x > 0n);
  return Buffer.from(out);
}

interface WireField {
  no: number;
  wire: 0 | 1 | 2 | 3 | 4 | 5 | 6 | 7;
  value: bigint;
  bytes: Uint8Array;
}

function encodeFields(fields: WireField[]): Buffer {
  return Buffer.concat(
    fields.map((f) => {
      const tag = varint(BigInt(f.no) * 8n + BigInt(f.wire));
      switch (f.wire) {
        case 0:
          return Buffer.concat([tag, varint(f.value)]);
        case 1:
          return Buffer.concat([tag, Buffer.from(f.bytes.subarray(0, 8)), Buffer.alloc(Math.max(0, 8 - f.bytes.length))]);
        case 5:
          return Buffer.concat([tag, Buffer.from(f.bytes.subarray(0, 4)), Buffer.alloc(Math.max(0, 4 - f.bytes.length))]);
        case 2:
          return Buffer.concat([tag, varint(BigInt(f.bytes.length)), Buffer.from(f.bytes)]);
        default:
          // groups (3, 4) and the invalid wire types 6 and 7, with whatever follows
          return Buffer.concat([tag, Buffer.from(f.bytes)]);
      }
    }),
  );
}

const wireField = (payload: fc.Arbitrary<Uint8Array>): fc.Arbitrary<WireField> =>
  fc.record({
    no: fc.oneof(fc.integer({ min: 1, max: 10 }), fc.integer({ min: 1, max: 536_870_911 })),
    wire: fc.oneof(
      { arbitrary: fc.constantFrom(0 as const, 2 as const), weight: 4 },
      { arbitrary: fc.constantFrom(1, 3, 4, 5, 6, 7) as fc.Arbitrary<WireField['wire']>, weight: 1 },
    ),
    value: fc.bigInt({ min: 0n, max: (1n << 70n) - 1n }),
    bytes: payload,
  });

const stringish = fc.oneof(
  fc.uint8Array({ maxLength: 80 }),
  fc.string({ unit: 'binary', maxLength: 40 }).map((s) => new Uint8Array(Buffer.from(s))),
  fc.uuid().map((s) => new Uint8Array(Buffer.from(s))),
  fc.uint8Array({ maxLength: 60 }).map((b) => new Uint8Array(Buffer.from(Buffer.from(b).toString('base64')))),
);

/** Request bytes: pure noise, or protobuf-framed fields (known and unknown numbers, every wire type, nested messages). */
export const wireGarbage: fc.Arbitrary<Buffer> = fc.oneof(
  fc.uint8Array({ maxLength: 3000 }).map((b) => Buffer.from(b)),
  fc.array(wireField(stringish), { maxLength: 12 }).map(encodeFields),
  fc.array(wireField(fc.array(wireField(stringish), { maxLength: 6 }).map((f) => new Uint8Array(encodeFields(f)))), { maxLength: 6 }).map(encodeFields),
  // a valid message with its tail cut off or noise appended
  fc
    .tuple(fc.array(wireField(stringish), { minLength: 1, maxLength: 8 }).map(encodeFields), fc.nat(), fc.uint8Array({ maxLength: 16 }))
    .map(([b, cut, tail]) => Buffer.concat([b.subarray(0, cut % (b.length + 1)), Buffer.from(tail)])),
);

export function randomPrintableId(prefix: string): string {
  return `${prefix}-${randomBytes(6).toString('hex')}`;
}
