import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { buildSecretTable, launchDigest, packageSecret, startSession, verifyMeasurement } from '@kb/sev';
import { createPlatform, savePlatform } from '@kb/sev-sim';
import { parseKeyValueList, parseQemuArgs, startSimQemu, syntheticOvmf, type RunningSimQemu } from '../src';

const platform = createPlatform({ name: 'sev-sim' });
const firmware = syntheticOvmf({ label: 'qmp tests' });
const GUID = '736869e5-84f0-4973-92ec-06879ce3da0b';
let dir: string;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'sim-qemu-'));
  savePlatform(platform, join(dir, 'platform'));
  writeFileSync(join(dir, 'OVMF.fd'), firmware);
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** A raw QMP connection: what the test reads is exactly what went over the socket. */
class RawQmp {
  private buf = '';
  private waiters: ((m: Record<string, unknown>) => void)[] = [];
  private queue: Record<string, unknown>[] = [];
  private constructor(readonly socket: Socket) {
    socket.setEncoding('utf8');
    socket.on('data', (d: string) => {
      this.buf += d;
      let i: number;
      while ((i = this.buf.indexOf('\r\n')) >= 0) {
        const msg = JSON.parse(this.buf.slice(0, i)) as Record<string, unknown>;
        this.buf = this.buf.slice(i + 2);
        const w = this.waiters.shift();
        if (w) w(msg);
        else this.queue.push(msg);
      }
    });
  }
  static open(path: string): Promise<RawQmp> {
    return new Promise((ok, fail) => {
      const s = connect(path, () => ok(new RawQmp(s)));
      s.once('error', fail);
    });
  }
  next(): Promise<Record<string, unknown>> {
    const m = this.queue.shift();
    return m ? Promise.resolve(m) : new Promise((r) => this.waiters.push(r));
  }
  async send(raw: string): Promise<Record<string, unknown>> {
    this.socket.write(raw);
    return this.next();
  }
  exec(execute: string, args?: object, id?: unknown) {
    return this.send(JSON.stringify({ execute, ...(args ? { arguments: args } : {}), ...(id !== undefined ? { id } : {}) }) + '\n');
  }
}

function sessionFiles(policy: number) {
  const s = startSession({ pdh: platform.pdh, policy });
  writeFileSync(join(dir, `godh-${policy}.b64`), s.godhCert.toString('base64') + '\n');
  writeFileSync(join(dir, `session-${policy}.b64`), s.launchBlob.toString('base64'));
  return s;
}

function argv(policy: number, sock: string, extra: string[] = []) {
  return [
    '-name',
    'guest=qmp-test',
    '-machine',
    'q35,confidential-guest-support=sev0',
    '-object',
    `sev-guest,id=sev0,policy=0x${policy.toString(16)},cbitpos=47,reduced-phys-bits=1,dh-cert-file=${join(dir, `godh-${policy}.b64`)},session-file=${join(dir, `session-${policy}.b64`)}`,
    '-drive',
    `if=pflash,format=raw,unit=0,file=${join(dir, 'OVMF.fd')},readonly=on`,
    '-smp',
    '2',
    '-cpu',
    'EPYC-v4',
    '-m',
    '1G',
    '-nodefaults',
    '-display',
    'none',
    '-S',
    '-qmp',
    `unix:${sock},server=on,wait=off`,
    ...extra,
  ];
}

describe('QEMU command line', () => {
  it('parses the subset sim-qemu models', () => {
    const inv = parseQemuArgs([
      '-bios',
      'a,b.fd',
      '-smp',
      'cpus=4,maxcpus=8',
      '-cpu',
      'EPYC-Milan,+x2apic',
      '-qmp',
      'unix:/tmp/q,,1.sock,server,nowait',
      '-S',
      '-enable-kvm',
    ]);
    expect(inv).toMatchObject({ firmwareFile: 'a,b.fd', smp: 4, cpuModel: 'EPYC-Milan', qmpSocket: '/tmp/q,1.sock', startPaused: true });
    expect(parseQemuArgs(['-drive', 'if=pflash,unit=1,file=VARS.fd', '-drive', 'if=pflash,unit=0,file=CODE.fd']).firmwareFile).toBe('CODE.fd');
    expect([...parseKeyValueList('sev-guest,id=s,,x', 'qom-type')]).toEqual([
      ['qom-type', 'sev-guest'],
      ['id', 's,x'],
    ]);
    expect(() => parseQemuArgs(['-frobnicate'])).toThrow('-frobnicate: invalid option');
    expect(() => parseQemuArgs(['-bios', 'a', '-drive', 'if=pflash,file=b'])).toThrow(/both give the firmware/);
  });
});

