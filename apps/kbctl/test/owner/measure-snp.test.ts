import { existsSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { AMDSEV, kbctl, MEASURE, OVMFX64, read, tempDir } from './support/cli';

/**
 * `kbctl measure` in the SNP modes: every SNP row of VECTORS.md §A (A1–A16, A24, A25) through the CLI, with
 * sev-snp-measure's own flags, plus the §G VMSA pages through --dump-vmsa and the refusals.
 */
const FIXTURES = join(MEASURE, 'sev-snp-measure/fixtures');
const SVSM_OVMF = join(FIXTURES, 'svsm_ovmf.fd');
const SVSM = join(FIXTURES, 'svsm.bin');
const A3 = '086e2e9149ebf45abdc3445fba5b2da8270bdbb04094d7a2c37faaa4b24af3aa16aff8c374c2a55c467a50da6d466b74';
const A4 = '803f691094946e42068aaa3a8f9e26a5c89f36f7b73ecfb28c653360fe4b3aba7e534442e7e1e17895dfe778d0228977';

let work: ReturnType<typeof tempDir>;
beforeAll(() => {
  work = tempDir('measure-snp');
  writeFileSync(join(work.dir, 'empty'), '');
  writeFileSync(join(work.dir, 'OVMF_VARS.fd'), Buffer.alloc(540672));
});
afterAll(() => work.cleanup());
const run = (argv: string[], io = {}) => kbctl(['measure', ...argv], { cwd: work.dir, ...io });

const devnull = ['--kernel', 'empty', '--initrd', 'empty'];
const snp1 = ['--mode', 'snp', '--vcpus', '1', '--vcpu-type', 'EPYC-v4', '--ovmf', AMDSEV];
const console7 = ['--append', 'console=ttyS0 loglevel=7'];

describe('sev-snp-measure vectors (§A, SNP rows) through the CLI', () => {
  it.each([
    [
      'A1',
      [...snp1, ...devnull, '--append', '', '--guest-features', '0x21', '--snp-ovmf-hash', A3],
      '329c8ce0972ae52343b64d34a434a86f245dfd74f5ed7aae15d22efc78fb9683632b9b50e4e1d7fa41179ef98a7ef198',
    ],
    [
      'A2',
      [...snp1, ...devnull, '--append', '', '--guest-features', '0x1', '--snp-ovmf-hash', A3],
      'ddc5224521617a536ee7ce9dd6224d1b58a8d4fda1c741f3ac99fc4bfa04ba6e9fc98646d4a07a9079397fa3852819b5',
    ],
    ['A4', [...snp1, ...devnull, ...console7, '--guest-features', '0x21'], A4],
    ['A4 seeded', [...snp1, ...devnull, ...console7, '--guest-features', '0x21', '--snp-ovmf-hash', A3.toUpperCase()], A4],
    ['A5', [...snp1, ...devnull, ...console7], '6d287813eb5222d770f75005c664e34c204f385ce832cc2ce7d0d6f354454362f390ef83a92046c042e706363b4b08fa'],
    [
      'A5 seeded',
      [...snp1, ...devnull, ...console7, '--snp-ovmf-hash', A3],
      '6d287813eb5222d770f75005c664e34c204f385ce832cc2ce7d0d6f354454362f390ef83a92046c042e706363b4b08fa',
    ],
    [
      'A6',
      ['--mode', 'snp', '--vcpus', '1', '--vcpu-type', 'EPYC-v4', '--vmm-type', 'ec2', '--ovmf', AMDSEV, ...devnull, '--guest-features', '0x21'],
      '0ce9ccc06bab55eebe8abc234f3df6514883977a68a591b71052498ab52b2f1aa415db338033946ef93aa8278c0d67fb',
    ],
    [
      'A7',
      ['--mode', 'snp', '--vcpus', '1', '--vmm-type', 'ec2', '--ovmf', AMDSEV, ...devnull],
      '0883bd0eeb716e65b7b977a321c278d1e51b33b5c655fab985443bbcc65c086b9c15e8a0bd8811050dec7e24964e5056',
    ],
    [
      'A8',
      ['--mode', 'snp', '--vcpus', '1', '--vmm-type', 'gce', '--ovmf', AMDSEV, ...devnull],
      '5da7106cf14cf46b1725ebab123eb9e53bd46a1e9f400cd0c08e7827b04b688ea8b4e403c8404efed4397ea5d5d0722e',
    ],
    [
      'A9',
      ['--mode', 'snp', '--vcpus', '4', '--vmm-type', 'gce', '--ovmf', AMDSEV, ...devnull],
      '5c5debf100fc339f90276e761ee1f1658d08922c3b20e2a2e6c7a6c3370b2452a15a00eae11886a93d6fd1e7ab81e29d',
    ],
    ['A10', [...snp1, '--guest-features', '0x21'], 'e1e1ca029dd7973ab9513295be68198472dcd4fc834bd9af9b63f6e8a1674dbf281a9278a4a2ebe0eed9f22adbcd0e2b'],
    ['A11', [...snp1], '19358ba9a7615534a9a1e2f0dfc29384dcd4dcb7062ff9c6013b26869a5fc6ecabe033c48dd6f6db5d6d76e7c5df632d'],
    [
      'A12',
      ['--mode', 'snp', '--vcpus', '4', '--vcpu-sig', '0x800f12', '--ovmf', AMDSEV, ...devnull, '--guest-features', '33'],
      '4953b1fb416fa874980e8442b3706d345926d5f38879134e00813c5d7abcbe78eafe7b422907be0b4698e2414a631942',
    ],
    [
      'A13',
      ['--mode', 'snp', '--vcpus', '4', '--vcpu-family', '23', '--vcpu-model', '1', '--vcpu-stepping', '2', '--ovmf', AMDSEV, ...devnull],
      '5061fffb019493a903613d56d54b94912a1a2f9e4502385f5c194616753720a92441310ba6c4933de877c36e23046ad5',
    ],
    [
      'A14',
      ['--mode', 'snp', '--vcpus', '1', '--vcpu-type', 'EPYC-v4', '--ovmf', OVMFX64, '--guest-features', '0x21'],
      '28797ae0afaba4005a81e629acebfb59e6687949d6be44007cd5506823b0dd66f146aaae26ff291eed7b493d8a64c385',
    ],
    [
      'A15',
      ['--mode', 'snp', '--vcpus', '1', '--vcpu-type', 'EPYC-v4', '--ovmf', OVMFX64],
      'da0296de8193586a5512078dcd719eccecbd87e2b825ad4148c44f665dc87df21e5b49e21523a9ad993afdb6a30b4005',
    ],
    ['A3', ['--mode', 'snp:ovmf-hash', '--ovmf', AMDSEV], A3],
    [
      'A24',
      ['--mode', 'snp:svsm', '--vcpus', '4', '--vcpu-type', 'EPYC-v4', '--ovmf', SVSM_OVMF, '--svsm', SVSM, '--vars-size', '540672'],
      '27d154c27b7b359c935e250ec6fee72aa0ae8c1225e3b0e1cf46a9567e938066d7d6f94bbdc4a857818bdb79277a44b2',
    ],
    [
      'A24 --vars-file',
      ['--mode', 'snp:svsm', '--vcpus', '4', '--vcpu-type', 'EPYC-v4', '--ovmf', SVSM_OVMF, '--svsm', SVSM, '--vars-file', 'OVMF_VARS.fd'],
      '27d154c27b7b359c935e250ec6fee72aa0ae8c1225e3b0e1cf46a9567e938066d7d6f94bbdc4a857818bdb79277a44b2',
    ],
    [
      'A25',
      ['--mode', 'snp:svsm', '--vcpus', '2', '--vcpu-type', 'EPYC-v4', '--ovmf', SVSM_OVMF, '--svsm', SVSM, '--vars-size', '0x84000'],
      '9b94745036aafddf4f7f8b00c7513abb5b7703178cb95aaa57928bd963d68d3bfcb715d6019b9167ee2517b11b0d9be7',
    ],
  ])('%s', async (_id, argv, digest) => {
    expect(await run(argv)).toEqual({ code: 0, out: digest, err: '' });
  });

  it("A16: a kernel for an OVMF without SNP_KERNEL_HASHES exits 1 with sev-snp-measure's message", async () => {
    const r = await run(['--mode', 'snp', '--vcpus', '1', '--vcpu-type', 'EPYC-v4', '--ovmf', OVMFX64, ...devnull, '--guest-features', '0x21']);
    expect(r.code).toBe(1);
    expect(r.out).toBe('');
    expect(r.err).toMatch(/^kbctl measure: Kernel specified but OVMF metadata doesn't include SNP_KERNEL_HASHES section/);
  });

  it('prints as sev-snp-measure: base64, and the SEV_SNP / SEV_SNP_SVSM verbose lines', async () => {
    expect((await run([...snp1, ...devnull, ...console7, '--guest-features', '0x21', '--output-format', 'base64'])).out).toBe(
      Buffer.from(A4, 'hex').toString('base64'),
    );
    expect((await run([...snp1, ...devnull, ...console7, '--guest-features', '0x21', '-v'])).out).toBe(`Calculated SEV_SNP guest measurement: ${A4}`);
    const svsm = await run([
      '--mode',
      'snp:svsm',
      '--vcpus',
      '2',
      '--vcpu-type',
      'EPYC-v4',
      '--ovmf',
      SVSM_OVMF,
      '--svsm',
      SVSM,
      '--vars-size',
      '540672',
      '--verbose',
    ]);
    expect(svsm.out).toBe(
      'Calculated SEV_SNP_SVSM guest measurement: 9b94745036aafddf4f7f8b00c7513abb5b7703178cb95aaa57928bd963d68d3bfcb715d6019b9167ee2517b11b0d9be7',
    );
  });

  it('--vmsa-fpu legacy changes an SNP digest; init2 is the default', async () => {
    const init2 = await run([...snp1, '--vmsa-fpu', 'init2']);
    const legacy = await run([...snp1, '--vmsa-fpu', 'legacy']);
    expect(init2.out).toBe('19358ba9a7615534a9a1e2f0dfc29384dcd4dcb7062ff9c6013b26869a5fc6ecabe033c48dd6f6db5d6d76e7c5df632d');
    expect(legacy.code).toBe(0);
    expect(legacy.out).toMatch(/^[0-9a-f]{96}$/);
    expect(legacy.out).not.toBe(init2.out);
  });
});

describe('--dump-vmsa in the SNP modes writes the §G pages', () => {
  it.each([
    [
      'QEMU gf 0x21',
      [...snp1.slice(0, 2), '--vcpus', '3', '--vcpu-type', 'EPYC-v4', '--ovmf', AMDSEV, '--guest-features', '0x21'],
      'qemu_epyc-v4_sevfeat0x21_bsp',
      'qemu_epyc-v4_sevfeat0x21_ap-eip0x80b004',
    ],
    ['EC2', ['--mode', 'snp', '--vcpus', '3', '--vmm-type', 'ec2', '--ovmf', AMDSEV], 'ec2_sevfeat0x1_rdx0x600_bsp', 'ec2_sevfeat0x1_rdx0x600_ap-eip0x80b004'],
    ['GCE', ['--mode', 'snp', '--vcpus', '3', '--vmm-type', 'gce', '--ovmf', AMDSEV], 'gce_sevfeat0x1_bsp', 'gce_sevfeat0x1_ap-eip0x80b004'],
    [
      'SVSM',
      ['--mode', 'snp:svsm', '--vcpus', '3', '--vcpu-type', 'EPYC-v4', '--ovmf', SVSM_OVMF, '--svsm', SVSM, '--vars-size', '540672'],
      'svsm_epyc-v4_eip0xffaea000',
      'svsm_epyc-v4_eip0xffaea000',
    ],
  ])('%s', async (what, argv, bsp, ap) => {
    const dir = join(work.dir, `dump-${what.replace(/\W/g, '')}`);
    const r = await run([...argv, '--dump-vmsa', dir]);
    expect(r.code).toBe(0);
    expect(readdirSync(dir).sort()).toEqual(['vmsa0.bin', 'vmsa1.bin', 'vmsa2.bin']);
    expect(read(join(dir, 'vmsa0.bin'))).toEqual(read(join(MEASURE, `derived/vmsa/${bsp}.bin`)));
    expect(read(join(dir, 'vmsa1.bin'))).toEqual(read(join(MEASURE, `derived/vmsa/${ap}.bin`)));
    expect(read(join(dir, 'vmsa2.bin'))).toEqual(read(join(dir, 'vmsa1.bin')));
  });
});

describe('progress', () => {
  it('--progress over the firmware and SVSM image reaches 100 % on stderr only', async () => {
    const r = await run([
      '--mode',
      'snp:svsm',
      '--vcpus',
      '2',
      '--vcpu-type',
      'EPYC-v4',
      '--ovmf',
      SVSM_OVMF,
      '--svsm',
      SVSM,
      '--vars-size',
      '540672',
      '--progress',
    ]);
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/^[0-9a-f]{96}$/);
    expect(r.err).toContain('measure: 100% (4.6 of 4.6 MiB)');
    expect(r.err).toMatch(/measure: done, 4\.6 MiB in \d+\.\d s$/);
  });
});

describe('refusals (exit 2 usage, 1 runtime), nothing written', () => {
  it.each([
    ['snp without --vcpus', ['--mode', 'snp', '--ovmf', AMDSEV, '--vcpu-type', 'EPYC'], 2, /missing --vcpus N in guest mode 'snp'/],
    [
      'snp QEMU without a vCPU',
      ['--mode', 'snp', '--ovmf', AMDSEV, '--vcpus', '1'],
      2,
      /missing --vcpu-type or --vcpu-sig or --vcpu-family in guest mode 'snp'/,
    ],
    [
      'seed in another mode',
      ['--mode', 'seves', '--ovmf', AMDSEV, '--vcpus', '1', '--vcpu-type', 'EPYC', '--snp-ovmf-hash', A3],
      2,
      /--snp-ovmf-hash only works with mode snp/,
    ],
    ['short seed', [...snp1, '--snp-ovmf-hash', A3.slice(2)], 2, /--snp-ovmf-hash must be 96 hex digits/],
    ['--sev-features in snp', [...snp1, '--sev-features', '0x1'], 2, /SNP takes --guest-features/],
    [
      '--guest-features in seves',
      ['--mode', 'seves', '--ovmf', AMDSEV, '--vcpus', '1', '--vcpu-type', 'EPYC', '--guest-features', '0x1'],
      2,
      /seves takes --sev-features/,
    ],
    [
      '--guest-features in svsm',
      ['--mode', 'snp:svsm', '--ovmf', SVSM_OVMF, '--svsm', SVSM, '--vars-size', '4096', '--vcpus', '1', '--vcpu-type', 'EPYC', '--guest-features', '0x21'],
      2,
      /fixes it at 0x1/,
    ],
    [
      'svsm without --svsm',
      ['--mode', 'snp:svsm', '--ovmf', SVSM_OVMF, '--vars-size', '4096', '--vcpus', '1', '--vcpu-type', 'EPYC'],
      2,
      /snp:svsm mode requires --svsm/,
    ],
    [
      'svsm without vars',
      ['--mode', 'snp:svsm', '--ovmf', SVSM_OVMF, '--svsm', SVSM, '--vcpus', '1', '--vcpu-type', 'EPYC'],
      2,
      /requires --vars-size or --vars-file/,
    ],
    [
      'both vars flags',
      ['--mode', 'snp:svsm', '--ovmf', SVSM_OVMF, '--svsm', SVSM, '--vars-size', '4096', '--vars-file', 'OVMF_VARS.fd', '--vcpus', '1', '--vcpu-type', 'EPYC'],
      2,
      /not both/,
    ],
    [
      'svsm with a kernel',
      ['--mode', 'snp:svsm', '--ovmf', SVSM_OVMF, '--svsm', SVSM, '--vars-size', '4096', '--vcpus', '1', '--vcpu-type', 'EPYC', '--kernel', 'empty'],
      2,
      /--kernel is not measured in snp:svsm/,
    ],
    [
      'svsm on ec2',
      ['--mode', 'snp:svsm', '--ovmf', SVSM_OVMF, '--svsm', SVSM, '--vars-size', '4096', '--vcpus', '1', '--vmm-type', 'ec2'],
      2,
      /only defined for the QEMU VMM/,
    ],
    ['--svsm in snp', [...snp1, '--svsm', SVSM], 2, /belong to mode snp:svsm/],
    [
      'vars size not whole pages',
      ['--mode', 'snp:svsm', '--ovmf', SVSM_OVMF, '--svsm', SVSM, '--vars-size', '1000', '--vcpus', '1', '--vcpu-type', 'EPYC'],
      2,
      /OVMF_VARS size must be a positive multiple of 4096/,
    ],
    [
      'vars file missing',
      ['--mode', 'snp:svsm', '--ovmf', SVSM_OVMF, '--svsm', SVSM, '--vars-file', 'nope.fd', '--vcpus', '1', '--vcpu-type', 'EPYC'],
      1,
      /cannot read the OVMF_VARS file nope\.fd: ENOENT/,
    ],
    [
      'svsm image not an SVSM',
      ['--mode', 'snp:svsm', '--ovmf', SVSM_OVMF, '--svsm', AMDSEV, '--vars-size', '4096', '--vcpus', '1', '--vcpu-type', 'EPYC'],
      1,
      /no SVSM_INFO entry/,
    ],
    ['firmware not whole pages', ['--mode', 'snp:ovmf-hash', '--ovmf', 'empty'], 1, /multiple of 4096/],
    ['snp firmware without reset block', ['--mode', 'snp', '--ovmf', 'OVMF_VARS.fd', '--vcpus', '1', '--vcpu-type', 'EPYC'], 1, /no OVMF footer table/],
  ])('%s', async (_what, argv, code, message) => {
    const r = await run([...(argv as string[]), '--dump-vmsa', 'd']);
    expect(r.code).toBe(code);
    expect(r.out).toBe('');
    expect(r.err).toMatch(message as RegExp);
    expect(r.err.startsWith('kbctl measure: ')).toBe(true);
    if (code === 2) expect(r.err).toContain("Run 'kbctl measure --help'.");
    expect(existsSync(join(work.dir, 'd'))).toBe(false);
  });

  it('--help lists the SNP modes and flags', async () => {
    const r = await run(['--help']);
    expect(r.code).toBe(0);
    for (const f of ['snp:ovmf-hash', 'snp:svsm', '--guest-features', '--snp-ovmf-hash', '--svsm', '--vars-size', '--vars-file']) expect(r.out).toContain(f);
  });
});
