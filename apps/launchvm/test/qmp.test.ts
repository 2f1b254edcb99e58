import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createPlatform, savePlatform } from '@kb/sev-sim';
import { QmpClient } from '../src/backends/qmp/client';
import { runLaunchvm } from '../src/main';
import { startAttestationStub } from './support/attestation-stub';
import { ROOT, startTestBroker, type TestBroker } from './support/broker';
import { captureIo, CMDLINE, DISK_GUID, domainXml, writeGuestImage } from './support/guest';

/**
 * The QMP backend against the simulated QEMU as a real process (libs/sev-host-sim/bin/sim-qemu): launchvm spawns it
 * with the command line it builds from the domain XML and drives it over a real unix socket, as it would drive
 * qemu-system-x86_64. The broker is a real process too.
 */
const SIM_QEMU = join(ROOT, 'libs/sev-host-sim/bin/sim-qemu');
const platform = createPlatform({ name: 'sev-sim' });
const DISK_KEY = randomBytes(32);
let dir: string;
let broker: TestBroker;
let image: ReturnType<typeof writeGuestImage>;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'launchvm-qmp-'));
  savePlatform(platform, join(dir, 'platform'));
  savePlatform(createPlatform({ name: 'other' }), join(dir, 'other-platform'));
  image = writeGuestImage(dir);
  broker = await startTestBroker(dir, platform);
  await broker.putPolicy('default', { version: 1, allowedDigests: [image.digests.seves2.toString('hex')] });
  await broker.putSecret('test/key/disk', DISK_KEY);
}, 90_000);

afterAll(async () => {
  await broker?.stop();
  rmSync(dir, { recursive: true, force: true });
});

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