describe('the QMP monitor over a unix socket', () => {
  let sim: RunningSimQemu;
  let keys: ReturnType<typeof startSession>;
  const sock = () => join(dir, 'qmp.sock');
  const guestDir = () => join(dir, 'guest');

  beforeAll(async () => {
    keys = sessionFiles(5);
    sim = await startSimQemu(argv(5, sock(), ['--guest-secrets-dir', guestDir()]), platform);
  });
  afterAll(() => sim.stop());

  it("greets, insists on capabilities negotiation, and answers in QEMU's words", async () => {
    const q = await RawQmp.open(sock());
    const greeting = await q.next();
    expect(greeting).toEqual({ QMP: { version: { qemu: { major: 9, minor: 2, micro: 0 }, package: expect.stringContaining('not QEMU') }, capabilities: [] } });
    expect(await q.exec('query-status', undefined, 1)).toEqual({
      error: { class: 'CommandNotFound', desc: "Expecting capabilities negotiation with 'qmp_capabilities'" },
      id: 1,
    });
    expect(await q.exec('qmp_capabilities')).toEqual({ return: {} });
    expect(await q.exec('qmp_capabilities')).toEqual({
      error: { class: 'CommandNotFound', desc: 'Capabilities negotiation is already complete, command ignored' },
    });
    expect(await q.exec('frobnicate', undefined, 'x')).toEqual({
      error: { class: 'CommandNotFound', desc: 'The command frobnicate has not been found' },
      id: 'x',
    });
    expect(await q.send('{"execute": "query-status", "bogus": 1}\n')).toEqual({
      error: { class: 'GenericError', desc: "QMP input member 'bogus' is unexpected" },
    });
    expect(await q.send('[1]\n')).toEqual({ error: { class: 'GenericError', desc: 'QMP input must be a JSON object' } });
    expect((await q.send('{"execute": nope}\n')).error).toMatchObject({ class: 'GenericError', desc: expect.stringMatching(/^JSON parse error/) });
    expect(await q.exec('sev-inject-launch-secret', { secret: 'AAAA' })).toEqual({
      error: { class: 'GenericError', desc: "Parameter 'packet-header' is missing" },
    });
    expect(await q.exec('sev-inject-launch-secret', { 'packet-header': 'AAAA', secret: 'AAAA', gpa: 'x' })).toEqual({
      error: { class: 'GenericError', desc: "Invalid parameter type for 'gpa', expected: integer" },
    });
    // QMP is a JSON stream: an object split over writes, and two in one write
    q.socket.write('{"execute": "query-st');
    expect(await q.send('atus", "id": 7}{"execute": "query-version", "id": 8}')).toEqual({
      return: { running: false, singlestep: false, status: 'prelaunch' },
      id: 7,
    });
    expect(await q.next()).toMatchObject({ return: { qemu: { major: 9 } }, id: 8 });
    q.socket.destroy();
  });

  it('query-sev, query-sev-launch-measure, sev-inject-launch-secret, cont: the guest boots with the secret', async () => {
    const q = await RawQmp.open(sock());
    await q.next();
    await q.exec('qmp_capabilities');
    const sev = (await q.exec('query-sev')).return as Record<string, unknown>;
    expect(sev).toEqual({
      enabled: true,
      'api-major': 1,
      'api-minor': 55,
      'build-id': 21,
      policy: 5,
      state: 'launch-secret',
      handle: expect.any(Number),
      'sev-type': 'sev',
    });
    const measurement = ((await q.exec('query-sev-launch-measure')).return as { data: string }).data;
    expect(sim.vm.config.vcpus).toBe(2);
    // the owner's side: verify against the expected digest, build the secret
    const s = keys;
    const digest = launchDigest({ mode: 'seves', firmware, vcpus: 2, vcpu: { type: 'EPYC-v4' } });
    const measure = verifyMeasurement({ tik: s.tik, apiMajor: 1, apiMinor: 55, build: 21, policy: 5, digest, measurement: Buffer.from(measurement, 'base64') });
    const value = randomBytes(24);
    const p = packageSecret({ tek: s.tek, tik: s.tik, measure, data: buildSecretTable([{ guid: GUID, data: value }]) });
    expect(await q.exec('sev-inject-launch-secret', { 'packet-header': 'bm90IGEgaGVhZGVy', secret: p.data.toString('base64') })).toEqual({
      error: { class: 'GenericError', desc: expect.stringMatching(/^SEV: failed to inject secret/) },
    });
    expect(await q.exec('sev-inject-launch-secret', { 'packet-header': p.header.toString('base64'), secret: p.data.toString('base64') })).toEqual({
      return: {},
    });
    // as in QEMU, the event is emitted while the command runs, so it arrives before the command's return
    expect(await q.exec('cont')).toMatchObject({ event: 'RESUME', timestamp: { seconds: expect.any(Number), microseconds: expect.any(Number) } });
    expect(await q.next()).toEqual({ return: {} });
    expect((await q.exec('query-status')).return).toEqual({ running: true, singlestep: false, status: 'running' });
    expect(((await q.exec('query-sev')).return as { state: string }).state).toBe('running');
    expect(readFileSync(join(guestDir(), 'sys/kernel/security/secrets/coco', GUID))).toEqual(value);
    expect(await q.exec('quit')).toEqual({ return: {} });
    expect(await q.next()).toMatchObject({ event: 'SHUTDOWN', data: { guest: false, reason: 'host-qmp-quit' } });
    await sim.exited;
    expect(existsSync(sock())).toBe(false);
  });
});

describe('sim-qemu as a process', () => {
  const bin = resolve(__dirname, '../bin/sim-qemu');
  const runSim = (args: string[]) =>
    new Promise<{ code: number | null; stderr: string }>((done) => {
      const child = spawn(bin, args, { stdio: ['ignore', 'ignore', 'pipe'] });
      let stderr = '';
      child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      child.on('close', (code) => done({ code, stderr }));
    });

  it('fails like QEMU: status 1 and a one-line reason when LAUNCH_START refuses the session', async () => {
    sessionFiles(1);
    const other = createPlatform({ name: 'other' });
    savePlatform(other, join(dir, 'other-platform'));
    const r = await runSim([...argv(1, join(dir, 'p.sock')), '--platform', join(dir, 'other-platform')]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^sim-qemu: sev_launch_start: LAUNCH_START ret=-1 fw_error=\d+ '.+'\n$/);
  }, 30_000);
});
