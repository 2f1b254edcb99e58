import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { evaluate, parsePolicy } from '@kb/policy';
import { AMDSEV, kbctl, MEASURE, OVMFX64, SEVCTL_OVMF, tempDir } from './support/cli';

/** `kbctl policy from-configs`: one digest per allowed launch configuration, as a document the broker accepts. */

let work: ReturnType<typeof tempDir>;
beforeAll(() => {
  work = tempDir('policy');
  writeFileSync(join(work.dir, 'empty'), '');
});
afterAll(() => work.cleanup());
const run = (argv: string[]) => kbctl(['policy', 'from-configs', ...argv], { cwd: work.dir });
const measure = async (argv: string[]) => (await kbctl(['measure', ...argv], { cwd: work.dir })).out;

describe('digests', () => {
  it('SEV-ES, vCPUs 1–4: the four digests `measure` gives, with the derived §G legacy values among them', async () => {
    const r = await run(['--ovmf', AMDSEV, '--kernel', 'empty', '--initrd', 'empty', '--policy', '0x5', '--vcpus', '1-4', '--vcpu-type', 'EPYC-v4']);
    expect(r.code).toBe(0);
    const doc = JSON.parse(r.out);
    const expected = await Promise.all(
      [1, 2, 3, 4].map((n) =>
        measure(['--mode', 'seves', '--ovmf', AMDSEV, '--kernel', 'empty', '--initrd', 'empty', '--vcpus', String(n), '--vcpu-type', 'EPYC-v4']),
      ),
    );
    expect(doc).toEqual({ version: 1, allowedDigests: [...expected].sort(), allowedPolicies: [5] });
    // VECTORS.md §G, legacy VMSA: 1 and 4 vCPUs
    expect(doc.allowedDigests).toEqual(
      expect.arrayContaining([
        '664f688c75cd5c08855ead4f11501ff967e29762d16c8d589b8e6d7b6c4daa36',
        'bfe06ed004ea18350152361ca8aa4860e807976ef67e756b4b9e5b724e0713c9',
      ]),
    );
    expect(parsePolicy(doc)).toEqual(doc);
    // stderr lists each digest with the configuration it came from
    expect(r.err).toContain('664f688c75cd5c08855ead4f11501ff967e29762d16c8d589b8e6d7b6c4daa36  seves, policy 0x5, 1 vCPU, EPYC-v4, legacy VMSA');
    expect(r.err.split('\n')).toHaveLength(4);
  });

  it('the product of CPUs × vCPU counts × FPU flavours, plus SEV policies (one digest each), deduplicated', async () => {
    const r = await run([
      '--ovmf',
      SEVCTL_OVMF,
      '--policy',
      '1',
      '--policy',
      '0x5',
      '--policy',
      '0x7',
      '--vcpus',
      '1,2',
      '--vcpus',
      '2-3',
      '--vcpu-type',
      'EPYC-Milan',
      '--vcpu-sig',
      '0xa00f11',
      '--vcpu-family',
      '23',
      '--vcpu-model',
      '1',
      '--vcpu-stepping',
      '2',
      '--vmsa-fpu',
      'legacy',
      '--vmsa-fpu',
      'init2',
      '--quiet',
    ]);
    expect(r.err).toBe('');
    const doc = JSON.parse(r.out);
    // SEV: 1; SEV-ES: 3 counts × 2 distinct CPUs (EPYC-Milan = 0xa00f11) × 2 flavours; 0x5 and 0x7 share digests
    expect(doc.allowedDigests).toHaveLength(1 + 3 * 2 * 2);
    expect(doc.allowedPolicies).toEqual([1, 5, 7]);
    expect(doc.allowedDigests).toContain('2f6fc6065f4abc131eb4fb2b5090a542636eae84a94c0db0fdd5f405cb372ff5'); // E2 LD
    const e4Style = await measure([
      '--mode',
      'seves',
      '--ovmf',
      SEVCTL_OVMF,
      '--vcpus',
      '3',
      '--vcpu-family',
      '25',
      '--vcpu-model',
      '1',
      '--vcpu-stepping',
      '1',
      '--vmsa-fpu',
      'init2',
    ]);
    expect(doc.allowedDigests).toContain(e4Style);
  });

  it('a --config file (paths relative to it), combined with flags; --out, --allow-debug, --min-fw-api', async () => {
    writeFileSync(
      join(work.dir, 'configs.json'),
      JSON.stringify([
        { ovmf: AMDSEV, policy: 5, vcpus: [1, 4], 'vcpu-type': 'EPYC-v4', kernel: 'empty', initrd: 'empty', append: '' },
        { ovmf: SEVCTL_OVMF, policy: ['0x4'], vcpus: '2', 'vcpu-sig': '0xa00f11' },
      ]),
    );
    const r = await run(['--config', 'configs.json', '--ovmf', SEVCTL_OVMF, '--policy', '0', '--allow-debug', '--min-fw-api', '1.51', '--out', 'policy.json']);
    expect(r.code).toBe(0);
    expect(r.out).toBe('');
    expect(r.err).toMatch(/^wrote policy\.json: 4 digests, 4 configurations$/m);
    const doc = JSON.parse(readFileSync(join(work.dir, 'policy.json'), 'utf8'));
    expect(doc.allowedPolicies).toEqual([0, 4, 5]);
    expect(doc.allowDebug).toBe(true);
    expect([doc.minFwApiMajor, doc.minFwApiMinor]).toEqual([1, 51]);
    expect(doc.allowedDigests).toEqual(
      expect.arrayContaining([
        '664f688c75cd5c08855ead4f11501ff967e29762d16c8d589b8e6d7b6c4daa36',
        'bfe06ed004ea18350152361ca8aa4860e807976ef67e756b4b9e5b724e0713c9',
      ]),
    );
    // the broker's evaluation admits a launch with one of the digests and refuses another digest
    const policy = parsePolicy(doc);
    const facts = { sevPolicy: 5, apiMajor: 1, apiMinor: 55, buildId: 21, now: new Date() };
    expect(
      evaluate([{ name: 'p', kind: 'tenant-default', policy }], { ...facts, launchDigest: '664f688c75cd5c08855ead4f11501ff967e29762d16c8d589b8e6d7b6c4daa36' }),
    ).toEqual({ allowed: true });
    expect(evaluate([{ name: 'p', kind: 'tenant-default', policy }], { ...facts, launchDigest: '00'.repeat(32) }).allowed).toBe(false);
  });
});

