import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { openSecret, parseSecretTable } from '@kb/sev';
import { kbctl, MEASURE, read, SEV, SEVCTL, tempDir } from './support/cli';

/**
 * sevctl's CLI golden tests (shared/vectors/sev/sevctl_cli_vectors.json, VECTORS.md §E and §F) through
 * `kbctl measurement build` and `kbctl secret build`.
 */
interface MeasurementCase {
  name: string;
  api_major: number;
  api_minor: number;
  build_id: number;
  policy: number;
  nonce_b64?: string;
  launch_digest_b64?: string;
  firmware_file?: string;
  kernel_file?: string;
  initrd_file?: string;
  cmdline?: string;
  num_cpus?: number;
  vmsa_cpu0?: string;
  vmsa_cpu1?: string;
  launch_measure_blob_b64?: string;
  expected_b64: string;
}
const vectors = JSON.parse(readFileSync(join(SEV, 'sevctl_cli_vectors.json'), 'utf8')) as {
  measurement_build: { tik_file: string; cases: MeasurementCase[] };
  secret_build: {
    tik_file: string;
    tek_file: string;
    iv_b64: string;
    launch_measure_blob_b64: string;
    cases: { secrets: [string, string][]; expected_header_b64: string; expected_payload_b64: string }[];
  };
};
/** The JSON names files as in the sevctl repository; they are under shared/vectors/sev/sevctl/. */
const file = (p: string) => join(SEVCTL, p.replace(/^virtee-sevctl\/tests\/data\//, ''));

let work: ReturnType<typeof tempDir>;
beforeAll(() => {
  work = tempDir('sevctl');
});
afterAll(() => work.cleanup());
const run = (argv: string[]) => kbctl(argv, { cwd: work.dir });

describe('kbctl measurement build = sevctl measurement build (E1–E4)', () => {
  const tik = file(vectors.measurement_build.tik_file);

  it.each(vectors.measurement_build.cases.map((c) => [c.name, c] as const))('%s', async (_name, c) => {
    const argv = [
      'measurement',
      'build',
      '--api-major',
      String(c.api_major),
      '--api-minor',
      String(c.api_minor),
      '--build-id',
      String(c.build_id),
      '--policy',
      `0x${c.policy.toString(16)}`,
      '--tik',
      tik,
    ];
    if (c.nonce_b64) argv.push('--nonce', c.nonce_b64);
    if (c.launch_measure_blob_b64) argv.push('--launch-measure-blob', c.launch_measure_blob_b64);
    if (c.launch_digest_b64) argv.push('--launch-digest', c.launch_digest_b64);
    if (c.firmware_file) argv.push('--firmware', file(c.firmware_file));
    if (c.kernel_file) argv.push('--kernel', file(c.kernel_file), '--initrd', file(c.initrd_file!), '--cmdline', c.cmdline!);
    if (c.num_cpus) argv.push('--num-cpus', String(c.num_cpus), '--vmsa-cpu0', file(c.vmsa_cpu0!), '--vmsa-cpu1', file(c.vmsa_cpu1!));
    expect(await run(argv)).toEqual({ code: 0, out: c.expected_b64, err: '' });
  });

  it('--tik and --nonce also take base64 and files; --outfile writes the raw 48 bytes', async () => {
    const c = vectors.measurement_build.cases[1]!;
    writeFileSync(join(work.dir, 'nonce.bin'), Buffer.from(c.nonce_b64!, 'base64'));
    const r = await run([
      'measurement',
      'build',
      '--api-major',
      '1',
      '--api-minor',
      '40',
      '--build-id',
      '40',
      '--policy',
      '3',
      '--tik',
      read(tik).toString('base64'),
      '--nonce',
      'nonce.bin',
      '--firmware',
      file(c.firmware_file!),
      '--outfile',
      'm.bin',
    ]);
    expect(r).toEqual({ code: 0, out: 'Wrote outfile: m.bin', err: '' });
    expect(read(join(work.dir, 'm.bin')).toString('base64')).toBe(c.expected_b64);
  });

  it.each([
    [
      ['--api-minor', '40', '--build-id', '40', '--policy', '3', '--tik', tik, '--nonce', 'AAAAAAAAAAAAAAAAAAAAAA==', '--launch-digest', 'x'],
      2,
      '--api-major is required',
    ],
    [['--api-major', '256', '--api-minor', '40', '--build-id', '40', '--policy', '3', '--tik', tik], 2, '--api-major must be at most 255'],
    [
      ['--api-major', '1', '--api-minor', '40', '--build-id', '40', '--policy', 'three', '--tik', tik],
      2,
      '--policy must be a decimal or 0x-prefixed hex integer',
    ],
    [
      ['--api-major', '1', '--api-minor', '40', '--build-id', '40', '--policy', '3', '--tik', tik, '--nonce', 'AAAAAAAAAAAAAAAAAAAAAA=='],
      2,
      'One of --firmware or --launch-digest must be specified.',
    ],
    [
      [
        '--api-major',
        '1',
        '--api-minor',
        '40',
        '--build-id',
        '40',
        '--policy',
        '3',
        '--tik',
        tik,
        '--launch-digest',
        'xkvRAfyaSizgonxAjZIAkR8TmolUabBKQKb6KJCDDSM=',
      ],
      2,
      'One of --nonce or --launch-measure-blob must be specified.',
    ],
    [
      [
        '--api-major',
        '1',
        '--api-minor',
        '40',
        '--build-id',
        '40',
        '--policy',
        '3',
        '--tik',
        tik,
        '--nonce',
        'AAAAAAAAAAAAAAAAAAAAAA==',
        '--launch-digest',
        'AAAA',
      ],
      1,
      'the --launch-digest must be 32 bytes, got 3',
    ],
    [
      [
        '--api-major',
        '1',
        '--api-minor',
        '40',
        '--build-id',
        '40',
        '--policy',
        '3',
        '--tik',
        'no-such-tik',
        '--nonce',
        'AAAAAAAAAAAAAAAAAAAAAA==',
        '--launch-digest',
        'xkvRAfyaSizgonxAjZIAkR8TmolUabBKQKb6KJCDDSM=',
      ],
      2,
      '--tik ("no-such-tik" is neither an existing file nor base64) is not valid base64',
    ],
    [
      [
        '--api-major',
        '1',
        '--api-minor',
        '40',
        '--build-id',
        '40',
        '--policy',
        '3',
        '--tik',
        tik,
        '--nonce',
        'AAAA',
        '--launch-digest',
        'xkvRAfyaSizgonxAjZIAkR8TmolUabBKQKb6KJCDDSM=',
      ],
      1,
      'the --nonce must be 16 bytes, got 3',
    ],
    [
      [
        '--api-major',
        '1',
        '--api-minor',
        '49',
        '--build-id',
        '6',
        '--policy',
        '5',
        '--tik',
        tik,
        '--nonce',
        'AAAAAAAAAAAAAAAAAAAAAA==',
        '--firmware',
        file('OVMF.amdsev.fd_trimmed_edk2-ovmf-20220126gitbb1bba3d77-4.el9'),
      ],
      2,
      'SEV-ES policy bit is set, CPU/VMSA info must be specified',
    ],
    [
      [
        '--api-major',
        '1',
        '--api-minor',
        '49',
        '--build-id',
        '6',
        '--policy',
        '5',
        '--tik',
        tik,
        '--nonce',
        'AAAAAAAAAAAAAAAAAAAAAA==',
        '--firmware',
        file('OVMF.amdsev.fd_trimmed_edk2-ovmf-20220126gitbb1bba3d77-4.el9'),
        '--num-cpus',
        '2',
        '--vmsa-cpu0',
        file('vmsa0.bin'),
      ],
      2,
      '--num-cpus, --vmsa-cpu0, --vmsa-cpu1 must be specified together',
    ],
    [
      [
        '--api-major',
        '1',
        '--api-minor',
        '40',
        '--build-id',
        '40',
        '--policy',
        '3',
        '--tik',
        tik,
        '--nonce',
        'AAAAAAAAAAAAAAAAAAAAAA==',
        '--firmware',
        file('OVMF.amdsev.fd_trimmed_edk2-ovmf-20220126gitbb1bba3d77-4.el9'),
        '--kernel',
        file('measurement/vmlinuz-fake'),
      ],
      2,
      '--kernel, --initrd, --cmdline must be specified together',
    ],
    [
      [
        '--api-major',
        '1',
        '--api-minor',
        '40',
        '--build-id',
        '40',
        '--policy',
        '3',
        '--tik',
        tik,
        '--nonce',
        'AAAAAAAAAAAAAAAAAAAAAA==',
        '--firmware',
        'missing.fd',
      ],
      1,
      'cannot read the firmware from missing.fd: ENOENT',
    ],
  ])('%j → exit %i', async (argv, code, message) => {
    const r = await run(['measurement', 'build', ...argv]);
    expect(r.code).toBe(code);
    expect(r.out).toBe('');
    expect(r.err).toContain(`kbctl measurement build: ${message}`);
  });
});

describe('kbctl secret build = sevctl secret build (F1, F2, F3)', () => {
  const s = vectors.secret_build;
  const common = ['--tik', file(s.tik_file), '--tek', file(s.tek_file), '--launch-measure-blob', s.launch_measure_blob_b64];

  it.each(s.cases.map((c, i) => [`F${i + 1}`, c] as const))('%s: exact header and payload with --iv', async (_id, c) => {
    const argv = [
      'secret',
      'build',
      ...common,
      '--iv',
      s.iv_b64,
      ...c.secrets.flatMap(([guid, f]) => ['--secret', `${guid}:${file(f)}`]),
      'hdr.bin',
      'payload.bin',
    ];
    const r = await run(argv);
    expect(r).toEqual({ code: 0, out: 'Wrote header to: hdr.bin\nWrote payload to: payload.bin', err: '' });
    expect(read(join(work.dir, 'hdr.bin')).toString('base64')).toBe(c.expected_header_b64);
    expect(read(join(work.dir, 'payload.bin')).toString('base64')).toBe(c.expected_payload_b64);
  });

  it('F1 plaintext table, and a random-IV packet opens with the keys and the blob (the Secure Processor side)', async () => {
    const r = await run(['secret', 'build', ...common, '--secret', `luks-key:${file('secret/secret1.txt')}`, 'h', 'p']);
    expect(r.code).toBe(0);
    const header = read(join(work.dir, 'h'));
    expect(header.subarray(4, 20).toString('base64')).not.toBe(s.iv_b64);
    const plain = openSecret({
      tek: read(file(s.tek_file)),
      tik: read(file(s.tik_file)),
      measure: Buffer.from(s.launch_measure_blob_b64, 'base64').subarray(0, 32),
      header,
      data: read(join(work.dir, 'p')),
    });
    expect(plain.toString('hex')).toBe(
      '42f5741edd71664d963eef4287ff173b3a000000e5696873f084734992ec06879ce3da0b260000004d592d4c554b532d50415353504852415345000000000000',
    );
    expect(parseSecretTable(plain)).toEqual([{ guid: '736869e5-84f0-4973-92ec-06879ce3da0b', data: Buffer.from('MY-LUKS-PASSPHRASE') }]);
  });

  it('F3: a 16 KiB secret does not fit the OVMF secret page: refused (sevctl writes 16384 bytes that OVMF cannot hold)', async () => {
    const r = await run([
      'secret',
      'build',
      ...common,
      '--secret',
      `736869e5-84f0-4973-92ec-06879ce3da0b:${join(MEASURE, 'sevctl/data/secret/secret3.txt')}`,
      'h3',
      'p3',
    ]);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/secret table of 16384 bytes \(with padding\) does not fit the 4096-byte OVMF secret page/);
  });

  it.each([
    [['--tek', 'x', '--launch-measure-blob', 'x', '--secret', 'a:b', 'h', 'p'], 2, '--tik is required'],
    [[...common, 'h', 'p'], 2, 'give at least one --secret GUID:FILE'],
    [[...common, '--secret', 'nocolon', 'h', 'p'], 2, '--secret must be GUID:FILE, got "nocolon"'],
    [[...common, '--secret', 'not-a-guid:f', 'h', 'p'], 2, "secret 'not-a-guid' is neither a GUID nor a known alias (luks-key)"],
    [[...common, '--iv', 'AAAA', '--secret', 'luks-key:f', 'h', 'p'], 2, 'the --iv must be 16 bytes, got 3'],
    [[...common, '--secret', 'luks-key:missing.txt', 'h', 'p'], 1, 'cannot read the secret 736869e5-84f0-4973-92ec-06879ce3da0b from missing.txt: ENOENT'],
    [
      ['--tik', file(s.tik_file), '--tek', file(s.tek_file), '--launch-measure-blob', 'AAAA', '--secret', `luks-key:${file('secret/secret1.txt')}`, 'h', 'p'],
      1,
      'the --launch-measure-blob must be the 48-byte LAUNCH_MEASURE value (or its 32-byte MEASURE), got 3 bytes',
    ],
    [
      [
        '--tik',
        file('secret/secret1.txt'),
        '--tek',
        file(s.tek_file),
        '--launch-measure-blob',
        s.launch_measure_blob_b64,
        '--secret',
        `luks-key:${file('secret/secret1.txt')}`,
        'h',
        'p',
      ],
      1,
      'the TIK must be 16 bytes, got 18',
    ],
    [
      [
        ...common,
        '--secret',
        `luks-key:${file('secret/secret1.txt')}`,
        '--secret',
        `736869E5-84F0-4973-92EC-06879CE3DA0B:${file('secret/secret2.txt')}`,
        'h',
        'p',
      ],
      1,
      'duplicate secret table GUID 736869e5-84f0-4973-92ec-06879ce3da0b',
    ],
    [[...common, '--secret', `luks-key:${file('secret/secret1.txt')}`, 'h'], 2, 'expected 2 argument(s), got 1'],
  ])('%j → exit %i', async (argv, code, message) => {
    const r = await run(['secret', 'build', ...argv]);
    expect(r.code).toBe(code);
    expect(r.out).toBe('');
    expect(r.err).toContain(`kbctl secret build: ${message}`);
  });
});
