import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { createServer, connect, type Socket } from 'node:net';
import { join } from 'node:path';
import { createPlatform, platformChain, savePlatform } from '@kb/sev-sim';
import { SimulatedBackend } from '../src/backends/simulate';
import { LaunchError } from '../src/errors';
import { launch, type LaunchRequest } from '../src/launch';
import { runLaunchvm } from '../src/main';
import { startTestBroker, type TestBroker } from './support/broker';
import { captureIo, CONFIG_GUID, DISK_GUID, domainXml, writeGuestImage } from './support/guest';

/**
 * launchvm --simulate end to end: a real broker process trusting the simulated root, the simulated SEV host in
 * process. Every refusal path must destroy the guest and exit with its class's code.
 */
const platform = createPlatform({ name: 'sev-sim' });
const DISK_KEY = randomBytes(32);
const CONFIG = Buffer.from(JSON.stringify({ registry: 'example.org', token: randomBytes(8).toString('hex') }));
let dir: string;
let broker: TestBroker;
let image: ReturnType<typeof writeGuestImage>;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'launchvm-sim-'));
  savePlatform(platform, join(dir, 'platform'));
  image = writeGuestImage(dir);
  broker = await startTestBroker(dir, platform);
  await broker.putPolicy('default', { version: 1, allowedDigests: [image.digests.sev.toString('hex'), image.digests.seves2.toString('hex')] });
  await broker.putSecret('test/key/disk', DISK_KEY);
  await broker.putSecret('test/key/config', CONFIG);
}, 90_000);

afterAll(async () => {
  await broker?.stop();
  rmSync(dir, { recursive: true, force: true });
});

const secretArgs = ['--secret', `${DISK_GUID},key,test/key/disk`, '--secret', `${CONFIG_GUID.toUpperCase()},key,test/key/config,binary`];

function xmlFile(name: string, xml: string): string {
  writeFileSync(join(dir, name), xml);
  return name;
}

async function cli(args: string[]) {
  const c = captureIo(dir);
  const code = await runLaunchvm([...args, '--broker', broker.address, '--broker-timeout', '10'], c.io);
  return { code, ...c };
}

function request(xml: string, extra: Partial<LaunchRequest> = {}): LaunchRequest {
  return {
    xml,
    xmlDir: dir,
    broker: { address: broker.address, timeoutSeconds: 10 },
    secrets: [{ Guid: DISK_GUID, SecretType: 'key', Id: 'test/key/disk', Format: 'binary' }],
    digestOptions: { fpu: 'legacy' },
    ...extra,
  };
}

