import { existsSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { AMDSEV, kbctl, MEASURE, OVMFX64, read, SEVCTL, SEVCTL_OVMF, tempDir } from './support/cli';

/** `kbctl measure`: the sev/seves rows of VECTORS.md §A, the derived legacy digests of §G, sevctl's E4, through the CLI. */

let work: ReturnType<typeof tempDir>;
beforeAll(() => {
  work = tempDir('measure');
  writeFileSync(join(work.dir, 'empty'), '');
});
afterAll(() => work.cleanup());
const run = (argv: string[], io = {}) => kbctl(['measure', ...argv], { cwd: work.dir, ...io });

const devnull = ['--kernel', 'empty', '--initrd', 'empty'];

describe('sev-snp-measure vectors (§A, sev and seves rows)', () => {
  it.each([
    // A17/A18: current sev-snp-measure 'seves' = the INIT2 VMSA
    [
      'A17',
      ['--mode', 'seves', '--vcpus', '1', '--vcpu-type', 'EPYC-v4', '--ovmf', AMDSEV, ...devnull, '--append', '', '--vmsa-fpu', 'init2'],
      '13810ae661ea11e2bb205621f582fee268f0367c8f97bc297b7fadef3e12002c',
    ],
    [
      'A18',
      ['--mode', 'seves', '--vcpus', '4', '--vcpu-type', 'EPYC-v4', '--ovmf', AMDSEV, ...devnull, '--vmsa-fpu', 'init2'],
      '0dccbcaba8e90b261bd0d2e1863a2f9da714768b7b2a19363cd6ae35aa90de91',
    ],
    [
      'A20',
      ['--mode', 'sev', '--ovmf', AMDSEV, ...devnull, '--append', 'console=ttyS0 loglevel=7'],
      '82a3ee5d537c3620628270c292ae30cb40c3c878666a7890ee7ef2a08fb535ff',
    ],
    ['A21', ['--mode', 'sev', '--ovmf', AMDSEV, '--kernel', 'empty'], '77f613d7bbcdf12a73782ea9e88b0172aeda50d1a54201cb903594ff52846898'],
    ['A22', ['--mode', 'sev', '--ovmf', OVMFX64], 'b4c021e085fb83ceffe6571a3d357b4a98773c83c474e47f76c876708fe316da'],
    // §G: the same fixture with the legacy VMSA (the default flavour)
    [
      'G legacy 1 vCPU',
      ['--mode', 'seves', '--vcpus', '1', '--vcpu-type', 'EPYC-v4', '--ovmf', AMDSEV, ...devnull, '--append', ''],
      '664f688c75cd5c08855ead4f11501ff967e29762d16c8d589b8e6d7b6c4daa36',
    ],
    [
      'G legacy 4 vCPUs',
      ['--mode', 'seves', '--vcpus', '4', '--vcpu-sig', '0x800f12', '--ovmf', AMDSEV, ...devnull, '--vmsa-fpu', 'legacy'],
      'bfe06ed004ea18350152361ca8aa4860e807976ef67e756b4b9e5b724e0713c9',
    ],
    // sevctl E4's intermediate LD: legacy VMSAs for family 25 model 1 stepping 1, 4 vCPUs
    [
      'E4 LD',
      ['--mode', 'seves', '--vcpus', '4', '--vcpu-family', '25', '--vcpu-model', '1', '--vcpu-stepping', '1', '--ovmf', SEVCTL_OVMF],
      '847b5ab6db136ea67dc5a95478ebe7e5ebbe93e9e74bdb1284165f9007a4e367',
    ],
    ['E2 LD', ['--mode', 'sev', '--ovmf', SEVCTL_OVMF], '2f6fc6065f4abc131eb4fb2b5090a542636eae84a94c0db0fdd5f405cb372ff5'],
    [
      'E3 LD',
      [
        '--mode',
        'sev',
        '--ovmf',
        SEVCTL_OVMF,
        '--kernel',
        join(SEVCTL, 'measurement/vmlinuz-fake'),
        '--initrd',
        join(SEVCTL, 'measurement/initrd-fake'),
        '--append',
        'foo bar baz fake kernel=cmdline',
      ],
      '4b47fec6f851487c33714c8a00a832a1b705ad0a7cac4a647388eccfa9f0c570',
    ],
  ])('%s', async (_id, argv, digest) => {
    const r = await run(argv);
    expect(r).toEqual({ code: 0, out: digest, err: '' });
  });

  it('--output-format base64 and --verbose print the same digest as sev-snp-measure does', async () => {
    const argv = ['--mode', 'seves', '--vcpus', '1', '--vcpu-type', 'EPYC-v4', '--ovmf', AMDSEV, ...devnull, '--vmsa-fpu', 'init2'];
    const b64 = await run([...argv, '--output-format', 'base64']);
    expect(b64.out).toBe(Buffer.from('13810ae661ea11e2bb205621f582fee268f0367c8f97bc297b7fadef3e12002c', 'hex').toString('base64'));
    expect((await run([...argv, '-v'])).out).toBe('Calculated SEV_ES guest measurement: 13810ae661ea11e2bb205621f582fee268f0367c8f97bc297b7fadef3e12002c');
    expect((await run(['--mode', 'sev', '--ovmf', OVMFX64, '--verbose'])).out).toMatch(/^Calculated SEV guest measurement: b4c021e0/);
  });

  it('the three vCPU forms give the same digest; mode sev ignores them and --vcpus', async () => {
    const base = ['--mode', 'seves', '--vcpus', '2', '--ovmf', AMDSEV];
    const byType = await run([...base, '--vcpu-type', 'EPYC-Milan']);
    expect(byType.code).toBe(0);
    expect((await run([...base, '--vcpu-sig', '0xa00f11'])).out).toBe(byType.out);
    expect((await run([...base, '--vcpu-sig', String(0xa00f11)])).out).toBe(byType.out);
    expect((await run([...base, '--vcpu-family', '25', '--vcpu-model', '1', '--vcpu-stepping', '1'])).out).toBe(byType.out);
    const sev = await run(['--mode', 'sev', '--ovmf', OVMFX64, '--vcpus', '8', '--vcpu-type', 'EPYC']);
    expect(sev.out).toBe('b4c021e085fb83ceffe6571a3d357b4a98773c83c474e47f76c876708fe316da');
  });

  it('ec2 and gce need no vCPU model; --sev-features changes the digest', async () => {
    const base = ['--mode', 'seves', '--vcpus', '1', '--ovmf', AMDSEV];
    const ec2 = await run([...base, '--vmm-type', 'ec2']);
    const gce = await run([...base, '--vmm-type', 'gce']);
    expect(ec2.code).toBe(0);
    expect(gce.code).toBe(0);
    expect(ec2.out).not.toBe(gce.out);
    const qemu = await run([...base, '--vcpu-type', 'EPYC-v4']);
    const debugSwap = await run([...base, '--vcpu-type', 'EPYC-v4', '--sev-features', '0x20']);
    expect(debugSwap.out).toMatch(/^[0-9a-f]{64}$/);
    expect(debugSwap.out).not.toBe(qemu.out);
  });
});

describe('--dump-vmsa writes the measured pages (§G derived/vmsa, sevctl vmsa0/vmsa1)', () => {
  it.each([
    ['init2', 'qemu_epyc-v4_sevfeat0x0_init2'],
    ['legacy', 'qemu_epyc-v4_sevfeat0x0_legacy-nofpu'],
  ])('%s: BSP and AP pages equal the derived vectors', async (fpu, prefix) => {
    const dir = join(work.dir, `dump-${fpu}`);
    const r = await run(['--mode', 'seves', '--vcpus', '3', '--vcpu-type', 'EPYC-v4', '--ovmf', AMDSEV, '--vmsa-fpu', fpu, '--dump-vmsa', dir]);
    expect(r.code).toBe(0);
    expect(readdirSync(dir).sort()).toEqual(['vmsa0.bin', 'vmsa1.bin', 'vmsa2.bin']);
    expect(read(join(dir, 'vmsa0.bin'))).toEqual(read(join(MEASURE, `derived/vmsa/${prefix}_bsp.bin`)));
    expect(read(join(dir, 'vmsa1.bin'))).toEqual(read(join(MEASURE, `derived/vmsa/${prefix}_ap-eip0x80b004.bin`)));
    expect(read(join(dir, 'vmsa2.bin'))).toEqual(read(join(dir, 'vmsa1.bin')));
  });

  it("sevctl's vmsa0.bin / vmsa1.bin (family 25, model 1, stepping 1, legacy)", async () => {
    const dir = join(work.dir, 'dump-sevctl');
    const r = await run([
      '--mode',
      'seves',
      '--vcpus',
      '2',
      '--vcpu-family',
      '25',
      '--vcpu-model',
      '1',
      '--vcpu-stepping',
      '1',
      '--ovmf',
      SEVCTL_OVMF,
      '--dump-vmsa',
      dir,
    ]);
    expect(r.code).toBe(0);
    expect(read(join(dir, 'vmsa0.bin'))).toEqual(read(join(SEVCTL, 'vmsa0.bin')));
    expect(read(join(dir, 'vmsa1.bin'))).toEqual(read(join(SEVCTL, 'vmsa1.bin')));
  });
});

describe('progress', () => {
  it('--progress reports on stderr up to 100 %, and stdout stays the digest alone', async () => {
    const big = join(work.dir, 'big-kernel');
    writeFileSync(big, Buffer.alloc(3 << 20, 7));
    const r = await run(['--mode', 'sev', '--ovmf', AMDSEV, '--kernel', big, '--progress']);
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/^[0-9a-f]{64}$/);
    expect(r.err).toMatch(/^measure: \d+% \(/m);
    expect(r.err).toContain('measure: 100% (3.0 of 3.0 MiB)');
    expect(r.err).toMatch(/measure: done, 3\.0 MiB in \d+\.\d s$/);
  });

  it('a terminal gets no progress for inputs hashed in under a second; a pipe never does', async () => {
    expect((await run(['--mode', 'sev', '--ovmf', AMDSEV], { errIsTTY: true })).err).toBe('');
    expect((await run(['--mode', 'sev', '--ovmf', AMDSEV], { errIsTTY: false })).err).toBe('');
  });
});

describe('errors: sev-snp-measure exit codes (1 runtime, 2 usage) and clear messages', () => {
  it.each([
    // A19 / A23: the firmware cannot measure a kernel
    ['A19', ['--mode', 'seves', '--vcpus', '1', '--vcpu-type', 'EPYC-v4', '--ovmf', OVMFX64, ...devnull], 1, /does not support kernel hashes/],
    ['A23', ['--mode', 'sev', '--ovmf', OVMFX64, ...devnull, '--append', ''], 1, /does not support kernel hashes/],
    ['unreadable firmware', ['--mode', 'sev', '--ovmf', 'nope.fd'], 1, /cannot read the firmware from nope\.fd: ENOENT/],
    ['unreadable kernel', ['--mode', 'sev', '--ovmf', AMDSEV, '--kernel', 'nope'], 1, /cannot read the kernel from nope: ENOENT/],
    ['seves without a reset block', ['--mode', 'seves', '--vcpus', '2', '--vcpu-type', 'EPYC', '--ovmf', 'empty'], 1, /no OVMF footer table/],
    ['no --mode', ['--ovmf', AMDSEV], 2, /--mode is required/],
    ['bad mode', ['--mode', 'tdx', '--ovmf', AMDSEV], 2, /--mode must be one of sev, seves, snp, snp:ovmf-hash, snp:svsm/],
    ['no --ovmf', ['--mode', 'sev'], 2, /--ovmf is required/],
    ['initrd without kernel', ['--mode', 'sev', '--ovmf', AMDSEV, '--initrd', 'empty'], 2, /--kernel required when using --initrd/],
    ['append without kernel', ['--mode', 'sev', '--ovmf', AMDSEV, '--append', 'x'], 2, /--kernel required when using --append/],
    ['seves without --vcpus', ['--mode', 'seves', '--ovmf', AMDSEV, '--vcpu-type', 'EPYC'], 2, /missing --vcpus N in guest mode 'seves'/],
    ['seves without vCPU model', ['--mode', 'seves', '--ovmf', AMDSEV, '--vcpus', '1'], 2, /missing --vcpu-type or --vcpu-sig or --vcpu-family/],
    [
      'two vCPU forms',
      ['--mode', 'seves', '--ovmf', AMDSEV, '--vcpus', '1', '--vcpu-type', 'EPYC', '--vcpu-sig', '1'],
      2,
      /exactly one of --vcpu-type, --vcpu-sig/,
    ],
    ['partial triplet', ['--mode', 'seves', '--ovmf', AMDSEV, '--vcpus', '1', '--vcpu-family', '25'], 2, /go together/],
    ['unknown type', ['--mode', 'seves', '--ovmf', AMDSEV, '--vcpus', '1', '--vcpu-type', 'EPYC-v9'], 2, /unknown vCPU type 'EPYC-v9'; known: EPYC, /],
    [
      'model out of range',
      ['--mode', 'seves', '--ovmf', AMDSEV, '--vcpus', '1', '--vcpu-family', '25', '--vcpu-model', '256', '--vcpu-stepping', '0'],
      2,
      /--vcpu-model must be at most 255/,
    ],
    ['zero vCPUs', ['--mode', 'seves', '--ovmf', AMDSEV, '--vcpus', '0', '--vcpu-type', 'EPYC'], 2, /--vcpus must be at least 1/],
    ['bad vmm type', ['--mode', 'sev', '--ovmf', AMDSEV, '--vmm-type', 'xen'], 2, /unknown VMM type 'xen'/],
    ['bad fpu', ['--mode', 'sev', '--ovmf', AMDSEV, '--vmsa-fpu', 'new'], 2, /--vmsa-fpu must be legacy .* or init2/],
    ['bad format', ['--mode', 'sev', '--ovmf', AMDSEV, '--output-format', 'raw'], 2, /--output-format must be hex or base64/],
    ['dump in sev mode', ['--mode', 'sev', '--ovmf', AMDSEV, '--dump-vmsa', 'd'], 2, /--dump-vmsa is not available in mode sev/],
    ['unknown flag', ['--mode', 'sev', '--ovmf', AMDSEV, '--tdx-hash', 'x'], 2, /Unknown option '--tdx-hash'/],
  ])('%s', async (_what, argv, code, message) => {
    const r = await run(argv as string[]);
    expect(r.code).toBe(code);
    expect(r.out).toBe('');
    expect(r.err).toMatch(message as RegExp);
    expect(r.err.startsWith('kbctl measure: ')).toBe(true);
    if (code === 2) expect(r.err).toContain("Run 'kbctl measure --help'.");
    expect(existsSync(join(work.dir, 'd'))).toBe(false);
  });
});
