import { createHash, randomBytes } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { createServer, type Server } from 'node:http';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { decodeChain } from '@kb/sev';
import { createPlatform, platformChain, savePlatform } from '@kb/sev-sim';
import { SimulatedBackend } from '../src/backends/simulate';
import { cpuIdFromSignature, localCpuId } from '../src/domain/host-cpu';
import { launch } from '../src/launch';
import { runLaunchvm } from '../src/main';
import { startAttestationStub, type AttestationStub } from './support/attestation-stub';
import { captureIo, CMDLINE, CONFIG_GUID, DISK_GUID, domainXml, writeGuestImage } from './support/guest';

/**
 * launchvm's attestation-service path (<attestation vmid service>) with the simulated host, against
 * support/attestation-stub.ts: a stand-in that speaks the contract and does the real SEV crypto, so these tests
 * prove what launchvm sends and does with the answers; the broker's own service is tested on its side.
 */
const platform = createPlatform({ name: 'sev-sim' });
const VMID = '57f669c2-c427-4132-bc7a-26f56b6a718c';
const DISK_KEY = randomBytes(32);
const CONFIG = Buffer.from('{"registry":"example.org"}');
let dir: string;
let stub: AttestationStub;
let image: ReturnType<typeof writeGuestImage>;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'launchvm-attest-'));
  savePlatform(platform, join(dir, 'platform'));
  image = writeGuestImage(dir);
  stub = await startAttestationStub();
  stub.vms.set(VMID, {
    policy: 0x5,
    firmware: readFileSync(image.files.firmware),
    kernelHashes: { kernel: readFileSync(image.files.kernel), initrd: readFileSync(image.files.initrd), cmdline: CMDLINE },
    vcpus: 2,
    vcpu: { type: 'EPYC-v4' },
    secrets: [
      { guid: DISK_GUID, data: DISK_KEY },
      { guid: CONFIG_GUID, data: CONFIG },
    ],
  });
});

afterAll(async () => {
  await stub?.stop();
  rmSync(dir, { recursive: true, force: true });
});

/** The owner's XML: no <policy>, no secrets: only where the registration is. */
function attestedXml(o: { name: string; firmware?: string; vmid?: string; service?: string; policy?: number }): string {
  const xml = domainXml({
    name: o.name,
    firmware: o.firmware ?? image.files.firmware,
    kernel: image.files.kernel,
    initrd: image.files.initrd,
    policy: o.policy ?? 0,
    extraLaunchSecurity: `\n    <attestation vmid='${o.vmid ?? VMID}' service='${o.service ?? stub.service}'/>`,
  });
  return o.policy === undefined ? xml.replace(/\n\s*<policy>[^<]*<\/policy>/, '') : xml;
}

async function cli(name: string, xml: string, extra: string[] = []) {
  writeFileSync(join(dir, name), xml);
  const c = captureIo(dir);
  const code = await runLaunchvm([name, '--simulate', '--sim-platform', 'platform', '--broker-timeout', '5', ...extra], c.io);
  return { code, ...c };
}

const since = (n: number) => stub.requests.slice(n);

