import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { computeMeasurement, launchDigest, openSecret, parseSecretTable } from '@kb/sev';
import { AMDSEV, hex, kbctl, MEASURE, OVMFX64, read, SEVCTL, SEVCTL_OVMF, tempDir } from './support/cli';
import { domainFixture, type DomainFixture } from './support/domain-fixture';
import { fakeHost } from './support/libvirt';

/**
 * `kbctl validate` on its own: the sevctl and derived vectors, every usage check with its exit code, secret
 * injection offline and through virsh. differential.test.ts runs libvirt's tool beside it.
 */
let work: ReturnType<typeof tempDir>;
let fixture: DomainFixture;
const tik = join(SEVCTL, 'measurement/tik1.bin');
const E = {
  e2: 'oMDewIouJSpbpNRHj7Mk3p08H2dPZQdsZMU14qIymBnDE/q1EcIWsVBbGy6pkDxA',
  e3: 'h3auYbWQnVW7EGLWN4Hf9SN0oEYMPU2sK4bLnefWPwvDE/q1EcIWsVBbGy6pkDxA',
  e4: '/o0nzDKE5XgtVnUZWPhUea/WZYrTKLExR7KCwuMdbActvpWfXTFk21KMZIAAhQny',
};
const e2 = ['--tik', tik, '--tek', tik, '-m', E.e2, '--api-major', '1', '--api-minor', '40', '--build-id', '40', '--policy', '3', '-f', SEVCTL_OVMF];
const e3 = [
  '--tik',
  tik,
  '--tek',
  tik,
  '-m',
  E.e3,
  '--api-major',
  '1',
  '--api-minor',
  '40',
  '--build-id',
  '40',
  '--policy',
  '3',
  '-f',
  SEVCTL_OVMF,
  '-k',
  join(SEVCTL, 'measurement/vmlinuz-fake'),
  '-r',
  join(SEVCTL, 'measurement/initrd-fake'),
  '-e',
  'foo bar baz fake kernel=cmdline',
];
const e4 = ['--tik', tik, '--tek', tik, '-m', E.e4, '--api-major', '1', '--api-minor', '49', '--build-id', '6', '--policy', '5', '-f', SEVCTL_OVMF, '-n', '4'];

beforeAll(() => {
  work = tempDir('validate');
  writeFileSync(join(work.dir, 'empty'), '');
  writeFileSync(join(work.dir, 'short.bin'), Buffer.alloc(15));
  writeFileSync(join(work.dir, 'page-4095.bin'), Buffer.alloc(4095));
  writeFileSync(join(work.dir, 'tk.bin'), Buffer.concat([randomBytes(16), read(tik)]));
  writeFileSync(join(work.dir, 'secret.txt'), 'MY-LUKS-PASSPHRASE');
  mkdirSync(join(work.dir, 'domain'));
  fixture = domainFixture(join(work.dir, 'domain'));
});
afterAll(() => work.cleanup());
const run = (argv: string[], io = {}) => kbctl(['validate', ...argv], { cwd: work.dir, ...io });

describe('sevctl vectors E2–E4 validate (exit 0)', () => {
  it.each([
    ['E2: SEV, firmware only', e2],
    ['E3: SEV with kernel hashes', e3],
    ['E4: SEV-ES, VMSA files (short aliases -0/-1)', [...e4, '-0', join(SEVCTL, 'vmsa0.bin'), '-1', join(SEVCTL, 'vmsa1.bin')]],
    ['E4: SEV-ES, VMSAs built for family 25 model 1 stepping 1', [...e4, '--cpu-family', '25', '--cpu-model', '1', '--cpu-stepping', '1']],
    [
      'E4 with --tk (TEK ‖ TIK)',
      [
        '-m',
        E.e4,
        '--api-major',
        '1',
        '--api-minor',
        '49',
        '--build-id',
        '6',
        '--policy',
        '5',
        '-f',
        SEVCTL_OVMF,
        '-n',
        '4',
        '--cpu-family',
        '25',
        '--cpu-model',
        '1',
        '--cpu-stepping',
        '1',
        '--tk',
        'tk.bin',
      ],
    ],
    [
      'long option names and --opt=value',
      ['--tik', tik, '--tek', tik, `--measurement=${E.e2}`, '--api-major=1', '--api-minor=40', '--build-id=40', '--policy=3', `--firmware=${SEVCTL_OVMF}`],
    ],
  ])('%s', async (_name, argv) => {
    expect(await run(argv)).toEqual({ code: 0, out: 'OK: Looks good to me', err: '' });
  });

  it('a measurement that does not match: exit 1', async () => {
    const wrongPolicy = await run([...e2.slice(0, -4), '--policy', '1', '-f', SEVCTL_OVMF]);
    expect(wrongPolicy).toEqual({ code: 1, out: '', err: 'kbctl validate: Measurement does not match, VM is not trustworthy' });
    const threeCpus = await run([...e4.slice(0, -1), '3', '--cpu-family', '25', '--cpu-model', '1', '--cpu-stepping', '1']);
    expect(threeCpus.code).toBe(1);
    const otherCpu = await run([...e4, '--cpu-family', '25', '--cpu-model', '1', '--cpu-stepping', '0']);
    expect(otherCpu.code).toBe(1);
  });

  it('--quiet prints nothing, whatever the outcome', async () => {
    expect(await run([...e2, '-q'])).toEqual({ code: 0, out: '', err: '' });
    expect(await run([...e2.slice(0, -4), '--policy', '1', '-f', SEVCTL_OVMF, '--quiet'])).toEqual({ code: 1, out: '', err: '' });
    expect(await run(['-q', '--tik', tik])).toEqual({ code: 2, out: '', err: '' });
  });
});

