import { execFileSync, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createPlatform, savePlatform } from '@kb/sev-sim';
import { parseDomState, parseHostCpuSignature, parseLaunchSecInfo } from '../src/backends/libvirt/output';
import { localCpuId } from '../src/domain/host-cpu';
import { Virsh, VirshError, virshErrorReason } from '../src/backends/libvirt/virsh';
import { runLaunchvm } from '../src/main';
import { startAttestationStub } from './support/attestation-stub';
import { ROOT, startTestBroker, type TestBroker } from './support/broker';
import { captureIo, CMDLINE, DISK_GUID, domainXml, writeGuestImage } from './support/guest';

/**
 * The libvirt backend. Real: virsh and libvirt's test driver (test:///default, no daemon) for define / start /
 * domstate / resume / destroy / undefine, and the test driver's own error messages. Not libvirt: the SEV side,
 * which the test driver lacks — support/fake-virsh.ts (read its header) answers domlaunchsecinfo and
 * domsetlaunchsecstate from a simulated QEMU process, or replays recorded output from fixtures/virsh.
 */
const FIXTURES = join(__dirname, 'fixtures/virsh');
const REAL_VIRSH = (() => {
  const r = spawnSync('sh', ['-c', 'command -v virsh'], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error("these tests need the real virsh with libvirt's test driver: apt-get install libvirt-clients");
  return r.stdout.trim();
})();
const platform = createPlatform({ name: 'sev-sim' });
const DISK_KEY = randomBytes(32);
let dir: string;
let bundle: string;
let broker: TestBroker;
let image: ReturnType<typeof writeGuestImage>;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'launchvm-libvirt-'));
  savePlatform(platform, join(dir, 'platform'));
  savePlatform(createPlatform({ name: 'other' }), join(dir, 'other-platform'));
  image = writeGuestImage(dir);
  // One process per virsh call: bundled, it starts in a fraction of tsx's time.
  bundle = join(dir, 'fake-virsh.cjs');
  execFileSync(join(ROOT, 'node_modules/.bin/esbuild'), [
    join(__dirname, 'support/fake-virsh.ts'),
    '--bundle',
    '--platform=node',
    '--format=cjs',
    '--target=node20',
    `--outfile=${bundle}`,
    '--log-level=warning',
  ]);
  broker = await startTestBroker(dir, platform);
  await broker.putPolicy('default', { version: 1, allowedDigests: [image.digests.seves2.toString('hex')] });
  await broker.putSecret('test/key/disk', DISK_KEY);
}, 90_000);

afterAll(async () => {
  await broker?.stop();
  rmSync(dir, { recursive: true, force: true });
});

let scenarios = 0;
/** A virsh for one scenario: a fresh state dir (so a fresh test-driver state) and its settings. */
function fakeVirsh(settings: Record<string, string> = {}) {
  const state = join(dir, `virsh-${++scenarios}`);
  mkdirSync(state);
  const envFile = join(state, 'env.json');
  writeFileSync(
    envFile,
    JSON.stringify({
      FAKE_VIRSH_STATE: state,
      FAKE_VIRSH_REAL: REAL_VIRSH,
      FAKE_VIRSH_SIM_QEMU: join(ROOT, 'libs/sev-host-sim/bin/sim-qemu'),
      FAKE_VIRSH_PLATFORM: join(dir, 'platform'),
      ...settings,
    }),
  );
  const bin = join(state, 'virsh');
  writeFileSync(bin, `#!/bin/sh\nFAKE_VIRSH_ENV_FILE='${envFile}' exec '${process.execPath}' '${bundle}' "$@"\n`);
  chmodSync(bin, 0o755);
  const virsh = (...args: string[]) => spawnSync(bin, ['-c', 'test:///default', ...args], { encoding: 'utf8' });
  return { bin, state, virsh };
}

async function libvirtLaunch(v: { bin: string }, name: string, opts: { firmware?: string; extra?: string[]; xml?: string } = {}) {
  const xml = `${name}.xml`;
  writeFileSync(
    join(dir, xml),
    opts.xml ?? domainXml({ name, firmware: opts.firmware ?? image.files.firmware, kernel: image.files.kernel, initrd: image.files.initrd, policy: 0x5 }),
  );
  const c = captureIo(dir);
  const code = await runLaunchvm(
    [
      xml,
      '-c',
      'test:///default',
      '--virsh',
      v.bin,
      '--cert-chain',
      'platform/cert_chain.cert',
      '--broker',
      broker.address,
      '--secret',
      `${DISK_GUID},key,test/key/disk`,
      ...(opts.extra ?? []),
    ],
    c.io,
  );
  return { code, ...c };
}

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};
const qemuPid = (state: string, name: string) => Number(readFileSync(join(state, `${name}.pid`), 'utf8'));