async function qmpLaunch(name: string, opts: { firmware?: string; platformDir?: string; extra?: string[]; qemu?: string } = {}) {
  const xml = `${name}.xml`;
  writeFileSync(
    join(dir, xml),
    domainXml({ name, firmware: opts.firmware ?? image.files.firmware, kernel: image.files.kernel, initrd: image.files.initrd, policy: 0x5 }),
  );
  const c = captureIo(dir);
  const code = await runLaunchvm(
    [
      xml,
      '--backend',
      'qmp',
      '--qemu-binary',
      opts.qemu ?? SIM_QEMU,
      `--qemu-arg=--platform`,
      `--qemu-arg=${opts.platformDir ?? join(dir, 'platform')}`,
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
  return { code, ...c, pid: Number(/pid (\d+)/.exec(c.text())?.[1]) };
}

describe('launchvm --backend qmp (simulated QEMU process)', () => {
  it('spawns QEMU paused, measures, injects over QMP and leaves the guest running with its secret', async () => {
    const runDir = join(dir, 'run-ok');
    const guestDir = join(dir, 'guest-ok');
    const r = await qmpLaunch('qmp-ok', { extra: ['--run-dir', runDir, '--qemu-arg=--guest-secrets-dir', `--qemu-arg=${guestDir}`] });
    expect(r.err).toEqual([]);
    expect(r.code).toBe(0);
    expect(r.out.find((l) => l.includes('] start'))).toMatch(/paused \(prelaunch\), pid \d+/);
    expect(r.out.find((l) => l.includes('] inject'))).toContain('sev-inject-launch-secret');
    expect(readFileSync(join(guestDir, 'sys/kernel/security/secrets/coco', DISK_GUID))).toEqual(DISK_KEY);
    expect(alive(r.pid)).toBe(true);
    // the guest outlives launchvm; its monitor is where launchvm said
    const q = await QmpClient.connect(join(runDir, 'qmp.sock'));
    expect(await q.execute('query-status')).toMatchObject({ running: true, status: 'running' });
    expect(await q.execute('query-sev')).toMatchObject({ state: 'running', policy: 5 });
    await q.execute('quit');
    q.close();
    for (let i = 0; i < 100 && alive(r.pid); i++) await new Promise((res) => setTimeout(res, 50));
    expect(alive(r.pid)).toBe(false);
    expect(r.text()).not.toContain(DISK_KEY.toString('base64'));
  }, 60_000);

  it('a firmware the owner did not measure: the broker refuses, QEMU is stopped, its run dir removed, exit 8', async () => {
    const before = new Set(readdirSync(tmpdir()));
    const r = await qmpLaunch('qmp-tampered', { firmware: image.files.tampered, extra: ['--digest', image.digests.seves2.toString('hex')] });
    expect(r.code).toBe(8);
    expect(r.err.join('\n')).toMatch(/\[7\/9\] secret\s+FAILED .*attestation failed/);
    expect(r.err.join('\n')).toMatch(/cleanup: stopped QEMU \(pid \d+\)/);
    expect(alive(r.pid)).toBe(false);
    expect(readdirSync(tmpdir()).filter((d) => d.startsWith('launchvm-qmp-tampered-') && !before.has(d))).toEqual([]);
  }, 60_000);

  it('LAUNCH_START refused (a host whose PDH is not the one the bundle was made for): QEMU exits, exit 6 with its message', async () => {
    const r = await qmpLaunch('qmp-wrong-host', { platformDir: join(dir, 'other-platform') });
    expect(r.code).toBe(6);
    expect(r.err.join('\n')).toMatch(
      /\[5\/9\] start\s+FAILED .*QEMU exited \(1\) before its monitor came up: sim-qemu: sev_launch_start: LAUNCH_START ret=-1 fw_error=\d+/,
    );
  }, 60_000);

  it('a QEMU binary that does not exist: exit 6', async () => {
    const r = await qmpLaunch('qmp-nobinary', { qemu: join(dir, 'no-such-qemu') });
    expect(r.code).toBe(6);
    expect(r.err.join('\n')).toContain(`QEMU binary '${join(dir, 'no-such-qemu')}' not found`);
    expect(existsSync(join(dir, 'run-ok', 'qmp.sock'))).toBe(false);
  }, 30_000);
});

describe('launchvm --backend qmp with <attestation> (contract stub: support/attestation-stub.ts)', () => {
  it("spawns QEMU with the session and the registration's policy, validates, injects: the secret reaches the guest", async () => {
    const stub = await startAttestationStub();
    const vmid = '3e4f5a6b-7c8d-4e9f-a0b1-c2d3e4f5a6b7';
    stub.vms.set(vmid, {
      policy: 0x5,
      firmware: readFileSync(image.files.firmware),
      kernelHashes: { kernel: readFileSync(image.files.kernel), initrd: readFileSync(image.files.initrd), cmdline: CMDLINE },
      vcpus: 2,
      vcpu: { type: 'EPYC-v4' },
      secrets: [{ guid: DISK_GUID, data: DISK_KEY }],
    });
    try {
      const xml = domainXml({
        name: 'qmp-attested',
        firmware: image.files.firmware,
        kernel: image.files.kernel,
        initrd: image.files.initrd,
        policy: 0,
        extraLaunchSecurity: `\n    <attestation vmid='${vmid}' service='${stub.service}'/>`,
      }).replace(/\n\s*<policy>[^<]*<\/policy>/, '');
      writeFileSync(join(dir, 'qmp-attested.xml'), xml);
      const runDir = join(dir, 'run-attested');
      const guestDir = join(dir, 'guest-attested');
      const c = captureIo(dir);
      const code = await runLaunchvm(
        [
          'qmp-attested.xml',
          '--backend',
          'qmp',
          '--qemu-binary',
          SIM_QEMU,
          '--qemu-arg=--platform',
          `--qemu-arg=${join(dir, 'platform')}`,
          '--cert-chain',
          'platform/cert_chain.cert',
          '--run-dir',
          runDir,
          '--qemu-arg=--guest-secrets-dir',
          `--qemu-arg=${guestDir}`,
        ],
        c.io,
      );
      expect(c.err).toEqual([]);
      expect(code).toBe(0);
      expect(readFileSync(join(guestDir, 'sys/kernel/security/secrets/coco', DISK_GUID))).toEqual(DISK_KEY);
      const q = await QmpClient.connect(join(runDir, 'qmp.sock'));
      expect(await q.execute('query-sev')).toMatchObject({ state: 'running', policy: 5 });
      await q.execute('quit');
      q.close();
    } finally {
      await stub.stop();
    }
  }, 60_000);
});