describe('--debug prints every intermediate, as virt-qemu-sev-validate does', () => {
  const debug = async (argv: string[]) => {
    const r = await run([...argv, '--debug']);
    return { r, lines: new Map(r.err.split('\n').flatMap((l) => (/^\[DEBUG\]: ([^:]+): (.*)$/.exec(l) ? [[RegExp.$1, RegExp.$2] as const] : []))) };
  };

  it('E3: the hashes table of VECTORS.md §E and the intermediate LD', async () => {
    const { r, lines } = await debug(e3);
    expect(r.code).toBe(0);
    expect(lines.get('Table(hex)')).toBe(
      '06d63894224fc94cb479a793d411fd21a800d82dd09720bd944caa78e7714d36ab2a32003e8a0b8c83c8eb5a34c6d0b9db3f36ae619b384db601c643af6456106a43dffd31f7ba442f3ad74b9af141e29169781d320076fa1a19324945ce9b1ee17f211ca5b55cbb74d0368eecce53932a1fddc8e8cb3794e74dd2ab7f42b835d5b172d2045b3200af609b31eca2942fc46ed7209c7704771cfc2c91750ff4cb899be39b371b4e480000000000000000',
    );
    expect(lines.get('Measured-data(sha256)')).toBe('4b47fec6f851487c33714c8a00a832a1b705ad0a7cac4a647388eccfa9f0c570');
    expect(lines.get('Firmware(sha256)')).toBe(hex(require('node:crypto').createHash('sha256').update(read(SEVCTL_OVMF)).digest()));
    expect(lines.get('TIK(hex)')).toBe(hex(read(tik)));
    expect(lines.get('Measurement reported(hex)')).toBe(lines.get('Measurement computed(hex)'));
    expect(lines.get('Measured-msg(hex)')).toMatch(/^0401282803000000[0-9a-f]{64}c313fab511c216b1505b1b2ea9903c40$/);
  });

  it.each([
    [
      'A20 / §G table (console cmdline)',
      ['-k', 'empty', '-r', 'empty', '-e', 'console=ttyS0 loglevel=7'],
      'hashes_table_kernel-devnull_initrd-devnull_append-console.bin',
      '82a3ee5d537c3620628270c292ae30cb40c3c878666a7890ee7ef2a08fb535ff',
    ],
    [
      'A21 / §G table (kernel only)',
      ['-k', 'empty'],
      'hashes_table_kernel-devnull_no-initrd_no-append.bin',
      '77f613d7bbcdf12a73782ea9e88b0172aeda50d1a54201cb903594ff52846898',
    ],
  ])('%s', async (_name, kernelArgs, tableFile, digest) => {
    const base = ['--tik', tik, '--tek', tik, '-m', E.e2, '--api-major', '1', '--api-minor', '40', '--build-id', '40', '--policy', '3', '-f', AMDSEV];
    const { r, lines } = await debug([...base, ...kernelArgs]);
    expect(r.code).toBe(1); // E2's measurement is for another firmware: the intermediates are still printed
    expect(lines.get('Table(hex)')).toBe(read(join(MEASURE, 'derived', tableFile)).toString('hex'));
    expect(lines.get('Measured-data(sha256)')).toBe(digest);
  });

  it('E4: the VMSA hashes of sevctl vmsa0.bin / vmsa1.bin and the LD', async () => {
    const { r, lines } = await debug([...e4, '--cpu-family', '25', '--cpu-model', '1', '--cpu-stepping', '1']);
    expect(r.code).toBe(0);
    const sha = (p: string) => hex(require('node:crypto').createHash('sha256').update(read(p)).digest());
    expect(lines.get('VMSA CPU 0(sha256)')).toBe(sha(join(SEVCTL, 'vmsa0.bin')));
    expect(lines.get('VMSA CPU 1(sha256)')).toBe(sha(join(SEVCTL, 'vmsa1.bin')));
    expect(lines.get('Measured-data(sha256)')).toBe('847b5ab6db136ea67dc5a95478ebe7e5ebbe93e9e74bdb1284165f9007a4e367');
  });
});