describe('SNP measurements: a policy whose snp section admits exactly them', () => {
  it('snp: vCPUs × guest features give A1, A2, A12 and A13', async () => {
    const r = await run([
      '--mode',
      'snp',
      '--ovmf',
      AMDSEV,
      '--kernel',
      'empty',
      '--initrd',
      'empty',
      '--vcpus',
      '1,4',
      '--vcpu-type',
      'EPYC-v4',
      '--guest-features',
      '0x1',
      '--guest-features',
      '0x21',
    ]);
    expect(r.code).toBe(0);
    expect(JSON.parse(r.out)).toEqual({
      version: 1,
      snp: {
        allowedMeasurements: [
          '329c8ce0972ae52343b64d34a434a86f245dfd74f5ed7aae15d22efc78fb9683632b9b50e4e1d7fa41179ef98a7ef198', // A1
          '4953b1fb416fa874980e8442b3706d345926d5f38879134e00813c5d7abcbe78eafe7b422907be0b4698e2414a631942', // A12
          '5061fffb019493a903613d56d54b94912a1a2f9e4502385f5c194616753720a92441310ba6c4933de877c36e23046ad5', // A13
          'ddc5224521617a536ee7ce9dd6224d1b58a8d4fda1c741f3ac99fc4bfa04ba6e9fc98646d4a07a9079397fa3852819b5', // A2
        ],
      },
    });
    expect(r.err).toContain(
      'ddc5224521617a536ee7ce9dd6224d1b58a8d4fda1c741f3ac99fc4bfa04ba6e9fc98646d4a07a9079397fa3852819b5  snp, 1 vCPU, EPYC-v4, guest features 0x1, init2 VMSA',
    );
    // the broker's parser takes it as it is: `kbctl policy put` stores it
    expect(parsePolicy(JSON.parse(r.out)).snp?.allowedMeasurements).toEqual(JSON.parse(r.out).snp.allowedMeasurements);
  });

  it('a --config file with snp:svsm (A24, A25) and both FPU flavours; --out', async () => {
    const fixtures = join(MEASURE, 'sev-snp-measure/fixtures');
    writeFileSync(
      join(work.dir, 'snp.json'),
      JSON.stringify({
        mode: 'snp:svsm',
        ovmf: join(fixtures, 'svsm_ovmf.fd'),
        svsm: join(fixtures, 'svsm.bin'),
        'vars-size': 540672,
        vcpus: '2,4',
        'vcpu-type': 'EPYC-v4',
        'vmsa-fpu': ['init2', 'legacy'],
      }),
    );
    const r = await run(['--config', 'snp.json', '--out', 'snp-out.json']);
    expect(r.code).toBe(0);
    expect(r.err).toMatch(/^wrote snp-out\.json: 4 SNP measurements, 4 configurations$/m);
    const doc = JSON.parse(readFileSync(join(work.dir, 'snp-out.json'), 'utf8'));
    expect(doc.snp.allowedMeasurements).toHaveLength(4);
    expect(doc.snp.allowedMeasurements).toEqual(
      expect.arrayContaining([
        '27d154c27b7b359c935e250ec6fee72aa0ae8c1225e3b0e1cf46a9567e938066d7d6f94bbdc4a857818bdb79277a44b2',
        '9b94745036aafddf4f7f8b00c7513abb5b7703178cb95aaa57928bd963d68d3bfcb715d6019b9167ee2517b11b0d9be7',
      ]),
    );
  });

  it.each([
    [
      ['--mode', 'snp', '--ovmf', AMDSEV, '--vcpus', '1', '--vcpu-type', 'EPYC-v4', '--policy', '0x30000'],
      'SNP guest policies are not part of this document yet (issue #17)',
    ],
    [['--mode', 'snp', '--ovmf', AMDSEV, '--vcpu-type', 'EPYC-v4'], 'mode snp: give the allowed vCPU counts (--vcpus)'],
    [['--mode', 'snp', '--ovmf', AMDSEV, '--vcpus', '1'], 'mode snp: give the allowed CPUs'],
    [['--mode', 'seves', '--ovmf', AMDSEV, '--policy', '5'], '--mode takes snp or snp:svsm here'],
    [['--ovmf', AMDSEV, '--policy', '1', '--guest-features', '0x1'], '--guest-features needs --mode snp or snp:svsm'],
    [['--mode', 'snp', '--ovmf', AMDSEV, '--vcpus', '1', '--vcpu-type', 'EPYC-v4', '--allow-debug'], '--allow-debug is a SEV rule'],
    [
      ['--mode', 'snp', '--ovmf', AMDSEV, '--vcpus', '1', '--vcpu-type', 'EPYC-v4', '--config', 'sev.json'],
      'SNP measurements and SEV/SEV-ES digests go into separate documents',
    ],
  ])('%j → exit 2', async (argv, message) => {
    writeFileSync(join(work.dir, 'sev.json'), JSON.stringify({ ovmf: AMDSEV, policy: 1 }));
    const r = await run(argv as string[]);
    expect(r.code).toBe(2);
    expect(r.out).toBe('');
    expect(r.err).toContain(message as string);
  });

  it('A16 through from-configs: a kernel for an OVMF without SNP_KERNEL_HASHES exits 1', async () => {
    const r = await run(['--mode', 'snp', '--ovmf', OVMFX64, '--kernel', 'empty', '--vcpus', '1', '--vcpu-type', 'EPYC-v4']);
    expect(r.code).toBe(1);
    expect(r.err).toContain("Kernel specified but OVMF metadata doesn't include SNP_KERNEL_HASHES section");
  });
});