describe('virsh output and errors', () => {
  it('the real test driver: domstate, and its errors turned into one line', async () => {
    const virsh = new Virsh(REAL_VIRSH, 'test:///default');
    expect(parseDomState(await virsh.run(['domstate', 'test']))).toBe('running');
    await expect(virsh.run(['domstate', 'nosuch'])).rejects.toMatchObject({ reason: "failed to get domain 'nosuch'" });
    // The test driver has no SEV: this is libvirt's real answer to domlaunchsecinfo there.
    const e = (await virsh.run(['domlaunchsecinfo', 'test']).catch((x: unknown) => x)) as VirshError;
    expect(e).toBeInstanceOf(VirshError);
    expect(e.reason).toMatch(/^Unable to get launch security parameters: .+/);
    await expect(new Virsh(join(dir, 'no-virsh'), 'test:///default').run(['list'])).rejects.toThrow(/not found: install libvirt-clients/);
  });

  it('the real test driver refuses start --paused (why fake-virsh starts and then suspends)', () => {
    writeFileSync(
      join(dir, 'plain.xml'),
      "<domain type='test'><name>plain</name><memory>1048576</memory><vcpu>1</vcpu><os><type arch='x86_64'>hvm</type></os></domain>",
    );
    const r = spawnSync(REAL_VIRSH, ['-c', 'test:///default', `define ${join(dir, 'plain.xml')} ; start --paused plain`], {
      encoding: 'utf8',
      env: { ...process.env, LC_ALL: 'C' },
    });
    expect(virshErrorReason(r.stderr)).toMatch(/^Failed to start domain '?plain'?: unsupported flags \(0x1\) in function testDomainCreateWithFlags$/);
  });

  it("reads the host CPU signature from virsh capabilities (libvirt >= 7.1), and nothing from the test driver's", async () => {
    const caps =
      "<capabilities><host><uuid>x</uuid><cpu><arch>x86_64</arch><model>EPYC-Milan</model><vendor>AMD</vendor><signature family='25' model='1' stepping='1'/></cpu></host></capabilities>";
    expect(parseHostCpuSignature(caps)).toEqual({ family: 25, model: 1, stepping: 1 });
    expect(parseHostCpuSignature(caps.replace(" stepping='1'", ''))).toBeUndefined();
    expect(parseHostCpuSignature('not xml')).toBeUndefined();
    expect(parseHostCpuSignature(await new Virsh(REAL_VIRSH, 'test:///default').run(['capabilities']))).toBeUndefined();
  });

  it('parses recorded domlaunchsecinfo output', () => {
    const info = parseLaunchSecInfo(readFileSync(join(FIXTURES, 'domlaunchsecinfo-other-launch.txt'), 'utf8'));
    expect(info).toMatchObject({ apiMajor: 1, apiMinor: 55, buildId: 21, policy: 5 });
    expect(Buffer.from(info.measurement, 'base64')).toHaveLength(48);
    expect(() => parseLaunchSecInfo(readFileSync(join(FIXTURES, 'domlaunchsecinfo-libvirt7.txt'), 'utf8'))).toThrow(/libvirt older than 8\.0/);
    expect(() => parseLaunchSecInfo('sev-snp-policy : 196608\n')).toThrow(/SEV-SNP/);
    expect(() => parseLaunchSecInfo('sev-measurement: x\nsev-api-major  : one\nsev-api-minor  : 1\nsev-build-id   : 1\nsev-policy     : 1\n')).toThrow(
      /sev-api-major|apiMajor/,
    );
    expect(parseDomState('paused (user)\n\n')).toBe('paused');
    expect(virshErrorReason("error: Failed to start domain 't'\nerror: unsupported flags (0x1) in function testDomainCreateWithFlags\n")).toBe(
      "Failed to start domain 't': unsupported flags (0x1) in function testDomainCreateWithFlags",
    );
  });
});