describe('launchvm with <attestation> (simulated host)', () => {
  it('launches from the XML alone: nine timed steps, the exact /launch and /validate bodies, both secrets in the guest', async () => {
    const before = stub.requests.length;
    const guestDir = join(dir, 'guest-1');
    const r = await cli('attested.xml', attestedXml({ name: 'attested' }), ['--sim-guest-dir', guestDir]);
    expect(r.err).toEqual([]);
    expect(r.code).toBe(0);
    const steps = r.out.filter((l) => /^\[\d\/9\]/.test(l));
    expect(steps.map((l) => l.split(/\s+/)[1])).toEqual(['firmware', 'launch', 'session', 'define', 'start', 'measure', 'validate', 'inject', 'resume']);
    for (const l of steps) expect(l).toMatch(/^\[\d\/9\] \w+\s+\d+\.\d{3} s  /);
    const fwHash = createHash('sha256').update(readFileSync(image.files.firmware)).digest('hex');
    expect(steps[0]).toContain(`firmware sha256 ${fwHash}`);
    expect(r.out[1]).toContain(`policy from the registration, simulated SEV host`);
    expect(r.out[1]).toContain(`attestation service ${stub.service} (vm ${VMID})`);
    expect(steps[1]).toMatch(/launch id [0-9a-f-]{36}, policy 0x5$/);

    const [launchReq, validateReq] = since(before);
    expect(launchReq!.path).toBe(`/sev/v1/vm/${VMID}/launch`);
    const chain = platformChain(platform);
    expect(launchReq!.body).toEqual({
      pdh: decodeChain(chain).pdh.raw.toString('base64'),
      'cert-chain': chain.toString('base64'),
      'cpu-id': { family: 25, model: 1, stepping: 1 },
    });
    expect(validateReq!.path).toBe(`/sev/v1/vm/${VMID}/validate`);
    const v = validateReq!.body as Record<string, unknown>;
    expect(Object.keys(v).sort()).toEqual(['api-major', 'api-minor', 'build-id', 'cpu-count', 'firmware-hash', 'launch-id', 'measurement', 'policy']);
    expect(v).toMatchObject({ policy: 5, 'firmware-hash': fwHash, 'cpu-count': 2, 'launch-id': steps[1]!.match(/launch id (\S+),/)![1] });
    expect(Buffer.from(v.measurement as string, 'base64')).toHaveLength(48);
    for (const k of ['api-major', 'api-minor', 'build-id']) expect(Number.isInteger(v[k])).toBe(true);

    const coco = join(guestDir, 'sys/kernel/security/secrets/coco');
    expect(readFileSync(join(coco, DISK_GUID))).toEqual(DISK_KEY);
    expect(readFileSync(join(coco, CONFIG_GUID))).toEqual(CONFIG);
    const text = r.text();
    for (const s of [DISK_KEY.toString('hex'), DISK_KEY.toString('base64'), CONFIG.toString('base64')]) expect(text).not.toContain(s);
  });

  it('a reboot: the same XML launches again with a new launch session', async () => {
    const ids: string[] = [];
    for (const n of [1, 2]) {
      const r = await cli(`reboot-${n}.xml`, attestedXml({ name: 'reboot' }));
      expect(r.code).toBe(0);
      ids.push(r.out.find((l) => l.includes('] launch'))!.match(/launch id (\S+),/)![1]!);
    }
    expect(ids[0]).not.toBe(ids[1]);
  });

  it("the domain is defined with the session's <policy>, <dhCert> and <session>, and without <attestation>", async () => {
    const backend = new SimulatedBackend({ platform, xmlDir: dir });
    let defined = '';
    const define = backend.define.bind(backend);
    backend.define = (d, xml) => {
      defined = xml;
      return define(d, xml);
    };
    const c = captureIo(dir);
    const req = {
      xml: attestedXml({ name: 'defined' }),
      xmlDir: dir,
      broker: { address: 'unused:1', timeoutSeconds: 5 },
      secrets: [],
      digestOptions: { fpu: 'legacy' as const },
    };
    expect(await launch(req, backend, c.io)).toBe(0);
    expect(defined).not.toContain('<attestation');
    expect(defined).toMatch(
      /<policy>0x0005<\/policy>\s*<dhCert>[A-Za-z0-9+/=]{100,}<\/dhCert>\s*<session>[A-Za-z0-9+/=]{100,}<\/session>\s*<\/launchSecurity>/,
    );
    backend.guest()?.destroy();
  });

  it("a swapped firmware: /validate refused with the service's reference, exit 8, the guest destroyed", async () => {
    const backend = new SimulatedBackend({ platform, xmlDir: dir });
    const c = captureIo(dir);
    const req = {
      xml: attestedXml({ name: 'swapped', firmware: image.files.tampered }),
      xmlDir: dir,
      broker: { address: 'unused:1', timeoutSeconds: 5 },
      secrets: [],
      digestOptions: { fpu: 'legacy' as const },
    };
    expect(await launch(req, backend, c.io)).toBe(8);
    const err = c.err.join('\n');
    expect(err).toMatch(
      /\[7\/9\] validate\s+FAILED after .*the attestation service refused: attestation failed \(ref stub\d+\) \[attestation-failed, HTTP 403\]/,
    );
    expect(err).toContain("launchvm: cleanup: destroyed simulated guest 'swapped'");
    expect(backend.guest()?.runState).toBe('shutdown');
  });

  it('an unregistered VM: /launch refused, exit 5, nothing defined', async () => {
    const r = await cli('unknown.xml', attestedXml({ name: 'unknown', vmid: '00000000-0000-4000-8000-000000000000' }));
    expect(r.code).toBe(5);
    expect(r.err.join('\n')).toMatch(/\[2\/9\] launch\s+FAILED .*launch refused \(ref stub\d+\) \[not-found, HTTP 404\]/);
    expect(r.err.join('\n')).not.toContain('cleanup');
  });

  it('a <policy> in the XML that differs from the registration: exit 5 before anything is defined', async () => {
    const r = await cli('policy.xml', attestedXml({ name: 'policy', policy: 0x1 }));
    expect(r.code).toBe(5);
    expect(r.err.join('\n')).toMatch(/opened the session for policy 0x5, but the domain's <policy> is 0x1/);
  });

  it("a <policy> equal to the registration's is accepted", async () => {
    expect((await cli('policy-ok.xml', attestedXml({ name: 'policy-ok', policy: 0x5 }))).code).toBe(0);
  });

  it('an unreachable service: exit 4', async () => {
    const r = await cli('unreachable.xml', attestedXml({ name: 'unreachable', service: 'http://127.0.0.1:1/sev/v1' }));
    expect(r.code).toBe(4);
    expect(r.err.join('\n')).toMatch(/attestation service http:\/\/127\.0\.0\.1:1 unreachable: connection refused/);
  });

  it('a service URL without the base path: the 404 says what to check', async () => {
    const r = await cli('base.xml', attestedXml({ name: 'base', service: stub.service.replace('/sev/v1', '') }));
    expect(r.code).toBe(5);
    expect(r.err.join('\n')).toMatch(/no such endpoint/);
  });

  it.each([
    ['a vmid that is not a UUID', (x: string) => x.replace(VMID, 'my-vm'), /<attestation vmid='my-vm'> is not a UUID/],
    ['a service that is not a URL', (x: string) => x.replace(/service='[^']*'/, "service='kbs.example.com'"), /is not a URL/],
    ['an ftp:// service', (x: string) => x.replace(/service='[^']*'/, "service='ftp://kbs.example.com/sev/v1'"), /only http:\/\/ and https:\/\//],
    [
      'two <attestation> elements',
      (x: string) => x.replace('<attestation', `<attestation vmid='${VMID}' service='http://a/'/><attestation`),
      /2 <launchSecurity><attestation> elements/,
    ],
  ])('refuses %s before contacting anything: exit 3', async (_what, edit, message) => {
    const before = stub.requests.length;
    const r = await cli('bad.xml', edit(attestedXml({ name: 'bad' })));
    expect(r.code).toBe(3);
    expect(r.err.join('\n')).toMatch(message);
    expect(stub.requests.length).toBe(before);
  });

  it.each([
    [['--secret', `${DISK_GUID},key,a`], /decides the secrets and the expected digest: drop --secret/],
    [['--digest', 'ab'.repeat(32)], /drop --digest/],
    [['--broker', '127.0.0.1:44444'], /--broker is for keybroker gRPC launches/],
  ])('refuses gRPC-only flags %j: exit 2', async (extra, message) => {
    const before = stub.requests.length;
    const r = await cli('flags.xml', attestedXml({ name: 'flags' }), extra);
    expect(r.code).toBe(2);
    expect(r.err.join('\n')).toMatch(message);
    expect(stub.requests.length).toBe(before);
  });

  it('a domain without <attestation> still needs --secret; --tls-ca is for https services: exit 2', async () => {
    const plain = domainXml({ name: 'plain', firmware: image.files.firmware, policy: 0x1 });
    expect((await cli('plain.xml', plain)).err.join('\n')).toMatch(/request at least one secret .*or launch a domain whose <launchSecurity> has <attestation>/);
    const r = await cli('plain.xml', plain, ['--secret', `${DISK_GUID},key,a`, '--tls-ca', 'ca.pem']);
    expect(r.code).toBe(2);
    expect(r.err.join('\n')).toMatch(/--tls-ca is for a domain with <attestation/);
  });
});

describe('launchvm with an https:// attestation service', () => {
  let tls: AttestationStub;
  beforeAll(async () => {
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
    tls = await startAttestationStub({ key: readFileSync(join(dir, 'tls.key'), 'utf8'), cert: readFileSync(join(dir, 'ca.pem'), 'utf8') });
    tls.vms.set(VMID, { ...stub.vms.get(VMID)! });
  });
  afterAll(() => tls?.stop());

  it('trusts the service with --tls-ca', async () => {
    const r = await cli('tls.xml', attestedXml({ name: 'tls', service: tls.service }), ['--tls-ca', 'ca.pem']);
    expect(r.err).toEqual([]);
    expect(r.code).toBe(0);
    expect(tls.requests.map((q) => q.path)).toEqual([`/sev/v1/vm/${VMID}/launch`, `/sev/v1/vm/${VMID}/validate`]);
  });

  it('without --tls-ca the private CA is not trusted: exit 4 naming the flag', async () => {
    const r = await cli('tls-no-ca.xml', attestedXml({ name: 'tls-no-ca', service: tls.service }));
    expect(r.code).toBe(4);
    expect(r.err.join('\n')).toMatch(/unreachable: TLS: .*give the service's CA with --tls-ca FILE/);
  });
});

describe('what launchvm makes of odd answers (a raw loopback server)', () => {
  let server: Server;
  let url: string;
  let answer: { status: number; body: string } = { status: 200, body: '{}' };
  beforeAll(async () => {
    server = createServer((req, res) => {
      req.resume();
      req.on('end', () => {
        res.writeHead(answer.status, { 'content-type': 'application/json' });
        res.end(answer.body);
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    url = `http://127.0.0.1:${(server.address() as { port: number }).port}/sev/v1`;
  });
  afterAll(() => new Promise<void>((r) => server.close(() => r())));

  it.each([
    [
      { status: 503, body: '{"error":"unavailable","message":"try later (ref 9)","ref":"9"}' },
      4,
      /the attestation service refused: try later \(ref 9\) \[unavailable, HTTP 503\]/,
    ],
    [{ status: 200, body: 'not json' }, 5, /answered 200 without a JSON object/],
    [{ status: 200, body: '{"session":"AAAA","owner-cert":"AAAA","launch-id":"x"}' }, 5, /launch answer has no valid "policy"/],
    [{ status: 200, body: '{"session":"not base64!","owner-cert":"AAAA","launch-id":"x","policy":5}' }, 5, /launch answer has no base64 "session"/],
    [{ status: 500, body: 'Internal Server Error' }, 5, /the attestation service refused: Internal Server Error \[HTTP 500\]/],
  ])('%j: exit %d, nothing defined', async (a, code, message) => {
    answer = a;
    const r = await cli('odd.xml', attestedXml({ name: 'odd', service: url }));
    expect(r.code).toBe(code);
    expect(r.err.join('\n')).toMatch(message);
    expect(r.err.join('\n')).not.toContain('cleanup');
  });
});

describe('the host CPU sent as cpu-id', () => {
  it('decodes CPUID(1).EAX signatures (Milan, Rome, Genoa) with the extended family and model', () => {
    expect(cpuIdFromSignature(0xa00f11)).toEqual({ family: 25, model: 1, stepping: 1 });
    expect(cpuIdFromSignature(0x830f10)).toEqual({ family: 23, model: 49, stepping: 0 });
    expect(cpuIdFromSignature(0xa10f11)).toEqual({ family: 25, model: 17, stepping: 1 });
  });

  it('reads family/model/stepping from a /proc/cpuinfo file, and nothing from a missing one', () => {
    writeFileSync(
      join(dir, 'cpuinfo'),
      'processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 25\nmodel\t\t: 1\nmodel name\t: AMD EPYC 7763\nstepping\t: 1\n\nprocessor\t: 1\ncpu family\t: 99\n',
    );
    expect(localCpuId(join(dir, 'cpuinfo'))).toEqual({ family: 25, model: 1, stepping: 1 });
    expect(localCpuId(join(dir, 'nope'))).toBeUndefined();
  });
});