describe('errors', () => {
  it.each([
    [[], 2, 'give launch configurations with --ovmf/--policy/... or --config FILE'],
    [['--ovmf', AMDSEV], 2, 'flags: give at least one allowed guest policy'],
    [['--policy', '1'], 2, 'flags: the firmware (--ovmf / "ovmf") is required'],
    [['--ovmf', AMDSEV, '--policy', '5', '--vcpu-type', 'EPYC'], 2, 'policy 0x5 is SEV-ES: give the allowed vCPU counts (--vcpus)'],
    [['--ovmf', AMDSEV, '--policy', '5', '--vcpus', '2'], 2, 'policy 0x5 is SEV-ES: give the allowed CPUs'],
    [['--ovmf', AMDSEV, '--policy', '5', '--vcpus', '0-2', '--vcpu-type', 'EPYC'], 2, '--vcpus 0-2 must be a range within 1..4096'],
    [['--ovmf', AMDSEV, '--policy', '5', '--vcpus', 'all', '--vcpu-type', 'EPYC'], 2, '--vcpus "all" must be N, N-M or a comma list'],
    [
      ['--ovmf', AMDSEV, '--policy', '5', '--vcpus', '1-4096', '--vcpu-type', 'EPYC', '--vcpu-sig', '1', '--vmsa-fpu', 'legacy', '--vmsa-fpu', 'init2'],
      2,
      'more than 4096 launch configurations',
    ],
    [['--ovmf', AMDSEV, '--policy', '0'], 2, 'the broker would refuse this policy: no entry of allowedPolicies passes the bit rules'],
    [['--ovmf', AMDSEV, '--policy', '0x41'], 2, 'the broker would refuse this policy: allowedPolicies[0] 0x41 sets reserved bits'],
    [['--ovmf', AMDSEV, '--policy', '1', '--min-fw-api', '1'], 2, '--min-fw-api must be MAJOR.MINOR'],
    [['--ovmf', OVMFX64, '--policy', '1', '--kernel', 'empty'], 1, 'does not support kernel hashes'],
    [['--ovmf', 'missing.fd', '--policy', '1'], 1, 'cannot read the firmware from missing.fd: ENOENT'],
    [['--config', 'missing.json'], 1, 'cannot read the configuration from missing.json: ENOENT'],
  ])('%j → exit %i', async (argv, code, message) => {
    const r = await run(argv as string[]);
    expect(r.code).toBe(code);
    expect(r.out).toBe('');
    expect(r.err).toContain(message as string);
  });

  it.each([
    ['{"ovmf": 1', 'bad.json is not valid JSON'],
    ['[1]', 'bad.json[0] must be a JSON object'],
    ['{"ovmf": "x", "polcy": 1}', 'bad.json: unknown key "polcy"'],
    ['{"ovmf": ["a", "b"], "policy": 1}', 'bad.json: "ovmf" takes one value'],
    ['{"ovmf": "x", "policy": []}', 'bad.json: "policy" must be a string, a number or a non-empty list of them'],
  ])('config %s', async (text, message) => {
    writeFileSync(join(work.dir, 'bad.json'), text);
    const r = await run(['--config', 'bad.json']);
    expect(r.code).toBe(2);
    expect(r.err).toContain(message);
  });
});