describe('launchvm --backend libvirt (real virsh + test driver; SEV side simulated)', () => {
  it('defines, starts paused, reads domlaunchsecinfo, injects with domsetlaunchsecstate, resumes', async () => {
    const v = fakeVirsh();
    const r = await libvirtLaunch(v, 'lv-ok');
    expect(r.err).toEqual([]);
    expect(r.code).toBe(0);
    expect(r.out.find((l) => l.includes('] start'))).toMatch(/paused$/);
    expect(r.out.find((l) => l.includes('] resume'))).toMatch(/running$/);
    expect(v.virsh('domstate', 'lv-ok').stdout.trim()).toBe('running');
    // what the domain was defined with carries the broker's GODH and session
    const defined = readFileSync(join(v.state, 'lv-ok.xml'), 'utf8');
    expect(defined).toMatch(/<dhCert>[A-Za-z0-9+/=]{100,}<\/dhCert>\s*<session>[A-Za-z0-9+/=]{100,}<\/session>\s*<\/launchSecurity>/);
    expect(readFileSync(join(v.state, 'lv-ok-guest/sys/kernel/security/secrets/coco', DISK_GUID))).toEqual(DISK_KEY);
    const pid = qemuPid(v.state, 'lv-ok');
    expect(alive(pid)).toBe(true);
    expect(v.virsh('destroy', 'lv-ok').status).toBe(0);
  }, 60_000);

  it('a launch the broker refuses (host swapped the firmware): destroyed and undefined, exit 8', async () => {
    const v = fakeVirsh();
    const r = await libvirtLaunch(v, 'lv-tampered', { firmware: image.files.tampered, extra: ['--digest', image.digests.seves2.toString('hex')] });
    expect(r.code).toBe(8);
    expect(r.err).toContain("launchvm: cleanup: destroyed domain 'lv-tampered'; undefined domain 'lv-tampered'");
    expect(v.virsh('domstate', 'lv-tampered').stderr).toContain("failed to get domain 'lv-tampered'");
    for (let i = 0; i < 50 && alive(qemuPid(v.state, 'lv-tampered')); i++) await new Promise((res) => setTimeout(res, 100));
    expect(alive(qemuPid(v.state, 'lv-tampered'))).toBe(false);
  }, 60_000);

  it('recorded output of libvirt < 8.0 (no API version): exit 7, destroyed and undefined', async () => {
    const v = fakeVirsh({ FAKE_VIRSH_LAUNCHSECINFO: join(FIXTURES, 'domlaunchsecinfo-libvirt7.txt') });
    const r = await libvirtLaunch(v, 'lv-old');
    expect(r.code).toBe(7);
    expect(r.err.join('\n')).toMatch(/\[6\/9\] measure\s+FAILED .*libvirt older than 8\.0/);
    expect(r.err).toContain("launchvm: cleanup: destroyed domain 'lv-old'; undefined domain 'lv-old'");
  }, 60_000);

  it('a recorded measurement of another launch: the broker refuses, exit 8, destroyed and undefined', async () => {
    const v = fakeVirsh({ FAKE_VIRSH_LAUNCHSECINFO: join(FIXTURES, 'domlaunchsecinfo-other-launch.txt') });
    const r = await libvirtLaunch(v, 'lv-replay');
    expect(r.code).toBe(8);
    expect(r.err).toContain("launchvm: cleanup: destroyed domain 'lv-replay'; undefined domain 'lv-replay'");
  }, 60_000);

  it('resume fails: exit 10, destroyed and undefined', async () => {
    const v = fakeVirsh({
      FAKE_VIRSH_FAIL: 'resume',
      FAKE_VIRSH_FAIL_MESSAGE:
        "Failed to resume domain 'lv-resume'\ninternal error: unable to execute QEMU command 'cont': Resetting the Virtual Machine is required",
    });
    const r = await libvirtLaunch(v, 'lv-resume');
    expect(r.code).toBe(10);
    expect(r.err.join('\n')).toContain(
      "virsh resume lv-resume failed: Failed to resume domain 'lv-resume': internal error: unable to execute QEMU command 'cont'",
    );
    expect(v.virsh('domstate', 'lv-resume').status).not.toBe(0);
  }, 60_000);

  it("QEMU refuses the session at start (another host's PDH): libvirt's error, exit 6, undefined", async () => {
    const v = fakeVirsh({ FAKE_VIRSH_PLATFORM: join(dir, 'other-platform') });
    const r = await libvirtLaunch(v, 'lv-wronghost');
    expect(r.code).toBe(6);
    expect(r.err.join('\n')).toMatch(
      /virsh start --paused lv-wronghost failed: Failed to start domain 'lv-wronghost': internal error: qemu unexpectedly closed the monitor: sim-qemu: sev_launch_start: LAUNCH_START/,
    );
    expect(r.err.join('\n')).toMatch(/cleanup: domain 'lv-wronghost' was not running; undefined domain 'lv-wronghost'/);
  }, 60_000);

  it('a domain of that name already exists: exit 3, the existing domain untouched', async () => {
    const v = fakeVirsh();
    const r = await libvirtLaunch(v, 'test', {
      xml: domainXml({ name: 'test', firmware: image.files.firmware, kernel: image.files.kernel, initrd: image.files.initrd, policy: 0x5 }),
    });
    expect(r.code).toBe(3);
    expect(r.err.join('\n')).toContain("a domain named 'test' already exists (running)");
    expect(v.virsh('domstate', 'test').stdout.trim()).toBe('running');
  }, 30_000);

  it('the real test driver alone: what virsh says reaches the user, exit 6, cleanup copes with a vanished domain', async () => {
    // Each real virsh call is a fresh test-driver connection; the define is lost, and launchvm says what virsh said.
    const r = await libvirtLaunch({ bin: REAL_VIRSH }, 'lv-plain');
    expect(r.code).toBe(6);
    expect(r.err.join('\n')).toMatch(/\[5\/9\] start\s+FAILED .*virsh start --paused lv-plain failed: failed to get domain 'lv-plain'/);
    expect(r.err).toContain("launchvm: cleanup: domain 'lv-plain' no longer exists; domain 'lv-plain' is not defined");
    expect(existsSync(join(dir, 'lv-plain.xml'))).toBe(true);
  }, 30_000);
});

