import { createHash } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { cmdlineHash, decodeChain } from '@kb/sev';
import { createPlatform, platformChain } from '@kb/sev-sim';
import { runCli, type Io } from '../../src/cli';
import { tree } from '../../src/main';

/**
 * kbctl vm / firmware against a recording HTTP server on loopback (a stand-in for the broker's attestation service,
 * answering what the contract says): the exact requests kbctl sends (method, path, token, JSON), and how it reports
 * the service's answers. The service itself is tested on the broker's side.
 */
interface Seen {
  method: string;
  url: string;
  auth?: string;
  type?: string;
  body: Buffer;
}

const TOKEN = 'owner-token-0123456789abcdef';
const UUID = '57f669c2-c427-4132-bc7a-26f56b6a718c';
let dir: string;
let server: Server;
let base: string;
let seen: Seen[] = [];
/** the next answers, in order; default 200 {} */
let answers: { status: number; body?: unknown }[] = [];
const oca = decodeChain(platformChain(createPlatform({ name: 'sev-sim' }))).oca.raw;

function handler(req: IncomingMessage, res: ServerResponse) {
  const parts: Buffer[] = [];
  req.on('data', (c: Buffer) => parts.push(c));
  req.on('end', () => {
    seen.push({ method: req.method!, url: req.url!, auth: req.headers.authorization, type: req.headers['content-type'], body: Buffer.concat(parts) });
    const a = answers.shift() ?? { status: 200, body: {} };
    const text = a.body === undefined ? '' : typeof a.body === 'string' ? a.body : JSON.stringify(a.body);
    res.writeHead(a.status, { 'content-type': 'application/json' });
    res.end(text);
  });
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'kbctl-service-'));
  server = createServer(handler);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${(server.address() as { port: number }).port}/sev/v1`;
  writeFileSync(join(dir, 'OVMF.fd'), Buffer.from('firmware bytes'));
  writeFileSync(join(dir, 'OVMF-2.fd'), Buffer.from('other firmware'));
  writeFileSync(join(dir, 'vmlinuz'), Buffer.from('kernel'));
  writeFileSync(join(dir, 'initrd.img'), Buffer.from('initrd'));
  writeFileSync(join(dir, 'oca.cert'), oca);
  writeFileSync(join(dir, 'luks.txt'), 'correct horse battery staple\n');
  writeFileSync(join(dir, 'disk.key'), Buffer.from([1, 2, 3, 4]));
  writeFileSync(join(dir, 'token'), `${TOKEN}\n`);
});
afterAll(async () => {
  await new Promise<void>((r) => server.close(() => r()));
  rmSync(dir, { recursive: true, force: true });
});
beforeEach(() => {
  seen = [];
  answers = [];
});

async function kbctl(argv: string[], env: NodeJS.ProcessEnv = {}) {
  const out: string[] = [];
  const err: string[] = [];
  const io: Io = { out: (s) => out.push(s), err: (s) => err.push(s), env: { KB_SERVICE_URL: base, KB_ADMIN_TOKEN_FILE: 'token', ...env }, cwd: dir };
  const code = await runCli('kbctl', 'kbctl', tree, argv, io);
  return { code, out: out.join('\n'), err: err.join('\n') };
}

const sha = (s: string) => createHash('sha256').update(s).digest('hex');
const json = (s: Seen) => JSON.parse(s.body.toString('utf8')) as Record<string, unknown>;

describe('kbctl vm register', () => {
  it('builds the registration from flags: exact JSON, POST /vm/UUID, the bearer token', async () => {
    answers = [{ status: 201, body: { uuid: UUID } }];
    const r = await kbctl([
      'vm',
      'register',
      UUID.toUpperCase(),
      '--firmware',
      'OVMF.fd',
      '--firmware',
      'OVMF-2.fd',
      '--kernel',
      'vmlinuz',
      '--initrd',
      'initrd.img',
      '--append',
      'console=ttyS0',
      '--policy',
      '0x5',
      '--cpu-count',
      '4',
      '--cpu-model',
      'EPYC-Milan',
      '--cloud-cert',
      'oca.cert',
      '--luks-passphrase-file',
      'luks.txt',
      '--secret',
      '736869E5-84F0-4973-92EC-06879CE3DA0B=disk.key',
      '--max-launches',
      '10',
    ]);
    expect(r.err).toBe('');
    expect(r.code).toBe(0);
    expect(seen).toHaveLength(1);
    expect(seen[0]).toMatchObject({ method: 'POST', url: `/sev/v1/vm/${UUID}`, auth: `Bearer ${TOKEN}`, type: 'application/json' });
    expect(json(seen[0]!)).toEqual({
      scheme: 'amd-sev',
      'firmware-hashes': [sha('firmware bytes'), sha('other firmware')],
      'kernel-hash': sha('kernel'),
      'initrd-hash': sha('initrd'),
      'cmdline-hash': cmdlineHash('console=ttyS0').toString('hex'),
      policy: 5,
      'cpu-count': 4,
      'cpu-models': ['EPYC-Milan'],
      'max-launches': 10,
      'cloud-cert': oca.toString('base64'),
      secrets: [
        { type: 'luks-passphrase', passphrase: 'correct horse battery staple' },
        { guid: '736869e5-84f0-4973-92ec-06879ce3da0b', data: 'AQIDBA==' },
      ],
    });
    // QEMU hashes the command line with its terminating NUL
    expect(cmdlineHash('console=ttyS0').toString('hex')).toBe(createHash('sha256').update('console=ttyS0\0').digest('hex'));
    expect(r.out).toContain(`vm ${UUID} registered at ${base} (HTTP 201): policy 0x5, 2 firmware images, kernel hashes, 2 secrets`);
    expect(r.out).toContain(`<attestation vmid='${UUID}' service='${base}'/>`);
    expect(r.out + r.err).not.toContain('correct horse');
  });

  it('takes FILE.json and lets flags replace its fields; --replace PUTs; two --cloud-cert give "cloud-certs"', async () => {
    writeFileSync(
      join(dir, 'reg.json'),
      JSON.stringify({
        scheme: 'amd-sev',
        policy: 1,
        'cloud-cert': oca.toString('base64'),
        'firmware-hashes': ['ab'.repeat(32)],
        'launch-digests': ['cd'.repeat(32)],
      }),
    );
    answers = [{ status: 200, body: {} }];
    const r = await kbctl([
      '--token-file',
      'token',
      'vm',
      'register',
      UUID,
      'reg.json',
      '--policy',
      '3',
      '--cloud-cert',
      'oca.cert',
      '--cloud-cert',
      'oca.cert',
      '--replace',
    ]);
    expect(r.code).toBe(0);
    expect(seen[0]!.method).toBe('PUT');
    expect(json(seen[0]!)).toEqual({
      scheme: 'amd-sev',
      policy: 3,
      'cloud-certs': [oca.toString('base64'), oca.toString('base64')],
      'firmware-hashes': ['ab'.repeat(32)],
      'launch-digests': ['cd'.repeat(32)],
    });
    expect(r.out).toContain('replaced');
  });

  it("a registration that exists: the service's message and reference, and the --replace hint; exit 1", async () => {
    answers = [{ status: 409, body: { error: 'conflict', message: 'vm already exists (ref 7f3a)', ref: '7f3a' } }];
    const r = await kbctl(['vm', 'register', UUID, '--firmware', 'OVMF.fd', '--policy', '5', '--cloud-cert', 'oca.cert']);
    expect(r.code).toBe(1);
    expect(r.err).toBe('kbctl vm register: vm already exists (ref 7f3a) (use --replace to replace the registration)');
  });

  it.each([
    [['vm', 'register', 'my-vm', '--policy', '5'], 2, /'my-vm' is not a UUID/],
    [['vm', 'register', UUID, '--firmware', 'OVMF.fd', '--cloud-cert', 'oca.cert'], 1, /has no "policy": give --policy N/],
    [['vm', 'register', UUID, '--policy', '5', '--cloud-cert', 'oca.cert'], 1, /accepts no firmware: give --firmware OVMF.fd/],
    [['vm', 'register', UUID, '--policy', '5', '--firmware', 'OVMF.fd'], 1, /names no cloud owner: give --cloud-cert/],
    [['vm', 'register', UUID, '--policy', 'five', '--firmware', 'OVMF.fd', '--cloud-cert', 'oca.cert'], 2, /--policy 'five': expected a whole number/],
    [['vm', 'register', UUID, '--policy', '5', '--cpu-count', '0', '--firmware', 'OVMF.fd', '--cloud-cert', 'oca.cert'], 2, /--cpu-count '0'/],
    [['vm', 'register', UUID, '--policy', '5', '--firmware', 'nope.fd', '--cloud-cert', 'oca.cert'], 1, /cannot read the firmware nope.fd: no such file/],
    [
      ['vm', 'register', UUID, '--policy', '5', '--firmware', 'OVMF.fd', '--cloud-cert', 'OVMF.fd'],
      1,
      /--cloud-cert OVMF.fd is 14 bytes; an OCA certificate .* is 2084/,
    ],
    [
      ['vm', 'register', UUID, '--policy', '5', '--firmware', 'OVMF.fd', '--cloud-cert', 'oca.cert', '--append', 'x'],
      2,
      /--initrd and --append describe a direct kernel boot: give --kernel too/,
    ],
    [
      ['vm', 'register', UUID, '--policy', '5', '--firmware', 'OVMF.fd', '--cloud-cert', 'oca.cert', '--secret', 'disk.key'],
      2,
      /--secret 'disk.key': expected GUID=FILE/,
    ],
    [['vm', 'register', UUID, '--policy', '5', '--firmware-hash', 'abc', '--cloud-cert', 'oca.cert'], 2, /--firmware-hash 'abc' is not a SHA-256/],
    [['vm', 'register', UUID, 'OVMF.fd'], 1, /OVMF.fd is not JSON/],
  ])('refuses %j before sending anything (exit %d)', async (argv, code, message) => {
    const r = await kbctl(argv);
    expect(r.code).toBe(code);
    expect(r.err).toMatch(message);
    expect(seen).toHaveLength(0);
  });

  it('an OCA of the wrong kind is named: the PEK is not a cloud certificate', async () => {
    writeFileSync(join(dir, 'pek.cert'), decodeChain(platformChain(createPlatform({ name: 'x' }))).pek.raw);
    const r = await kbctl(['vm', 'register', UUID, '--policy', '5', '--firmware', 'OVMF.fd', '--cloud-cert', 'pek.cert']);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/pek.cert is not an OCA certificate/);
  });
});

describe('kbctl vm get | list | delete', () => {
  it('get prints the registration', async () => {
    answers = [{ status: 200, body: { uuid: UUID, policy: 5, secrets: [{ type: 'luks-passphrase' }] } }];
    const r = await kbctl(['vm', 'get', UUID]);
    expect(r.code).toBe(0);
    expect(seen[0]).toMatchObject({ method: 'GET', url: `/sev/v1/vm/${UUID}`, auth: `Bearer ${TOKEN}` });
    expect(JSON.parse(r.out)).toEqual({ uuid: UUID, policy: 5, secrets: [{ type: 'luks-passphrase' }] });
  });

  it('list follows next-page-token', async () => {
    answers = [
      { status: 200, body: { vms: [{ uuid: UUID, policy: 5, 'cpu-count': 2 }], 'next-page-token': 'p/2' } },
      { status: 200, body: { vms: [{ uuid: '00000000-0000-4000-8000-000000000001', policy: 1 }] } },
    ];
    const r = await kbctl(['vm', 'list']);
    expect(r.code).toBe(0);
    expect(seen.map((s) => s.url)).toEqual(['/sev/v1/vm', '/sev/v1/vm?page-token=p%2F2']);
    expect(r.out.split('\n')).toEqual([`${UUID}\tpolicy 0x5\t2 vCPU`, '00000000-0000-4000-8000-000000000001\tpolicy 0x1']);
  });

  it("delete sends DELETE; an unknown VM is the service's 404 message, exit 1", async () => {
    answers = [{ status: 204 }, { status: 404, body: { error: 'not-found', message: 'no such vm (ref 11)', ref: '11' } }];
    expect((await kbctl(['vm', 'delete', UUID])).out).toBe(`vm ${UUID} deleted`);
    const r = await kbctl(['vm', 'delete', UUID]);
    expect(r.code).toBe(1);
    expect(r.err).toBe('kbctl vm delete: no such vm (ref 11)');
    expect(seen.map((s) => s.method)).toEqual(['DELETE', 'DELETE']);
  });

  it('a refused token: exit 3 naming where it came from', async () => {
    answers = [{ status: 401, body: { error: 'unauthenticated', message: 'bad token (ref 1)', ref: '1' } }];
    const r = await kbctl(['vm', 'get', UUID]);
    expect(r.code).toBe(3);
    expect(r.err).toMatch(/refused the token from token: bad token \(ref 1\); check --token-file/);
  });

  it('a missing default token file says where the broker writes it; KB_ADMIN_TOKEN works without a file', async () => {
    const r = await kbctl(['vm', 'list'], { KB_ADMIN_TOKEN_FILE: undefined });
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/cannot read the token from \.kb-data\/admin\.token: no such file \(the broker writes it there/);
    answers = [{ status: 200, body: { vms: [] } }];
    expect((await kbctl(['vm', 'list'], { KB_ADMIN_TOKEN_FILE: undefined, KB_ADMIN_TOKEN: 'direct-token-0123456789' })).code).toBe(0);
    expect(seen.at(-1)!.auth).toBe('Bearer direct-token-0123456789');
  });

  it('--service anywhere on the line; a bad URL is a usage error; an unreachable service exit 4; a wrong base path is named', async () => {
    answers = [{ status: 200, body: { vms: [] } }];
    expect((await kbctl(['--service', base, 'vm', 'list'], { KB_SERVICE_URL: 'http://127.0.0.1:1/sev/v1' })).code).toBe(0);
    const bad = await kbctl(['vm', 'list', '--service', 'kbs.example.com']);
    expect(bad.code).toBe(2);
    expect(bad.err).toMatch(/--service kbs.example.com: not a URL/);
    const down = await kbctl(['vm', 'list'], { KB_SERVICE_URL: 'http://127.0.0.1:1/sev/v1' });
    expect(down.code).toBe(4);
    expect(down.err).toMatch(/cannot reach the attestation service at http:\/\/127\.0\.0\.1:1\/sev\/v1: connection refused/);
    answers = [{ status: 404, body: 'Not Found' }];
    const path = await kbctl(['vm', 'list', '--service', base.replace('/sev/v1', '')]);
    expect(path.err).toMatch(/\/vm not found \(HTTP 404\): is http:\/\/127\.0\.0\.1:\d+ the service's base URL/);
  });
});

describe('kbctl firmware add | list | delete', () => {
  it('add uploads the raw bytes and checks the SHA-256 the service answers', async () => {
    answers = [{ status: 201, body: { sha256: sha('firmware bytes') } }];
    const r = await kbctl(['firmware', 'add', 'OVMF.fd']);
    expect(r.code).toBe(0);
    expect(seen[0]).toMatchObject({ method: 'POST', url: '/sev/v1/firmware', type: 'application/octet-stream', auth: `Bearer ${TOKEN}` });
    expect(seen[0]!.body.toString()).toBe('firmware bytes');
    expect(r.out).toBe(`${sha('firmware bytes')}\tOVMF.fd (14 bytes)`);
    answers = [{ status: 201, body: { sha256: 'ee'.repeat(32) } }];
    const altered = await kbctl(['firmware', 'add', 'OVMF.fd']);
    expect(altered.code).toBe(1);
    expect(altered.err).toMatch(/stored the firmware as e{64}, but its SHA-256 here is/);
  });

  it('list and delete', async () => {
    answers = [{ status: 200, body: { firmware: [{ sha256: 'ab'.repeat(32), size: 4194304, 'added-at': '2026-12-06T08:00:00Z' }] } }, { status: 204 }];
    expect((await kbctl(['firmware', 'list'])).out).toBe(`${'ab'.repeat(32)}\t4194304 bytes\t2026-12-06T08:00:00Z`);
    expect((await kbctl(['firmware', 'delete', 'AB'.repeat(32)])).code).toBe(0);
    expect(seen.map((s) => `${s.method} ${s.url}`)).toEqual(['GET /sev/v1/firmware', `DELETE /sev/v1/firmware/${'ab'.repeat(32)}`]);
    const bad = await kbctl(['firmware', 'delete', 'OVMF.fd']);
    expect(bad.code).toBe(2);
    expect(bad.err).toMatch(/'OVMF.fd' is not a SHA-256/);
  });

  it('--tls-ca for an https:// service; without it the TLS failure names the flag (exit 4)', async () => {
    execFileSync(
      'openssl',
      [
        'req',
        '-x509',
        '-newkey',
        'ec',
        '-pkeyopt',
        'ec_paramgen_curve:P-256',
        '-nodes',
        '-days',
        '1',
        '-subj',
        '/CN=127.0.0.1',
        '-addext',
        'subjectAltName=IP:127.0.0.1',
        '-keyout',
        join(dir, 'tls.key'),
        '-out',
        join(dir, 'ca.pem'),
      ],
      { stdio: 'ignore' },
    );
    const tls = createHttpsServer({ key: readFileSync(join(dir, 'tls.key')), cert: readFileSync(join(dir, 'ca.pem')) }, handler);
    await new Promise<void>((r) => tls.listen(0, '127.0.0.1', r));
    const url = `https://127.0.0.1:${(tls.address() as { port: number }).port}/sev/v1`;
    try {
      answers = [{ status: 200, body: { firmware: [] } }];
      const ok = await kbctl(['firmware', 'list', '--service', url, '--tls-ca', 'ca.pem']);
      expect(ok.code).toBe(0);
      expect(ok.err).toBe('the firmware catalogue is empty');
      const no = await kbctl(['firmware', 'list', '--service', url]);
      expect(no.code).toBe(4);
      expect(no.err).toMatch(/TLS: .*give the service's CA with --tls-ca FILE/);
    } finally {
      await new Promise<void>((r) => tls.close(() => r()));
    }
  });

  it('--help on the groups and every command, with the service flags', async () => {
    for (const argv of [
      ['vm', '--help'],
      ['firmware', '--help'],
      ['vm', 'register', '--help'],
      ['vm', 'list', '--help'],
      ['firmware', 'add', '--help'],
    ]) {
      const r = await kbctl(argv);
      expect(r.code).toBe(0);
      if (argv.length === 3) expect(r.out).toContain('--service URL');
    }
    expect((await kbctl(['vm', 'register', '--help'])).out).toContain('--luks-passphrase-file');
    expect(seen).toHaveLength(0);
  });
});