describe('usage checks: virt-qemu-sev-validate messages and exit codes', () => {
  const offline = ['-m', E.e2, '--api-major', '1', '--api-minor', '40', '--build-id', '40', '--policy', '3', '-f', SEVCTL_OVMF];
  const keys = ['--tik', tik, '--tek', tik];
  it.each([
    [['--tk', 'tk.bin', '--tik', tik, ...offline], 2, '--tk is mutually exclusive with --tek/--tik'],
    [['--tik', tik, ...offline], 2, 'Either --tk or both of --tek/--tik are required'],
    [[...keys, ...offline.slice(2)], 2, 'Either --measurement or --domain is required'],
    [[...keys, '-m', E.e2, '-f', SEVCTL_OVMF], 2, 'Either --api-major or --domain is required'],
    [[...keys, ...offline.slice(0, -2)], 2, 'Either --firmware or --domain is required'],
    [[...keys, ...offline, '-s', 'luks-key:secret.txt'], 2, 'Either --secret-header or --domain is required'],
    [[...keys, ...offline, '-s', 'luks-key:secret.txt', '--secret-header', 'h'], 2, 'Either --secret-payload or --domain is required'],
    [[...keys, ...offline, '--secret-header', 'h'], 2, 'Both --secret-payload and --secret-header are required'],
    [[...keys, ...offline, '-r', 'empty'], 2, '--initrd/--cmdline require --kernel'],
    [[...keys, ...offline, '-e', 'quiet'], 2, '--initrd/--cmdline require --kernel'],
    [[...keys, ...offline, '-1', join(SEVCTL, 'vmsa1.bin')], 2, 'VMSA for additional CPU also requires VMSA for boot CPU'],
    [
      [...keys, ...offline, '-0', join(SEVCTL, 'vmsa0.bin'), '--cpu-family', '25', '--cpu-model', '1', '--cpu-stepping', '1'],
      2,
      'VMSA files are mutually exclusive with CPU SKU',
    ],
    [[...keys, ...offline, '--cpu-family', '25'], 2, 'CPU SKU needs family, model and stepping for SEV-ES domain'],
    [['--tik', 'short.bin', '--tek', tik, ...offline], 2, 'Expected 16 bytes in TIK file, but got 15'],
    [['--tik', tik, '--tek', 'short.bin', ...offline], 2, 'Expected 16 bytes in TEK file, but got 15'],
    [['--tk', 'short.bin', ...offline], 2, 'Expected 32 bytes in TIK/TEK file, but got 15'],
    [[...keys, ...offline, '-0', 'page-4095.bin'], 2, 'VMSA must be 4096 bytes in length'],
    [[...keys, ...e4.slice(4, -2)], 2, 'Number of virtual CPUs must be specified for SEV-ES domain'],
    [[...keys, ...e4.slice(4)], 2, 'VMSA for boot CPU required for SEV-ES domain'],
    [[...keys, ...e4.slice(4), '-0', join(SEVCTL, 'vmsa0.bin')], 2, 'VMSA for additional CPUs required for SEV-ES domain with SMP'],
    [[...keys, ...offline.slice(0, -4), '--policy', 'three', '-f', SEVCTL_OVMF], 2, '--policy must be a decimal or 0x-prefixed hex integer'],
    [[...keys, ...offline.slice(2, 4), '--api-major', '256', ...offline.slice(4)], 2, '--api-major must be at most 255'],
    [[...keys, ...offline, '--bogus'], 2, "Unknown option '--bogus'"],
    [['--tik', 'missing-tik', '--tek', tik, ...offline], 6, 'cannot read the TIK from missing-tik: ENOENT'],
    [[...keys, ...offline.slice(0, -2), '-f', 'missing.fd'], 6, 'cannot read the firmware from missing.fd: ENOENT'],
    [[...keys, ...offline, '-k', 'missing-kernel'], 6, 'cannot read the kernel from missing-kernel: ENOENT'],
    [[...keys, '-m', 'abc', ...offline.slice(2)], 6, 'the measurement is not valid base64'],
    [
      [...keys, '-m', Buffer.alloc(32).toString('base64'), ...offline.slice(2)],
      1,
      'Measurement does not match: the measurement is 32 bytes, a LAUNCH_MEASURE value is 48',
    ],
    [[...keys, '-m', '@@@@', ...offline.slice(2)], 1, 'Measurement does not match: the measurement is 0 bytes'],
    [
      [...keys, ...offline.slice(0, -2), '-f', 'empty', '-n', '2', '--policy', '5', '--cpu-family', '25', '--cpu-model', '1', '--cpu-stepping', '1'],
      6,
      'cannot build the VMSAs: firmware has no OVMF footer table',
    ],
    [[...keys, ...offline.slice(0, -2), '-f', OVMFX64, '-k', 'empty'], 1, 'Measurement does not match: firmware SEV_HASH_TABLE_RV base is 0'],
  ])('%j → exit %i', async (argv, code, message) => {
    const r = await run(argv as string[]);
    expect(r.code).toBe(code);
    expect(r.err).toContain(`kbctl validate: ${message}`);
    if (code === 2) expect(r.err).toContain("Run 'kbctl validate --help'.");
    expect(r.out).toBe('');
  });

  it.each([
    [['-s', 'nocolon'], 'Expecting ALIAS-OR-GUID:PATH for injected secret'],
    [['-s', 'a:b:c'], 'Expecting ALIAS-OR-GUID:PATH for injected secret'],
    [['-s', 'disk-key:secret.txt'], "Secret alias 'disk-key' is not known"],
    [
      ['-s', 'luks-key:secret.txt', '-s', '736869E5-84F0-4973-92EC-06879CE3DA0B:secret.txt'],
      'Secret for GUID 736869e5-84f0-4973-92ec-06879ce3da0b already loaded',
    ],
    [['-s', '00000000-0000-0000-0000-000000000000:secret.txt'], 'a secret table entry cannot use the nil GUID'],
  ])('secrets are checked after the measurement (OK first, then exit 2): %j', async (secretArgs, message) => {
    const r = await run([...e2, ...secretArgs, '--secret-header', 'h.b64', '--secret-payload', 'p.b64']);
    expect(r.code).toBe(2);
    expect(r.out).toBe('OK: Looks good to me');
    expect(r.err).toContain(message);
    expect(existsSync(join(work.dir, 'h.b64'))).toBe(false);
  });

  it('an unreadable secret file is exit 6; a table larger than the OVMF page is refused (exit 2)', async () => {
    const missing = await run([...e2, '-s', 'luks-key:nope.txt', '--secret-header', 'h.b64', '--secret-payload', 'p.b64']);
    expect(missing.code).toBe(6);
    expect(missing.err).toContain('cannot read the secret for 736869e5-84f0-4973-92ec-06879ce3da0b from nope.txt: ENOENT');
    writeFileSync(join(work.dir, 'big.txt'), Buffer.alloc(5000, 0x41));
    const big = await run([...e2, '-s', 'luks-key:big.txt', '--secret-header', 'h.b64', '--secret-payload', 'p.b64']);
    expect(big.code).toBe(2);
    expect(big.err).toContain('does not fit the 4096-byte OVMF secret page');
  });
});

