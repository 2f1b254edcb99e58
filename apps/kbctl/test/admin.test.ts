import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { createHash, createPublicKey, createVerify, generateKeyPairSync, randomBytes, randomUUID } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import type { ServiceError } from '@grpc/grpc-js';
import { createPlatform, encodeRootFile } from '@kb/sev-sim';
import { runCli } from '../src/cli';
import { tree } from '../src/main';
// the broker suite's simulated SEV host: GetBundle, LAUNCH_*, GetSecret as the kata shim does them
import { expectedDigest, HostClient, simulatedLaunch } from './support/launch';

/**
 * kbctl end to end: a real broker process (tsx apps/broker/src/main.ts, embedded PGlite in a temp data dir, one per
 * file) and kbctl's runCli in-process, its output captured through the Io object. A simulated SEV host launches a
 * guest in between, so what the owner stored through kbctl is checked byte for byte where the guest receives it.
 */

const ROOT = resolve(__dirname, '../../..');
const KEY_GUID = '736869e5-84f0-4973-92ec-06879ce3da0b';
const JSON_GUID = '11111111-2222-4333-8444-555555555555';
const FILE_GUID = '22222222-3333-4444-8555-666666666666';
const B64_GUID = '33333333-4444-4555-8666-777777777777';
const STDIN_GUID = '44444444-5555-4666-8777-888888888888';
const BUNDLE_GUID = 'e6f5a162-d67f-4750-a67c-5d065f2a9910';
const RES_GUID = '0a46e24d-478c-4eb1-8696-113eeec3aa99';
const REPORT_GUID = '2cf13667-ea72-4013-9dd6-155e89c5a28f';
const CONN_GUID = '1ee27366-0c87-43a6-af48-28543eaf7cb0';
const SEV_POLICY = 0x1; // NODBG

// Every secret value used below: none may ever appear in anything kbctl prints (checked at the end).
const VALUE_TEXT = 'correct horse battery staple 9f1c';
const FILE_BYTES = randomBytes(32);
const B64_BYTES = randomBytes(48);
const STDIN_BYTES = randomBytes(24);
const RESOURCE_BYTES = Buffer.from(`resource config ${randomBytes(8).toString('hex')}`);
const KBS_VALUE = `kbs value ${randomBytes(8).toString('hex')}`;
const IMPORTED_KEY = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const IMPORTED_PEM = IMPORTED_KEY.privateKey.export({ format: 'pem', type: 'pkcs8' }).toString();
const SECRET_FORMS = [
  VALUE_TEXT,
  Buffer.from(VALUE_TEXT).toString('base64'),
  ...[FILE_BYTES, B64_BYTES, STDIN_BYTES].flatMap((b) => [b.toString('base64'), b.toString('hex'), b.toString('latin1')]),
  RESOURCE_BYTES.toString(),
  KBS_VALUE,
  IMPORTED_PEM.split('\n')[1]!, // a line of the private key's base64
];

let work: string;
let dataDir: string;
let broker: ChildProcessWithoutNullStreams;
let brokerExit: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
const brokerLog: string[] = [];
let adminUrl: string;
let keybrokerUrl: string;
let tokenFile: string;
const transcript: string[] = [];

/** kbctl ARGV, connected to the test broker unless `conn` is false. */
async function kb(args: string[], opts: { conn?: boolean; stdin?: Buffer; env?: NodeJS.ProcessEnv } = {}) {
  const out: string[] = [];
  const err: string[] = [];
  const argv = opts.conn === false ? args : [...args, '--admin-url', adminUrl, '--token-file', tokenFile];
  const code = await runCli('kbctl', 'kbctl — test', tree, argv, {
    out: (s) => out.push(s),
    err: (s) => err.push(s),
    env: opts.env ?? {},
    cwd: work,
    stdin: () => {
      if (!opts.stdin) throw new Error('no stdin given to this test command');
      return opts.stdin;
    },
  });
  transcript.push(...out, ...err);
  return { code, out: out.join('\n'), err: err.join('\n') };
}

/** kbctl ARGV expected to succeed: its stdout. */
async function ok(args: string[], opts?: Parameters<typeof kb>[1]): Promise<string> {
  const r = await kb(args, opts);
  if (r.code !== 0 || r.err) throw new Error(`kbctl ${args.join(' ')} failed (${r.code}): ${r.err}`);
  return r.out;
}

const file = (name: string, content: string | Buffer) => {
  writeFileSync(join(work, name), content);
  return name; // relative: kbctl resolves it against io.cwd
};
const lines = (s: string) => s.split('\n').filter(Boolean);

function startBroker(args: string[]): Promise<void> {
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('KB_')));
  broker = spawn(join(ROOT, 'node_modules/.bin/tsx'), ['apps/broker/src/main.ts', ...args], { cwd: ROOT, env, stdio: ['pipe', 'pipe', 'pipe'] });
  brokerExit = new Promise((done) => broker.once('exit', (code, signal) => done({ code, signal })));
  broker.stdout.resume();
  return new Promise((ready, fail) => {
    const timer = setTimeout(() => fail(new Error(`the broker did not start within 90 s:\n${brokerLog.join('\n')}`)), 90_000);
    void brokerExit.then(({ code, signal }) => {
      clearTimeout(timer);
      fail(new Error(`the broker exited (${code ?? signal}) before listening:\n${brokerLog.join('\n')}`));
    });
    createInterface({ input: broker.stderr }).on('line', (line) => {
      brokerLog.push(line);
      let entry: { msg?: string; admin?: string; keybroker?: string };
      try {
        entry = JSON.parse(line);
      } catch {
        return;
      }
      if (entry.msg === 'broker listening') {
        clearTimeout(timer);
        adminUrl = entry.admin!;
        keybrokerUrl = entry.keybroker!;
        ready();
      }
    });
  });
}