/** A TCP forwarder to the broker that can be cut, to lose the broker in the middle of a launch. */
async function tcpProxy(target: string): Promise<{ address: string; kill(): Promise<void> }> {
  const [host, port] = [target.slice(0, target.lastIndexOf(':')), Number(target.slice(target.lastIndexOf(':') + 1))];
  const sockets = new Set<Socket>();
  const server = createServer((client) => {
    const upstream = connect(port, host);
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('error', () => undefined);
      s.on('close', () => sockets.delete(s));
    }
    client.pipe(upstream).pipe(client);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const addr = server.address() as { port: number };
  return {
    address: `127.0.0.1:${addr.port}`,
    kill: () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  };
}

function expectNoSecretsIn(text: string): void {
  for (const form of [DISK_KEY.toString('hex'), DISK_KEY.toString('base64'), CONFIG.toString(), CONFIG.toString('base64')]) {
    expect(text).not.toContain(form);
  }
}

describe('launchvm --simulate', () => {
  it('launches an SEV-ES guest with kernel hashes: nine timed steps, both secrets reach the guest', async () => {
    const guestDir = join(dir, 'guest-es');
    const xml = xmlFile(
      'es.xml',
      domainXml({ name: 'es-guest', firmware: image.files.firmware, kernel: image.files.kernel, initrd: image.files.initrd, policy: 0x5 }),
    );
    const r = await cli([xml, '--simulate', '--sim-platform', 'platform', '--sim-guest-dir', guestDir, ...secretArgs]);
    expect(r.err).toEqual([]);
    expect(r.code).toBe(0);
    const steps = r.out.filter((l) => /^\[\d\/9\]/.test(l));
    expect(steps.map((l) => l.split(/\s+/)[1])).toEqual(['digest', 'bundle', 'session', 'define', 'start', 'measure', 'secret', 'inject', 'resume']);
    for (const l of steps) expect(l).toMatch(/^\[\d\/9\] \w+\s+\d+\.\d{3} s  /);
    expect(steps[0]).toContain(image.digests.seves2.toString('hex'));
    expect(steps[0]).toContain('SEV-ES, 2 vCPUs EPYC-v4, legacy VMSA FPU, kernel hashes');
    const coco = join(guestDir, 'sys/kernel/security/secrets/coco');
    expect(readFileSync(join(coco, DISK_GUID))).toEqual(DISK_KEY);
    expect(readFileSync(join(coco, CONFIG_GUID))).toEqual(CONFIG);
    expectNoSecretsIn(r.text());
  });

  it('launches a plain SEV guest from a pflash firmware with the digest given on the command line', async () => {
    const guestDir = join(dir, 'guest-sev');
    const xml = xmlFile(
      'sev.xml',
      domainXml({
        name: 'sev-guest',
        firmware: image.files.firmware,
        kernel: image.files.kernel,
        initrd: image.files.initrd,
        policy: 0x1,
        loaderType: 'pflash',
        vcpus: 4,
      }),
    );
    const r = await cli([
      xml,
      '--simulate',
      '--sim-platform',
      'platform',
      '--sim-guest-dir',
      guestDir,
      '--digest',
      image.digests.sev.toString('base64'),
      ...secretArgs.slice(0, 2),
    ]);
    expect(r.code).toBe(0);
    expect(r.out[0]).toContain('given with --digest');
    expect(readFileSync(join(guestDir, 'sys/kernel/security/secrets/coco', DISK_GUID))).toEqual(DISK_KEY);
  });

  it('refuses a launch from a firmware the owner did not measure: exit 8, guest destroyed, no secret', async () => {
    const backend = new SimulatedBackend({ platform, xmlDir: dir });
    const c = captureIo(dir);
    const xml = domainXml({ name: 'tampered', firmware: image.files.tampered, kernel: image.files.kernel, initrd: image.files.initrd, policy: 0x5 });
    const code = await launch(request(xml, { digest: image.digests.seves2 }), backend, c.io);
    expect(code).toBe(8);
    expect(c.err.join('\n')).toMatch(/\[7\/9\] secret\s+FAILED after .*attestation failed \(ref [0-9a-f]+\) \[PERMISSION_DENIED\]/);
    expect(c.err).toContain("launchvm: cleanup: destroyed simulated guest 'tampered'");
    expect(c.err.at(-1)).toMatch(/failed at step 'secret' \(exit 8: /);
    expect(backend.guest()?.runState).toBe('shutdown');
  });

  it('refuses a debuggable guest (policy 0x0) even though its digest is allowed: exit 8, guest destroyed', async () => {
    const backend = new SimulatedBackend({ platform, xmlDir: dir });
    const c = captureIo(dir);
    const xml = domainXml({ name: 'debug', firmware: image.files.firmware, kernel: image.files.kernel, initrd: image.files.initrd, policy: 0x0 });
    expect(await launch(request(xml), backend, c.io)).toBe(8);
    expect(backend.guest()?.runState).toBe('shutdown');
  });

  it('asks for a secret the broker does not hold: exit 8, guest destroyed', async () => {
    const backend = new SimulatedBackend({ platform, xmlDir: dir });
    const c = captureIo(dir);
    const xml = domainXml({ name: 'unknown-secret', firmware: image.files.firmware, kernel: image.files.kernel, initrd: image.files.initrd, policy: 0x5 });
    const req = request(xml, { secrets: [{ Guid: DISK_GUID, SecretType: 'key', Id: 'test/key/nope', Format: 'binary' }] });
    expect(await launch(req, backend, c.io)).toBe(8);
    expect(backend.guest()?.runState).toBe('shutdown');
  });

  it('a host chain under an untrusted root: GetBundle refused, exit 5, nothing was defined', async () => {
    writeFileSync(join(dir, 'other-chain.cert'), platformChain(createPlatform({ name: 'other' })));
    const xml = xmlFile('other.xml', domainXml({ name: 'other', firmware: image.files.firmware, policy: 0x1 }));
    const r = await cli([xml, '--simulate', '--cert-chain', 'other-chain.cert', ...secretArgs]);
    expect(r.code).toBe(5);
    expect(r.err.join('\n')).toMatch(/\[2\/9\] bundle\s+FAILED .*certificate chain not trusted/);
    expect(r.err.join('\n')).not.toContain('cleanup');
  });

  it('an unreachable broker: exit 4', async () => {
    const xml = xmlFile('unreachable.xml', domainXml({ name: 'unreachable', firmware: image.files.firmware, policy: 0x1 }));
    const c = captureIo(dir);
    const code = await runLaunchvm([xml, '--simulate', '--broker', '127.0.0.1:1', '--broker-timeout', '5', ...secretArgs], c.io);
    expect(code).toBe(4);
    expect(c.err.join('\n')).toMatch(/broker 127\.0\.0\.1:1 unreachable \(UNAVAILABLE\)/);
  });

  it('the broker becomes unreachable between GetBundle and GetSecret: the guest is destroyed, exit 4', async () => {
    const proxy = await tcpProxy(broker.address);
    const backend = new SimulatedBackend({ platform, xmlDir: dir });
    const start = backend.start.bind(backend);
    backend.start = async () => {
      await proxy.kill();
      return start();
    };
    const c = captureIo(dir);
    const xml = domainXml({ name: 'lost-broker', firmware: image.files.firmware, policy: 0x1 });
    const req = request(xml, { broker: { address: proxy.address, timeoutSeconds: 5 } });
    expect(await launch(req, backend, c.io)).toBe(4);
    expect(c.err.join('\n')).toMatch(/\[7\/9\] secret\s+FAILED .*unreachable/);
    expect(backend.guest()?.runState).toBe('shutdown');
  });

  it('interrupted while the guest is paused: destroyed, exit 130', async () => {
    const abort = new AbortController();
    const backend = new SimulatedBackend({ platform, xmlDir: dir });
    backend.launchInfo = () => {
      abort.abort();
      return new Promise(() => undefined);
    };
    const c = captureIo(dir);
    const xml = domainXml({ name: 'interrupted', firmware: image.files.firmware, policy: 0x1 });
    expect(await launch(request(xml), backend, c.io, abort.signal)).toBe(130);
    expect(c.err.join('\n')).toMatch(/\[6\/9\] measure\s+FAILED after .*interrupted/);
    expect(backend.guest()?.runState).toBe('shutdown');
  });

  it('a failed cleanup overrides the failure: exit 11, both reasons printed', async () => {
    const backend = new SimulatedBackend({ platform, xmlDir: dir });
    backend.inject = async () => {
      throw new LaunchError('INJECT', 'LAUNCH_SECRET: simulated failure');
    };
    backend.cleanup = async () => {
      throw new LaunchError('CLEANUP', 'destroy failed: simulated');
    };
    const c = captureIo(dir);
    const xml = domainXml({ name: 'stuck', firmware: image.files.firmware, kernel: image.files.kernel, initrd: image.files.initrd, policy: 0x1 });
    expect(await launch(request(xml), backend, c.io)).toBe(11);
    expect(c.err.join('\n')).toContain('[8/9] inject');
    expect(c.err.join('\n')).toContain('CLEANUP FAILED: destroy failed: simulated');
    backend.guest()?.destroy();
  });

  it.each([
    ['an NVRAM', (x: string) => x.replace('</os>', '<nvram>/var/lib/vars.fd</nvram></os>'), /<nvram>: its variables are never measured/],
    ['a kernel without kernel hashes', (x: string) => x.replace(" kernelHashes='yes'", ''), /set kernelHashes='yes'/],
    ['firmware autoselection', (x: string) => x.replace('<os>', "<os firmware='efi'>"), /lets libvirt pick the firmware/],
    [
      'a missing firmware file',
      (x: string) => x.replace(image.files.firmware, '/nonexistent/OVMF.fd'),
      /cannot read the firmware \(<loader>\) \/nonexistent\/OVMF.fd: no such file/,
    ],
    ['SEV-SNP', (x: string) => x.replace("type='sev'", "type='sev-snp'"), /type='sev-snp'> is not supported/],
    ['SEV-ES without a CPU model', (x: string) => x.replace(/<cpu .*<\/cpu>/, "<cpu mode='host-passthrough'/>"), /needs the guest vCPU signature/],
    ['broken XML', (x: string) => x.replace('</domain>', ''), /not well-formed: element <domain> is not closed/],
  ])('refuses %s before anything starts: exit 3', async (_what, edit, message) => {
    const base = domainXml({ name: 'config', firmware: image.files.firmware, kernel: image.files.kernel, initrd: image.files.initrd, policy: 0x5 });
    const xml = xmlFile('config.xml', edit(base));
    const r = await cli([xml, '--simulate', ...secretArgs]);
    expect(r.code).toBe(3);
    expect(r.err.join('\n')).toMatch(message);
    expect(r.err.join('\n')).not.toContain('cleanup');
  });

  it.each([
    // "at least one --secret" needs the XML read first (an <attestation> domain takes none): attestation.test.ts
    [['x.xml', '--simulate', '--secret', 'not-a-guid,key,a'], /is not a GUID/],
    [['x.xml', '--simulate', '--secret', `${DISK_GUID},password,a`], /type must be one of/],
    [['x.xml', '--secret', `${DISK_GUID},key,a`], /--cert-chain FILE is required/],
    [['x.xml', '--simulate', '--virsh', 'v', '--secret', `${DISK_GUID},key,a`], /--virsh applies to --backend libvirt only/],
    [['x.xml', '--simulate', '--digest', 'abcd', '--secret', `${DISK_GUID},key,a`], /--digest must be/],
    [['x.xml', '--simulate', '--cpu-family', '25', '--secret', `${DISK_GUID},key,a`], /go together/],
    [['--simulate', '--secret', `${DISK_GUID},key,a`], /domain XML file is missing/],
  ])('usage error %j: exit 2', async (args, message) => {
    const c = captureIo(dir);
    expect(await runLaunchvm(args, c.io)).toBe(2);
    expect(c.err.join('\n')).toMatch(message);
  });

  it('--help lists every backend option and the exit codes', async () => {
    const c = captureIo(dir);
    expect(await runLaunchvm(['--help'], c.io)).toBe(0);
    const help = c.out.join('\n');
    for (const s of ['--backend libvirt', '--backend qmp', '--simulate', '--connect', '--qemu-binary', '--sim-platform', '--digest', '--vmsa-fpu', '--cpu-sig'])
      expect(help).toContain(s);
    for (const code of [0, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 130]) expect(help).toMatch(new RegExp(`^\\s+${code}  `, 'm'));
    expect(existsSync(join(dir, 'x.xml'))).toBe(false);
  });
});