describe('secret injection', () => {
  it('offline: base64 header and payload files that open with the TEK/TIK and the verified MEASURE', async () => {
    const r = await run([
      ...e2,
      '-s',
      'luks-key:secret.txt',
      '-s',
      '11111111-2222-3333-4444-555555555555:empty',
      '--secret-header',
      'h.b64',
      '--secret-payload',
      'p.b64',
    ]);
    expect(r).toEqual({ code: 0, out: 'OK: Looks good to me\nOK: Injected 2 secrets', err: '' });
    const header = Buffer.from(readFileSync(join(work.dir, 'h.b64'), 'utf8'), 'base64');
    const data = Buffer.from(readFileSync(join(work.dir, 'p.b64'), 'utf8'), 'base64');
    expect(header.length).toBe(52);
    const measure = Buffer.from(E.e2, 'base64').subarray(0, 32);
    const table = openSecret({ tek: read(tik), tik: read(tik), measure, header, data });
    expect(parseSecretTable(table)).toEqual([
      { guid: '736869e5-84f0-4973-92ec-06879ce3da0b', data: Buffer.from('MY-LUKS-PASSPHRASE') },
      { guid: '11111111-2222-3333-4444-555555555555', data: Buffer.alloc(0) },
    ]);
  });

  it("an already aligned table gets libvirt's whole extra zero block (the broker's tables do not)", async () => {
    writeFileSync(join(work.dir, 's24.bin'), Buffer.alloc(24, 0x42)); // 20 + (20 + 24) = 64 bytes: aligned
    const r = await run([...e2, '-s', 'luks-key:s24.bin', '--secret-header', 'h3.b64', '--secret-payload', 'p3.b64']);
    expect(r.code).toBe(0);
    const header = Buffer.from(readFileSync(join(work.dir, 'h3.b64'), 'utf8'), 'base64');
    const data = Buffer.from(readFileSync(join(work.dir, 'p3.b64'), 'utf8'), 'base64');
    expect(data.length).toBe(80);
    const table = openSecret({ tek: read(tik), tik: read(tik), measure: Buffer.from(E.e2, 'base64').subarray(0, 32), header, data });
    expect(table.readUInt32LE(16)).toBe(64);
    expect(table.subarray(64).equals(Buffer.alloc(16))).toBe(true);
    expect(parseSecretTable(table)).toEqual([{ guid: '736869e5-84f0-4973-92ec-06879ce3da0b', data: Buffer.alloc(24, 0x42) }]);
  });

  it('no secret is written when the measurement does not match', async () => {
    const r = await run([
      ...e2.slice(0, -4),
      '--policy',
      '1',
      '-f',
      SEVCTL_OVMF,
      '-s',
      'luks-key:secret.txt',
      '--secret-header',
      'h2.b64',
      '--secret-payload',
      'p2.b64',
    ]);
    expect(r.code).toBe(1);
    expect(existsSync(join(work.dir, 'h2.b64'))).toBe(false);
  });
});