const platform = createPlatform({ name: 'sev-sim' });
let host: HostClient;

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), 'kbctl-e2e-'));
  dataDir = join(work, 'data');
  tokenFile = join(dataDir, 'admin.token');
  writeFileSync(join(work, 'sim-root.bin'), encodeRootFile(platform));
  await startBroker([
    '--data-dir',
    dataDir,
    '--listen',
    '127.0.0.1:0',
    '--admin-listen',
    '127.0.0.1:0',
    '--http-listen',
    '127.0.0.1:0',
    '--trust-root',
    `sim=${join(work, 'sim-root.bin')}`,
  ]);
  host = new HostClient(keybrokerUrl);
}, 120_000);

afterAll(async () => {
  host?.close();
  try {
    if (broker && broker.exitCode === null && broker.signalCode === null) {
      broker.kill('SIGTERM');
      const killer = setTimeout(() => broker.kill('SIGKILL'), 20_000);
      const { code, signal } = await brokerExit;
      clearTimeout(killer);
      // a clean shutdown: the signal handler ran, the servers and the database closed, exit code 0
      expect({ code, signal }).toEqual({ code: 0, signal: null });
      expect(brokerLog.some((l) => l.includes('"shutting down"') && l.includes('SIGTERM'))).toBe(true);
      expect(brokerLog.filter((l) => l.includes('"level":"error"'))).toEqual([]);
    }
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}, 30_000);

describe('kbctl against a real broker', () => {
  it('found the admin address and token the broker wrote', () => {
    expect(adminUrl).toMatch(/^127\.0\.0\.1:\d+$/);
    expect(readFileSync(tokenFile, 'utf8').trim().length).toBeGreaterThanOrEqual(16);
  });

  describe('policy', () => {
    const digest = expectedDigest(SEV_POLICY).toString('hex');

    it('put from a file and from stdin, get, list (with --prefix)', async () => {
      const doc = { version: 1, allowedDigests: [digest] };
      expect(await ok(['policy', 'put', 'default', file('default.json', JSON.stringify(doc))])).toMatch(
        /^policy default stored \(updated \d{4}-\d\d-\d\dT[\d:.]+Z\)$/,
      );
      expect(await ok(['policy', 'put', 'strict', '-'], { stdin: Buffer.from(JSON.stringify({ ...doc, requiredPolicyBits: ['NODBG'] })) })).toMatch(
        /^policy strict stored/,
      );
      expect(await ok(['policy', 'put', 'guard', file('guard.json', '{"version":1,"allowedDigests":"any"}')])).toMatch(/^policy guard stored/);

      expect(JSON.parse(await ok(['policy', 'get', 'default']))).toEqual(doc);
      expect(JSON.parse(await ok(['policy', 'get', 'strict']))).toEqual({ ...doc, requiredPolicyBits: ['NODBG'] });

      const all = lines(await ok(['policy', 'list'])).map((l) => l.split('\t'));
      expect(all.map(([name]) => name)).toEqual(['default', 'guard', 'strict']);
      for (const [, updated] of all) expect(new Date(updated!).getTime()).not.toBeNaN();
      expect(lines(await ok(['policy', 'list', '--prefix', 'st'])).map((l) => l.split('\t')[0])).toEqual(['strict']);
      expect(await ok(['policy', 'list', '--prefix', 'zzz'])).toBe('');
    });

    it('put replaces a policy', async () => {
      await ok(['policy', 'put', 'strict', file('strict2.json', JSON.stringify({ version: 1, allowedDigests: 'any', allowDebug: false }))]);
      expect(JSON.parse(await ok(['policy', 'get', 'strict']))).toEqual({ version: 1, allowedDigests: 'any', allowDebug: false });
    });

    it.each([
      ['an empty digest list', '{"version":1,"allowedDigests":[]}', 'invalid policy: allowedDigests is an empty list'],
      ['a misspelt field', '{"version":1,"allowedDigests":"any","allowDebugg":true}', 'did you mean allowDebug'],
      ['a missing version', '{"allowedDigests":"any"}', 'invalid policy: version is required'],
      ['a short digest', '{"version":1,"allowedDigests":["abcd"]}', 'invalid policy: allowedDigests[0]'],
      ['not JSON', '{version: 1}', 'document_json is not JSON'],
    ])('put of %s: the broker says why, non-zero exit, nothing stored', async (_what, doc, message) => {
      const r = await kb(['policy', 'put', 'bad', file('bad.json', doc)]);
      expect(r.code).toBe(1);
      expect(r.out).toBe('');
      expect(r.err).toContain('kbctl policy put: ');
      expect(r.err).toContain(message);
      expect((await kb(['policy', 'get', 'bad'])).code).toBe(1);
    });

    it('invalid names, unknown names, a missing file', async () => {
      const name = await kb(['policy', 'put', 'has space', 'default.json']);
      expect(name.code).toBe(1);
      expect(name.err).toContain('name must be 1–256 printable ASCII characters without spaces');
      const get = await kb(['policy', 'get', 'nope']);
      expect(get).toEqual({ code: 1, out: '', err: "kbctl policy get: policy 'nope' does not exist" });
      const del = await kb(['policy', 'delete', 'nope']);
      expect(del).toEqual({ code: 1, out: '', err: "kbctl policy delete: policy 'nope' does not exist" });
      const missing = await kb(['policy', 'put', 'x', 'missing.json']);
      expect(missing).toEqual({ code: 1, out: '', err: 'kbctl policy put: cannot read the policy from missing.json: ENOENT' });
    });
  });

  describe('secret', () => {
    it('put with --value, --file, --base64 and --file - (stdin), with and without --policy', async () => {
      expect(await ok(['secret', 'put', 'default/key/value', '--value', VALUE_TEXT])).toBe(
        `secret default/key/value stored (${Buffer.byteLength(VALUE_TEXT)} bytes)`,
      );
      expect(await ok(['secret', 'put', 'default/key/file', '--file', file('secret.bin', FILE_BYTES), '--policy', 'strict'])).toBe(
        'secret default/key/file stored (32 bytes, policy strict)',
      );
      expect(await ok(['secret', 'put', 'default/key/b64', '--base64', B64_BYTES.toString('base64')])).toBe('secret default/key/b64 stored (48 bytes)');
      expect(await ok(['secret', 'put', 'default/key/stdin', '--file', '-'], { stdin: STDIN_BYTES })).toBe('secret default/key/stdin stored (24 bytes)');
      expect(await ok(['secret', 'put', 'default/key/guarded', '--value', VALUE_TEXT, '--policy', 'guard'])).toMatch(/policy guard\)$/);
      expect(await ok(['secret', 'put', 'other/tmp', '--value', VALUE_TEXT])).toMatch(/^secret other\/tmp stored/);
    });

    it('exactly one of --file, --value, --base64 (exit 2, with a usage hint)', async () => {
      for (const extra of [[], ['--value', VALUE_TEXT, '--file', 'secret.bin'], ['--value', VALUE_TEXT, '--base64', 'AAAA']]) {
        const r = await kb(['secret', 'put', 'default/key/x', ...extra]);
        expect(r.code).toBe(2);
        expect(r.err).toBe("kbctl secret put: give exactly one of --file, --value, --base64\nRun 'kbctl secret put --help'.");
      }
      const b64 = await kb(['secret', 'put', 'default/key/x', '--base64', '!!!!']);
      expect(b64.code).toBe(2);
      expect(b64.err).toContain('--base64 is not valid base64');
      expect((await kb(['secret', 'info', 'default/key/x'])).code).toBe(1);
    });

    it('the broker refuses empty, oversized and unknown-policy secrets', async () => {
      const empty = await kb(['secret', 'put', 'default/key/x', '--value', '']);
      expect(empty).toEqual({ code: 1, out: '', err: 'kbctl secret put: value must not be empty' });
      const big = await kb(['secret', 'put', 'default/key/x', '--file', file('big.bin', Buffer.alloc(4097, 1))]);
      expect(big.code).toBe(1);
      expect(big.err).toContain('value must be at most 4096 bytes');
      const pol = await kb(['secret', 'put', 'default/key/x', '--value', 'v', '--policy', 'no-such-policy']);
      expect(pol.code).toBe(1);
      expect(pol.err).toMatch(/^kbctl secret put: .*no-such-policy/);
      expect((await kb(['secret', 'info', 'default/key/x'])).code).toBe(1);
    });

    it('info shows metadata only; list (with --prefix)', async () => {
      const info = JSON.parse(await ok(['secret', 'info', 'default/key/file']));
      expect(info).toEqual({ id: 'default/key/file', policy_name: 'strict', size: 32, created_at: expect.stringMatching(/Z$/) });
      expect(lines(await ok(['secret', 'list']))).toEqual([
        'default/key/b64\t48\t-',
        'default/key/file\t32\tstrict',
        `default/key/guarded\t${Buffer.byteLength(VALUE_TEXT)}\tguard`,
        'default/key/stdin\t24\t-',
        `default/key/value\t${Buffer.byteLength(VALUE_TEXT)}\t-`,
        `other/tmp\t${Buffer.byteLength(VALUE_TEXT)}\t-`,
      ]);
      expect(lines(await ok(['secret', 'list', '--prefix', 'other/']))).toEqual([`other/tmp\t${Buffer.byteLength(VALUE_TEXT)}\t-`]);
      const none = await kb(['secret', 'info', 'nope']);
      expect(none).toEqual({ code: 1, out: '', err: "kbctl secret info: secret 'nope' does not exist" });
    });

    it('put replaces a value; delete', async () => {
      expect(await ok(['secret', 'put', 'other/tmp', '--value', 'x'])).toBe('secret other/tmp stored (1 bytes)');
      expect(await ok(['secret', 'delete', 'other/tmp'])).toBe('secret other/tmp deleted');
      expect(await ok(['secret', 'list', '--prefix', 'other/'])).toBe('');
      expect(await kb(['secret', 'delete', 'other/tmp'])).toEqual({ code: 1, out: '', err: "kbctl secret delete: secret 'other/tmp' does not exist" });
    });
  });

  describe('keyset', () => {
    it('put, get, list, refusal of unknown secrets, delete', async () => {
      expect(await ok(['keyset', 'put', 'KEYSET-1', 'default/key/file', 'default/key/b64'])).toBe('keyset KEYSET-1 stored (2 secrets)');
      expect(await ok(['keyset', 'put', 'KEYSET-2', 'default/key/value', '--policy', 'guard'])).toBe('keyset KEYSET-2 stored (1 secrets)');
      expect(JSON.parse(await ok(['keyset', 'get', 'KEYSET-1']))).toEqual({
        id: 'KEYSET-1',
        secret_ids: ['default/key/file', 'default/key/b64'],
        policy_name: '',
      });
      expect(lines(await ok(['keyset', 'list']))).toEqual(['KEYSET-1\tdefault/key/file,default/key/b64\t-', 'KEYSET-2\tdefault/key/value\tguard']);
      expect(lines(await ok(['keyset', 'list', '--prefix', 'KEYSET-2']))).toHaveLength(1);

      const unknown = await kb(['keyset', 'put', 'KEYSET-3', 'default/key/file', 'nope/a', 'nope/b']);
      expect(unknown).toEqual({ code: 1, out: '', err: 'kbctl keyset put: unknown secrets: nope/a, nope/b' });

      expect(await ok(['keyset', 'delete', 'KEYSET-2'])).toBe('keyset KEYSET-2 deleted');
      expect((await kb(['keyset', 'get', 'KEYSET-2'])).err).toBe("kbctl keyset get: keyset 'KEYSET-2' does not exist");
      expect((await kb(['keyset', 'delete', 'KEYSET-2'])).code).toBe(1);
    });
  });

  describe('resource', () => {
    it('put from a file and stdin, info, list, delete', async () => {
      expect(await ok(['resource', 'put', 'default/res/cfg', file('res.txt', RESOURCE_BYTES)])).toBe(
        `resource default/res/cfg stored (${RESOURCE_BYTES.length} bytes)`,
      );
      expect(await ok(['resource', 'put', 'default/res/tmp', '-', '--policy', 'guard'], { stdin: Buffer.from('tmp') })).toBe(
        'resource default/res/tmp stored (3 bytes)',
      );
      expect(JSON.parse(await ok(['resource', 'info', 'default/res/cfg']))).toEqual({
        id: 'default/res/cfg',
        policy_name: '',
        size: RESOURCE_BYTES.length,
        created_at: expect.stringMatching(/Z$/),
      });
      expect(lines(await ok(['resource', 'list']))).toEqual([`default/res/cfg\t${RESOURCE_BYTES.length}\t-`, 'default/res/tmp\t3\tguard']);
      expect(await ok(['resource', 'delete', 'default/res/tmp'])).toBe('resource default/res/tmp deleted');
      expect(lines(await ok(['resource', 'list', '--prefix', 'default/res/']))).toHaveLength(1);
      expect(await kb(['resource', 'info', 'default/res/tmp'])).toEqual({
        code: 1,
        out: '',
        err: "kbctl resource info: resource 'default/res/tmp' does not exist",
      });
      const empty = await kb(['resource', 'put', 'default/res/e', file('empty.bin', '')]);
      expect(empty).toEqual({ code: 1, out: '', err: 'kbctl resource put: data must not be empty' });
    });
  });

  describe('kbs-resource', () => {
    it('put from --value and --file, info (never the value), list, delete; malformed paths refused locally', async () => {
      expect(await ok(['kbs-resource', 'put', 'default/key/kbs1', '--value', KBS_VALUE])).toBe(
        `KBS resource default/key/kbs1 stored (${Buffer.byteLength(KBS_VALUE)} bytes)`,
      );
      expect(await ok(['kbs-resource', 'put', 'default/key/kbs2', '--file', file('kbs2.bin', 'abc'), '--policy', 'guard'])).toBe(
        'KBS resource default/key/kbs2 stored (3 bytes, policy guard)',
      );
      expect(JSON.parse(await ok(['kbs-resource', 'info', 'default/key/kbs1']))).toEqual({
        path: 'default/key/kbs1',
        policy_name: '',
        size: Buffer.byteLength(KBS_VALUE),
        created_at: expect.stringMatching(/Z$/),
        updated_at: expect.stringMatching(/Z$/),
      });
      expect(lines(await ok(['kbs-resource', 'list', '--prefix', 'default/key/kbs']))).toEqual([
        `default/key/kbs1\t${Buffer.byteLength(KBS_VALUE)}\t-`,
        'default/key/kbs2\t3\tguard',
      ]);
      expect(await ok(['kbs-resource', 'delete', 'default/key/kbs2'])).toBe('KBS resource default/key/kbs2 deleted');
      expect(await kb(['kbs-resource', 'info', 'default/key/kbs2'])).toEqual({
        code: 1,
        out: '',
        err: "kbctl kbs-resource info: KBS resource 'default/key/kbs2' does not exist",
      });
      expect((await kb(['kbs-resource', 'put', 'a/b', '--value', 'x'])).code).toBe(2);
      expect((await kb(['kbs-resource', 'put', '.a/b/c', '--value', 'x'])).code).toBe(2);
      expect((await kb(['kbs-resource', 'put', 'a/b/c'])).err).toContain('exactly one of --file, --value');
      expect(await kb(['kbs-resource', 'put', 'a/b/c', '--value', 'x', '--policy', 'missing'])).toMatchObject({ code: 1 });
    });
  });

  describe('report-key', () => {
    let generatedPem: string;

    it('create generates a P-256 key and prints only its public key; get prints the same', async () => {
      generatedPem = await ok(['report-key', 'create', 'report-1']);
      expect(generatedPem).toMatch(/^-----BEGIN PUBLIC KEY-----\n[\s\S]+\n-----END PUBLIC KEY-----$/);
      const key = createPublicKey(generatedPem);
      expect(key.asymmetricKeyType).toBe('ec');
      expect(key.asymmetricKeyDetails?.namedCurve).toBe('prime256v1');
      expect(await ok(['report-key', 'get', 'report-1'])).toBe(generatedPem);
    });

    it('create --import of a PKCS#8 P-256 PEM: the public key printed is that key’s', async () => {
      const out = await ok(['report-key', 'create', 'report-imported', '--import', file('p256.pem', IMPORTED_PEM), '--policy', 'guard']);
      expect(out).toBe(IMPORTED_KEY.publicKey.export({ format: 'pem', type: 'spki' }).toString().trimEnd());
      expect(out).not.toContain('PRIVATE');
      expect(await ok(['report-key', 'get', 'report-imported'])).toBe(out);
    });

    it('refuses to import what is not a P-256 private key', async () => {
      const rsa = generateKeyPairSync('rsa', { modulusLength: 1024 }).privateKey.export({ format: 'pem', type: 'pkcs8' }).toString();
      const r1 = await kb(['report-key', 'create', 'bad-key', '--import', file('rsa.pem', rsa)]);
      expect(r1).toEqual({ code: 1, out: '', err: 'kbctl report-key create: report keys are ECDSA P-256 keys' });
      const p384 = generateKeyPairSync('ec', { namedCurve: 'P-384' }).privateKey.export({ format: 'pem', type: 'pkcs8' }).toString();
      expect((await kb(['report-key', 'create', 'bad-key', '--import', file('p384.pem', p384)])).err).toContain('report keys are ECDSA P-256 keys');
      const junk = await kb(['report-key', 'create', 'bad-key', '--import', file('junk.pem', 'not a key')]);
      expect(junk.code).toBe(1);
      expect(junk.err).toContain('private_key_pem is not a private key');
      const missing = await kb(['report-key', 'create', 'bad-key', '--import', 'missing.pem']);
      expect(missing.err).toBe('kbctl report-key create: cannot read the private key from missing.pem: ENOENT');
      expect((await kb(['report-key', 'get', 'bad-key'])).code).toBe(1);
    });

    it('list, delete', async () => {
      await ok(['report-key', 'create', 'report-tmp']);
      const rows = lines(await ok(['report-key', 'list'])).map((l) => l.split('\t'));
      expect(rows.map((r) => r.slice(0, 2))).toEqual([
        ['report-1', '-'],
        ['report-imported', 'guard'],
        ['report-tmp', '-'],
      ]);
      expect(lines(await ok(['report-key', 'list', '--prefix', 'report-i']))).toHaveLength(1);
      expect(await ok(['report-key', 'delete', 'report-tmp'])).toBe('report key report-tmp deleted');
      expect(await kb(['report-key', 'get', 'report-tmp'])).toEqual({ code: 1, out: '', err: "kbctl report-key get: report key 'report-tmp' does not exist" });
      expect((await kb(['report-key', 'delete', 'report-tmp'])).code).toBe(1);
    });
  });

  describe('what kbctl stored reaches a launched guest; connections; audit', () => {
    let launchId: string;
    let clientId: string;
    let refusedRef: string;

    it('a simulated launch receives every stored value byte for byte', async () => {
      const requests = [
        { Guid: KEY_GUID, Format: 'binary', SecretType: 'key', Id: 'default/key/value' },
        { Guid: JSON_GUID, Format: 'JSON', SecretType: 'key', Id: 'default/key/value' },
        { Guid: FILE_GUID, Format: 'binary', SecretType: 'key', Id: 'default/key/file' },
        { Guid: B64_GUID, Format: 'binary', SecretType: 'key', Id: 'default/key/b64' },
        { Guid: STDIN_GUID, Format: 'binary', SecretType: 'key', Id: 'default/key/stdin' },
        { Guid: BUNDLE_GUID, Format: 'JSON', SecretType: 'bundle', Id: 'KEYSET-1' },
        { Guid: RES_GUID, Format: 'binary', SecretType: 'resource', Id: 'default/res/cfg' },
        { Guid: REPORT_GUID, Format: 'json', SecretType: 'report', Id: 'report-1' },
        { Guid: CONN_GUID, Format: 'JSON', SecretType: 'connection', Id: '' },
      ];
      const { bundle, secrets } = await simulatedLaunch(host, platform, { policy: SEV_POLICY, requests });
      launchId = bundle.LaunchId;
      const got = new Map(secrets.map((s) => [s.guid, s.data]));
      expect(got.get(KEY_GUID)!.toString()).toBe(VALUE_TEXT);
      expect(JSON.parse(got.get(JSON_GUID)!.toString())).toEqual({ id: 'default/key/value', payload: Buffer.from(VALUE_TEXT).toString('base64') });
      expect(got.get(FILE_GUID)).toEqual(FILE_BYTES);
      expect(got.get(B64_GUID)).toEqual(B64_BYTES);
      expect(got.get(STDIN_GUID)).toEqual(STDIN_BYTES);
      expect(JSON.parse(got.get(BUNDLE_GUID)!.toString())).toEqual({
        'default/key/file': FILE_BYTES.toString('base64'),
        'default/key/b64': B64_BYTES.toString('base64'),
      });
      expect(got.get(RES_GUID)).toEqual(RESOURCE_BYTES);
      // the report is signed with the key whose public half `report-key get` prints
      const report = JSON.parse(got.get(REPORT_GUID)!.toString()) as { connection: string; signature: string };
      const pub = createPublicKey(await ok(['report-key', 'get', 'report-1']));
      expect(createVerify('sha256').update(report.connection).verify(pub, Buffer.from(report.signature, 'base64'))).toBe(true);
      clientId = (JSON.parse(got.get(CONN_GUID)!.toString()) as { client_id: string }).client_id;
      expect(clientId).toMatch(/^[0-9a-f-]{36}$/);
    });

    it('a malformed GetBundle is refused with a reference the owner can look up', async () => {
      const e = await host.getBundle({ CertificateChain: Buffer.alloc(64, 7).toString('base64'), Policy: SEV_POLICY }).then(
        () => {
          throw new Error('expected GetBundle to fail');
        },
        (err: ServiceError) => err,
      );
      refusedRef = /\(ref ([0-9a-f]+)\)/.exec(e.details)![1]!;
      expect(refusedRef).toMatch(/^[0-9a-f]{12}$/);
    });

    it('connection list shows the live connection; revoke ends it; revoking an unknown id fails', async () => {
      const live = lines(await ok(['connection', 'list']));
      expect(live).toEqual([expect.stringMatching(new RegExp(`^${clientId}\tpolicy 0x1\texpires \\d{4}-`))]);

      const online = { ClientId: clientId, SecretRequests: [{ Guid: KEY_GUID, Format: 'binary', SecretType: 'key', Id: 'default/key/value' }] };
      await expect(host.getOnlineSecret(online)).resolves.toHaveProperty('Payload');

      expect(await ok(['connection', 'revoke', clientId])).toBe(`connection ${clientId} revoked`);
      expect(lines(await ok(['connection', 'list']))).toEqual([expect.stringMatching(new RegExp(`^${clientId}\tpolicy 0x1\trevoked \\d{4}-`))]);
      await expect(host.getOnlineSecret(online)).rejects.toMatchObject({ code: 7 }); // PERMISSION_DENIED

      const unknownId = randomUUID();
      expect(await kb(['connection', 'revoke', unknownId])).toEqual({
        code: 1,
        out: '',
        err: `kbctl connection revoke: connection '${unknownId}' does not exist`,
      });
      expect((await kb(['connection', 'revoke', 'not-a-uuid'])).code).toBe(1);
      // Revoking it a second time is not an error: it stays revoked.
      expect(await ok(['connection', 'revoke', clientId])).toBe(`connection ${clientId} revoked`);
    });

    it('audit: tab-separated lines, newest first', async () => {
      const rows = lines(await ok(['audit'])).map((l) => l.split('\t'));
      for (const r of rows) {
        expect(r).toHaveLength(6);
        expect(new Date(r[0]!).getTime()).not.toBeNaN();
        expect(r[4]).toMatch(/^ref=/);
      }
      const events = rows.map((r) => `${r[1]} ${r[2]}`);
      // every answer with a reference also has its `call` entry (the class, the call, the peer), next to the decision
      expect(events).toEqual([
        'call PERMISSION_DENIED',
        'online-secret refused',
        'online-secret released',
        'call INVALID_ARGUMENT',
        'bundle refused',
        'secret released',
        'bundle issued',
      ]);
      expect(rows[6]![3]).toBe(launchId);
      expect(rows[4]![4]).toBe(`ref=${refusedRef}`);
      expect(rows[3]![4]).toBe(`ref=${refusedRef}`);
      expect(rows[1]![3]).toBe(clientId);
      expect(JSON.parse(rows[5]![5]!)).toMatchObject({ launchDigest: expectedDigest(SEV_POLICY).toString('hex'), policy: SEV_POLICY });
    });

    it('audit --json, --launch, --ref, --limit, --since', async () => {
      const all = JSON.parse(await ok(['audit', '--json'])) as { event: string; outcome: string; detail?: unknown; detail_json?: string; launch_id: string }[];
      expect(all).toHaveLength(7);
      for (const e of all) {
        expect(e).not.toHaveProperty('detail_json');
        expect(typeof e.detail).toBe('object');
      }
      const secret = all.find((e) => e.event === 'secret')!;
      expect(secret).toMatchObject({
        outcome: 'released',
        launch_id: launchId,
        detail: { requested: expect.arrayContaining([{ guid: KEY_GUID, type: 'key', id: 'default/key/value' }]) },
      });

      const byLaunch = JSON.parse(await ok(['audit', '--json', '--launch', launchId])) as { event: string }[];
      expect(byLaunch.map((e) => e.event).sort()).toEqual(['bundle', 'online-secret', 'secret']);
      const byRef = JSON.parse(await ok(['audit', '--json', '--ref', refusedRef])) as { outcome: string; detail: { code: string } }[];
      expect(byRef).toEqual([
        expect.objectContaining({
          event: 'call',
          outcome: 'INVALID_ARGUMENT',
          ref_id: refusedRef,
          detail: expect.objectContaining({ rpc: 'GetBundle', class: 'invalid' }),
        }),
        expect.objectContaining({ event: 'bundle', outcome: 'refused', ref_id: refusedRef }),
      ]);
      expect(lines(await ok(['audit', '--limit', '2']))).toHaveLength(2);
      expect(await kb(['audit', '--since', '2999-01-01T00:00:00Z'])).toEqual({ code: 0, out: '', err: 'no audit entries matched' });
      expect(await kb(['audit', '--json', '--since', '2999-01-01T00:00:00Z'])).toEqual({ code: 0, out: '[]', err: 'no audit entries matched' });

      const bad = await kb(['audit', '--since', 'yesterday']);
      expect(bad).toEqual({ code: 1, out: '', err: 'kbctl audit: since must be an ISO-8601 time' });
      const limit = await kb(['audit', '--limit', '0']);
      expect(limit.code).toBe(2);
    });
  });

  describe('deleting what is in use', () => {
    it('a policy used by a secret, a secret used by a keyset: refused, then allowed once unused', async () => {
      const pol = await kb(['policy', 'delete', 'guard']);
      expect(pol.code).toBe(1);
      expect(pol.err).toMatch(/^kbctl policy delete: /);
      expect(await ok(['policy', 'list', '--prefix', 'guard'])).toMatch(/^guard\t/);

      const sec = await kb(['secret', 'delete', 'default/key/b64']);
      expect(sec.code).toBe(1);
      expect(sec.err).toMatch(/^kbctl secret delete: /);
      expect(await ok(['secret', 'info', 'default/key/b64'])).toContain('"size": 48');

      await ok(['keyset', 'delete', 'KEYSET-1']);
      expect(await ok(['secret', 'delete', 'default/key/b64'])).toBe('secret default/key/b64 deleted');
      await ok(['secret', 'delete', 'default/key/guarded']);
      await ok(['report-key', 'delete', 'report-imported']);
      expect(await ok(['policy', 'delete', 'guard'])).toBe('policy guard deleted');
      expect(await ok(['policy', 'list']).then(lines)).toEqual([expect.stringMatching(/^default\t/), expect.stringMatching(/^strict\t/)]);
    });
  });

  describe('lists longer than a page', () => {
    it("secret list, policy list and audit follow the broker's pages: every entry, once, in order", async () => {
      const ids = Array.from({ length: 130 }, (_, i) => `paged/${String(i).padStart(3, '0')}`);
      for (const id of ids) await ok(['secret', 'put', id, '--value', 'v']);
      const listed = lines(await ok(['secret', 'list', '--prefix', 'paged/'])).map((l) => l.split('\t')[0]);
      expect(listed).toEqual(ids); // 130 > the broker's default page of 100
      // policies of ~60 KB each: a page stops at 1 MiB, the list holds them all
      const digest = (i: number) => createHash('sha256').update(`d${i}`).digest('hex');
      for (let p = 0; p < 20; p++) {
        const doc = JSON.stringify({ version: 1, allowedDigests: Array.from({ length: 890 }, (_, i) => digest(p * 1000 + i)) });
        writeFileSync(join(work, 'big.json'), doc);
        await ok(['policy', 'put', `big-${String(p).padStart(2, '0')}`, join(work, 'big.json')]);
      }
      expect(lines(await ok(['policy', 'list', '--prefix', 'big-'])).map((l) => l.split('\t')[0])).toEqual(
        Array.from({ length: 20 }, (_, p) => `big-${String(p).padStart(2, '0')}`),
      );
      for (const id of ids) await ok(['secret', 'delete', id]);
      for (let p = 0; p < 20; p++) await ok(['policy', 'delete', `big-${String(p).padStart(2, '0')}`]);

      // 1,100 refused GetBundle calls (malformed, then rate-limited): each reference has its entry, and kbctl audit
      // gathers more than the broker's 1,000-entry page
      const refs = new Set<string>();
      for (let i = 0; i < 1100; i += 50) {
        const answers = await Promise.all(
          Array.from({ length: 50 }, () => host.getBundle({ CertificateChain: '', Policy: SEV_POLICY }).catch((e: ServiceError) => e)),
        );
        for (const a of answers) refs.add(/\(ref ([0-9a-f]{12})\)/.exec((a as ServiceError).details)![1]!);
      }
      let entries: { ref_id: string; event: string }[] = [];
      for (let tries = 0; tries < 50; tries++) {
        entries = JSON.parse(await ok(['audit', '--json', '--limit', '1500'])) as typeof entries;
        if (entries.filter((e) => refs.has(e.ref_id)).length >= 1100) break;
        await new Promise((r) => setTimeout(r, 100));
      }
      expect(entries.length).toBeGreaterThanOrEqual(1100); // more than one page of 1,000
      expect(new Set(entries.filter((e) => e.event === 'call' && refs.has(e.ref_id)).map((e) => e.ref_id)).size).toBe(1100);
    }, 120_000);

    it('a policy over 64 KiB is refused with the limit named, and nothing is stored', async () => {
      const doc = JSON.stringify({ version: 1, allowedDigests: Array.from({ length: 1000 }, (_, i) => createHash('sha256').update(`o${i}`).digest('hex')) });
      writeFileSync(join(work, 'over.json'), doc);
      const r = await kb(['policy', 'put', 'over', join(work, 'over.json')]);
      expect(r).toEqual({ code: 1, out: '', err: `kbctl policy put: document_json must be at most 65536 bytes (64 KiB), got ${Buffer.byteLength(doc)}` });
      expect((await kb(['policy', 'get', 'over'])).code).toBe(1);
    });
  });

  describe('connection errors', () => {
    it('a wrong token: exit 3 and a clear message (the token is not echoed)', async () => {
      const wrong = 'W'.repeat(43);
      const r = await kb(['policy', 'list', '--admin-url', adminUrl, '--token-file', file('wrong.token', wrong + '\n')], { conn: false });
      expect(r).toEqual({
        code: 3,
        out: '',
        err: 'kbctl policy list: the broker refused the admin token from wrong.token; check --token-file / KB_ADMIN_TOKEN',
      });
      const env = await kb(['secret', 'put', 'default/key/x', '--value', 'v', '--admin-url', adminUrl], { conn: false, env: { KB_ADMIN_TOKEN: wrong } });
      expect(env.code).toBe(3);
      expect(env.err).toContain('refused the admin token from KB_ADMIN_TOKEN');
      expect(env.err).not.toContain(wrong);
      expect(brokerLog.some((l) => l.includes('admin call refused'))).toBe(true);
    });

    it('the broker unreachable: a clear message, exit 1', async () => {
      const port = await new Promise<number>((done) => {
        const s = createServer().listen(0, '127.0.0.1', () => {
          const p = (s.address() as { port: number }).port;
          s.close(() => done(p));
        });
      });
      const started = Date.now();
      const r = await kb(['policy', 'list', '--admin-url', `127.0.0.1:${port}`, '--token-file', tokenFile], { conn: false });
      expect(r.code).toBe(1);
      expect(r.out).toBe('');
      expect(r.err).toBe(
        `kbctl policy list: cannot reach the broker's admin API at 127.0.0.1:${port}: connection refused: is the broker running? (its admin API is on port 44445 by default)`,
      );
      expect(Date.now() - started).toBeLessThan(10_000);
    });

    it('a host name that does not resolve is said so, without grpc-js notes', async () => {
      const r = await kb(['policy', 'list', '--admin-url', 'no-such-host.invalid', '--token-file', tokenFile], { conn: false });
      expect(r.code).toBe(1);
      expect(r.err).toBe("kbctl policy list: cannot reach the broker's admin API at no-such-host.invalid:44445: the host name does not resolve");
    });

    it("the guest API's address given as --admin-url: says which API it is and where the admin API is", async () => {
      const r = await kb(['policy', 'list', '--admin-url', keybrokerUrl, '--token-file', tokenFile], { conn: false });
      expect(r.code).toBe(1);
      expect(r.err).toBe(
        `kbctl policy list: ${keybrokerUrl} serves the guest API (keybroker.KeyBrokerService), not the admin API; the admin API is on port 44445 by default (--admin-url HOST:44445)`,
      );
    });

    it('connection flags before the command (kbctl --admin-url U --token-file F policy list) and with =', async () => {
      const after = await kb(['policy', 'list', '--admin-url', adminUrl, '--token-file', tokenFile], { conn: false });
      expect(after.code).toBe(0);
      expect(await kb(['--admin-url', adminUrl, '--token-file', tokenFile, 'policy', 'list'], { conn: false })).toEqual(after);
      expect(await kb([`--admin-url=${adminUrl}`, 'policy', `--token-file=${tokenFile}`, 'list'], { conn: false })).toEqual(after);
    });

    it('kbctl audit says when nothing matched (on stderr; --json still prints [])', async () => {
      const none = await kb(['audit', '--launch', randomUUID()]);
      expect(none).toEqual({ code: 0, out: '', err: 'no audit entries matched' });
      const json = await kb(['audit', '--launch', randomUUID(), '--json']);
      expect(json).toEqual({ code: 0, out: '[]', err: 'no audit entries matched' });
    });

    it('kbctl health: SERVING from the guest listener; a closed port is "not serving" with the reason, exit 1', async () => {
      expect(await kb(['health', '--broker', keybrokerUrl], { conn: false })).toEqual({ code: 0, out: 'SERVING', err: '' });
      expect(await kb(['health', '--service', 'keybroker.KeyBrokerService'], { conn: false, env: { KB_BROKER_URL: keybrokerUrl } })).toEqual({
        code: 0,
        out: 'SERVING',
        err: '',
      });
      const port = await new Promise<number>((done) => {
        const s = createServer().listen(0, '127.0.0.1', () => {
          const p = (s.address() as { port: number }).port;
          s.close(() => done(p));
        });
      });
      const started = Date.now();
      const r = await kb(['health', '--broker', `127.0.0.1:${port}`, '--wait', '1'], { conn: false });
      expect(r.code).toBe(1);
      expect(r.err).toContain(`waiting up to 1 s for the broker at 127.0.0.1:${port}`);
      expect(r.err).toContain(
        `the broker at 127.0.0.1:${port} is not serving: connection refused: is the broker running? (it listens on port 44444 by default) (waited 1 s)`,
      );
      expect(Date.now() - started).toBeGreaterThanOrEqual(700);
      expect(Date.now() - started).toBeLessThan(6000);
    });

    it('the address and token from the environment (KB_ADMIN_URL, KB_ADMIN_TOKEN_FILE, KB_ADMIN_TOKEN)', async () => {
      const viaFile = await kb(['policy', 'list'], { conn: false, env: { KB_ADMIN_URL: adminUrl, KB_ADMIN_TOKEN_FILE: tokenFile } });
      expect(viaFile.code).toBe(0);
      expect(viaFile.out).toMatch(/^default\t/);
      const token = readFileSync(tokenFile, 'utf8').trim();
      const viaToken = await kb(['policy', 'list'], { conn: false, env: { KB_ADMIN_URL: adminUrl, KB_ADMIN_TOKEN: token } });
      expect(viaToken).toEqual(viaFile);
      // flags win over the environment
      const flags = await kb(['policy', 'list', '--admin-url', adminUrl, '--token-file', tokenFile], {
        conn: false,
        env: { KB_ADMIN_URL: '127.0.0.1:1', KB_ADMIN_TOKEN_FILE: 'nope' },
      });
      expect(flags).toEqual(viaFile);
    });
  });

  describe('report keys that sign the launch description', () => {
    it("report-key create --sign-launch-description: reports carry the host's LaunchDescription (default: empty)", async () => {
      const pem = await ok(['report-key', 'create', 'report-desc', '--sign-launch-description']);
      const requests = [
        { Guid: REPORT_GUID, Format: 'json', SecretType: 'report', Id: 'report-desc' },
        { Guid: JSON_GUID, Format: 'json', SecretType: 'report', Id: 'report-1' },
      ];
      const { secrets } = await simulatedLaunch(host, platform, { policy: SEV_POLICY, requests });
      const got = new Map(secrets.map((s) => [s.guid, JSON.parse(s.data.toString()) as { connection: string; signature: string }]));
      const signing = got.get(REPORT_GUID)!;
      expect(JSON.parse(signing.connection).launch_description).toBe('kbctl test');
      expect(createVerify('sha256').update(signing.connection).verify(createPublicKey(pem), Buffer.from(signing.signature, 'base64'))).toBe(true);
      expect(JSON.parse(got.get(JSON_GUID)!.connection).launch_description).toBe('');
      expect(lines(await ok(['report-key', 'list', '--prefix', 'report-desc']))[0]).toMatch(/^report-desc\t-\t\S+\tsigns-launch-description$/);
      await ok(['report-key', 'delete', 'report-desc']);
    });
  });

  it('owner create prints the token once; list names owners only; a taken name is refused; delete', async () => {
    const token = (await ok(['owner', 'create', 'alice'])).trim();
    expect(token).toMatch(/^kbo_[A-Za-z0-9_-]{43}$/);
    const listed = await ok(['owner', 'list']);
    expect(listed).toMatch(/^alice\t\S+$/m);
    expect(listed).not.toContain(token);
    const again = await kb(['owner', 'create', 'alice']);
    expect(again.code).not.toBe(0);
    expect(await ok(['owner', 'delete', 'alice'])).toBe('owner alice deleted');
    expect(await ok(['owner', 'list'])).not.toMatch(/alice/);
  });

  it('no command printed a secret value, and neither did the broker log', () => {
    expect(transcript.length).toBeGreaterThan(100); // runs last: everything above has been captured
    const printed = transcript.join('\n');
    const log = brokerLog.join('\n');
    for (const s of SECRET_FORMS) {
      expect(printed).not.toContain(s);
      expect(log).not.toContain(s);
    }
    expect(log).not.toContain(readFileSync(tokenFile, 'utf8').trim());
  });
});