describe('launchvm --backend libvirt with <attestation> (contract stub: support/attestation-stub.ts)', () => {
  const VMID = '9b2d6c1e-3f4a-4b5c-8d6e-7f8091a2b3c4';
  let stub: Awaited<ReturnType<typeof startAttestationStub>>;
  beforeAll(async () => {
    stub = await startAttestationStub();
    stub.vms.set(VMID, {
      policy: 0x5,
      firmware: readFileSync(image.files.firmware),
      kernelHashes: { kernel: readFileSync(image.files.kernel), initrd: readFileSync(image.files.initrd), cmdline: CMDLINE },
      vcpus: 2,
      vcpu: { type: 'EPYC-v4' },
      secrets: [{ guid: DISK_GUID, data: DISK_KEY }],
    });
  });
  afterAll(() => stub?.stop());

  async function attestedLaunch(v: { bin: string }, name: string, firmware = image.files.firmware) {
    const xml = domainXml({
      name,
      firmware,
      kernel: image.files.kernel,
      initrd: image.files.initrd,
      policy: 0,
      extraLaunchSecurity: `\n    <attestation vmid='${VMID}' service='${stub.service}'/>`,
    }).replace(/\n\s*<policy>[^<]*<\/policy>/, '');
    writeFileSync(join(dir, `${name}.xml`), xml);
    const c = captureIo(dir, { KB_HOST_CERT_CHAIN: 'platform/cert_chain.cert' });
    const code = await runLaunchvm([`${name}.xml`, '-c', 'test:///default', '--virsh', v.bin], c.io);
    return { code, ...c };
  }

  it('launches from the XML alone (host chain from KB_HOST_CERT_CHAIN): defined with the session and its policy, secret in the guest', async () => {
    const v = fakeVirsh();
    const before = stub.requests.length;
    const r = await attestedLaunch(v, 'lv-attested');
    expect(r.err).toEqual([]);
    expect(r.code).toBe(0);
    // the test driver's capabilities name no CPU signature: this machine's /proc/cpuinfo (omitted if it has none)
    expect((stub.requests[before]!.body as Record<string, unknown>)['cpu-id']).toEqual(localCpuId());
    expect(r.out.filter((l) => /^\[\d\/9\]/.test(l)).map((l) => l.split(/\s+/)[1])).toEqual([
      'firmware',
      'launch',
      'session',
      'define',
      'start',
      'measure',
      'validate',
      'inject',
      'resume',
    ]);
    const defined = readFileSync(join(v.state, 'lv-attested.xml'), 'utf8');
    expect(defined).not.toContain('<attestation');
    expect(defined).toMatch(/<policy>0x0005<\/policy>\s*<dhCert>[A-Za-z0-9+/=]{100,}<\/dhCert>\s*<session>[A-Za-z0-9+/=]{100,}<\/session>/);
    expect(readFileSync(join(v.state, 'lv-attested-guest/sys/kernel/security/secrets/coco', DISK_GUID))).toEqual(DISK_KEY);
    expect(v.virsh('domstate', 'lv-attested').stdout.trim()).toBe('running');
    expect(v.virsh('destroy', 'lv-attested').status).toBe(0);
  }, 60_000);

  it('a swapped firmware: /validate refused, exit 8, destroyed and undefined', async () => {
    const v = fakeVirsh();
    const r = await attestedLaunch(v, 'lv-attested-swap', image.files.tampered);
    expect(r.code).toBe(8);
    expect(r.err.join('\n')).toMatch(/\[7\/9\] validate\s+FAILED .*attestation failed \(ref stub\d+\)/);
    expect(r.err).toContain("launchvm: cleanup: destroyed domain 'lv-attested-swap'; undefined domain 'lv-attested-swap'");
  }, 60_000);
});