describe('--domain through virsh (recorded host states; see differential.test.ts for the same against libvirt)', () => {
  it('every recorded scenario gives virt-qemu-sev-validate’s exit code', async () => {
    for (const [i, c] of fixture.cases.entries()) {
      const dir = join(fixture.dir, `kb-${i}`);
      mkdirSync(dir);
      const host = fakeHost(dir, c.scenario);
      const r = await kbctl(['validate', ...c.args], { cwd: fixture.dir, env: host.kbctlEnv });
      expect({ name: c.name, code: r.code, err: r.err }).toEqual({
        name: c.name,
        code: c.expected,
        err: c.expected === 0 ? '' : expect.stringMatching(/^kbctl validate: /),
      });
      if (c.measure) {
        const { header, secret, resumed } = host.injected();
        expect(resumed).toBe(true);
        const table = openSecret({
          tek: fixture.tek,
          tik: fixture.tik,
          measure: c.measure,
          header: Buffer.from(header!, 'base64'),
          data: Buffer.from(secret!, 'base64'),
        });
        expect(parseSecretTable(table)).toEqual([{ guid: '736869e5-84f0-4973-92ec-06879ce3da0b', data: Buffer.from('a LUKS passphrase') }]);
      }
    }
  });

  it('a missing virsh is an unexpected error (6) that says what to install', async () => {
    const r = await run(['--tik', tik, '--tek', tik, '-o', 'guest'], { env: { PATH: '/nonexistent' } });
    expect(r).toEqual({ code: 6, out: '', err: 'kbctl validate: cannot run virsh: not found (install libvirt-clients, or set KBCTL_VIRSH)' });
  });

  it('the SEV-ES digest used for a domain is the legacy one sevctl/libvirt compute', () => {
    // sanity for the fixture itself: legacy VMSAs, as validate builds them from the host CPU
    const fw = read(SEVCTL_OVMF);
    const d = launchDigest({ mode: 'seves', firmware: fw, vcpus: 4, vcpu: { family: 25, model: 1, stepping: 1 } });
    expect(d.toString('hex')).toBe('847b5ab6db136ea67dc5a95478ebe7e5ebbe93e9e74bdb1284165f9007a4e367');
    expect(
      computeMeasurement({
        tik: read(tik),
        apiMajor: 1,
        apiMinor: 49,
        build: 6,
        policy: 5,
        digest: d,
        mnonce: Buffer.from(E.e4, 'base64').subarray(32),
      }).toString('base64'),
    ).toBe(Buffer.from(E.e4, 'base64').subarray(0, 32).toString('base64'));
  });
});
