import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import {
  buildPaddedSevHashTable,
  buildVmsaPair,
  computeMeasurement,
  cpuSignature,
  launchDigest,
  openSecret,
  parseOvmfFooterTable,
  parseSecretTable,
  sevEsResetEip,
  startSession,
  type KernelHashesInput,
  type LaunchDigestInput,
} from '@kb/sev';
import { createPlatform, SimulatedSecureProcessor, type SimulatedPlatform } from '@kb/sev-sim';
import { AMDSEV, kbctl, SEVCTL_OVMF, tempDir, type Result } from './support/cli';
import { domainFixture } from './support/domain-fixture';
import { fakeHost } from './support/libvirt';
import { debugLines, pool, requireLv, requireVirsh, runLv } from './support/lv';

/**
 * Differential test: libvirt's virt-qemu-sev-validate (Debian libvirt-clients-qemu 9.0.0) and `kbctl validate` on the
 * same generated inputs must give the same exit code, print the same intermediates under --debug, and produce secret
 * packets the other side accepts (ours: the simulated Secure Processor; theirs: @kb/sev openSecret +
 * parseSecretTable). Missing tools fail this suite with what to install; they are never skipped.
 */
const SEED = Number(process.env.KB_DIFF_SEED ?? 0x5ee5ee);
const CASES = Number(process.env.KB_DIFF_CASES ?? 48);
const PARALLEL = 4;

let work: ReturnType<typeof tempDir>;
let platforms: SimulatedPlatform[];
beforeAll(() => {
  requireLv();
  requireVirsh();
  work = tempDir('diff');
  // two simulated platforms with different firmware versions: the measurement MACs the version
  platforms = [createPlatform({ name: 'sim-a' }), createPlatform({ name: 'sim-b', firmware: { apiMajor: 0, apiMinor: 24, build: 15 } })];
});
afterAll(() => work?.cleanup());

/** Deterministic bytes for a case (fast-check draws the seeds; the bytes follow from them). */
function bytes(seed: number, label: string, n: number): Buffer {
  const out: Buffer[] = [];
  for (let i = 0; out.length * 32 < n; i++) out.push(createHash('sha256').update(`${seed}/${label}/${i}`).digest());
  return Buffer.concat(out).subarray(0, n);
}

const SKUS: [number, number, number][] = [
  [23, 1, 2],
  [23, 49, 0],
  [25, 1, 1],
  [25, 17, 0],
  [26, 0, 0],
];
/** Guest policies: flags only (a simulated launch can use them), and with a minimum firmware in bits 16–31. */
const SIM_POLICIES = [0x1, 0x3, 0x5, 0x7, 0x0, 0x4, 0x21, 0x25];
const OTHER_POLICIES = [0x00010001, 0x00010005, 0x18000005, 0x00170007];
const WRONG = ['measure-bit', 'nonce-bit', 'tik', 'policy-arg', 'api-minor', 'firmware-byte', 'vcpus', 'cmdline', 'init2-vmsa'] as const;
type Wrong = (typeof WRONG)[number];

const caseArb = fc.record({
  seed: fc.integer(),
  tail: fc.constantFrom(AMDSEV, SEVCTL_OVMF),
  prefixBlocks: fc.integer({ min: 0, max: 512 }), // 16-byte blocks of random firmware before the OVMF tail
  useTk: fc.boolean(),
  kernel: fc.option(
    fc.record({
      kernelLen: fc.integer({ min: 0, max: 5000 }),
      initrdLen: fc.option(fc.integer({ min: 0, max: 3000 })),
      cmdline: fc.option(fc.string({ maxLength: 40 }).map((s) => s.replace(/\0/g, ''))),
    }),
    { freq: 2 },
  ),
  sim: fc.boolean(),
  policyIndex: fc.nat(),
  vcpus: fc.integer({ min: 1, max: 8 }),
  vmsaFiles: fc.constantFrom('sku', 'sku', 'legacy-files', 'random-files'),
  sku: fc.constantFrom(...SKUS),
  api: fc.tuple(fc.integer({ min: 0, max: 255 }), fc.integer({ min: 0, max: 255 }), fc.integer({ min: 0, max: 255 })),
  wrong: fc.option(fc.constantFrom(...WRONG), { freq: 2 }), // fast-check: null once in `freq` draws
  secrets: fc.option(
    fc.array(fc.record({ guid: fc.oneof(fc.uuid({ version: 4 }), fc.constant('luks-key')), len: fc.integer({ min: 0, max: 300 }) }), {
      minLength: 1,
      maxLength: 3,
    }),
    { freq: 2 },
  ),
});
type CaseSpec = typeof caseArb extends fc.Arbitrary<infer T> ? T : never;

interface Prepared {
  name: string;
  dir: string;
  args: string[];
  expected: number;
  tik: Buffer;
  tek: Buffer;
  measure: Buffer;
  secrets?: { guid: string; data: Buffer }[];
  sim?: { sp: SimulatedSecureProcessor; handle: number };
}

/** Writes a case's files and computes its measurement (from a simulated launch, or with computeMeasurement). */
function prepare(i: number, c: CaseSpec): Prepared {
  const dir = join(work.dir, `case-${i}`);
  mkdirSync(dir);
  const w = (name: string, data: Uint8Array | string) => {
    writeFileSync(join(dir, name), data);
    return name;
  };
  const firmware = Buffer.concat([bytes(c.seed, 'fw', c.prefixBlocks * 16), readFileSync(c.tail)]);
  w('fw.bin', firmware);
  const tik = bytes(c.seed, 'tik', 16);
  const tek = bytes(c.seed, 'tek', 16);
  const args: string[] = c.useTk ? ['--tk', w('tk.bin', Buffer.concat([tek, tik]))] : ['--tik', w('tik.bin', tik), '--tek', w('tek.bin', tek)];
  args.push('-f', 'fw.bin');

  const platform = platforms[c.seed & 1]!;
  const sim = c.sim || c.secrets !== null; // secret packets go into the simulated Secure Processor
  const policy = sim ? SIM_POLICIES[c.policyIndex % SIM_POLICIES.length]! : [...SIM_POLICIES, ...OTHER_POLICIES][c.policyIndex % 12]!;
  const es = (policy & 4) !== 0;
  const api: [number, number, number] = sim ? [platform.firmware.apiMajor, platform.firmware.apiMinor, platform.firmware.build] : c.api;
  let wrong: Wrong | null = c.wrong;
  if ((wrong === 'vcpus' || wrong === 'init2-vmsa') && !es) wrong = 'measure-bit';
  if (wrong === 'init2-vmsa' && c.vmsaFiles !== 'sku') wrong = 'nonce-bit';
  if (wrong === 'cmdline' && (!c.kernel || c.kernel.cmdline === null)) wrong = 'tik';

  let kernelHashes: KernelHashesInput | undefined;
  if (c.kernel) {
    const kernel = bytes(c.seed, 'kernel', c.kernel.kernelLen);
    args.push('-k', w('vmlinuz', kernel));
    const initrd = c.kernel.initrdLen === null ? undefined : bytes(c.seed, 'initrd', c.kernel.initrdLen);
    if (initrd) args.push('-r', w('initrd', initrd));
    const cmdline = c.kernel.cmdline ?? undefined;
    // `--cmdline=VALUE`: a value starting with '-' is not taken for an option by either parser
    if (cmdline !== undefined) args.push(`--cmdline=${wrong === 'cmdline' ? `${cmdline}x` : cmdline}`);
    kernelHashes = { kernel, initrd, cmdline };
  }

  let vmsas: { bsp: Buffer; ap: Buffer } | undefined;
  if (es) {
    args.push('-n', String(wrong === 'vcpus' ? c.vcpus + 1 : c.vcpus));
    const fpu = wrong === 'init2-vmsa' ? 'init2' : 'legacy';
    const pair = (f: 'legacy' | 'init2') =>
      buildVmsaPair({
        apResetEip: sevEsResetEip(parseOvmfFooterTable(firmware)),
        vmmType: 'qemu',
        vcpuSig: cpuSignature(c.sku[0], c.sku[1], c.sku[2]),
        sevFeatures: 0,
        fpu: f,
      });
    if (c.vmsaFiles === 'sku') {
      args.push('--cpu-family', String(c.sku[0]), '--cpu-model', String(c.sku[1]), '--cpu-stepping', String(c.sku[2]));
      vmsas = pair(fpu);
    } else {
      // user-supplied VMSA files: built ones, or any 4096 bytes (what is measured is what was given)
      vmsas = c.vmsaFiles === 'legacy-files' ? pair('legacy') : { bsp: bytes(c.seed, 'vmsa0', 4096), ap: bytes(c.seed, 'vmsa1', 4096) };
      args.push('-0', w('vmsa0.bin', vmsas.bsp), '-1', w('vmsa1.bin', vmsas.ap));
    }
  }

  const measuredFirmware = wrong === 'firmware-byte' ? Buffer.concat([firmware.subarray(0, -1), Buffer.from([firmware[firmware.length - 1]! ^ 1])]) : firmware;
  const input: LaunchDigestInput = es
    ? { mode: 'seves', firmware: measuredFirmware, kernelHashes, vcpus: c.vcpus, vmsas }
    : { mode: 'sev', firmware: measuredFirmware, kernelHashes };
  const digest = launchDigest(input);

  let measurement: Buffer;
  let simLaunch: Prepared['sim'];
  const launchTik = wrong === 'tik' ? bytes(c.seed, 'other-tik', 16) : tik;
  if (sim) {
    const session = startSession({ pdh: platform.pdh, policy, tik: launchTik, tek });
    const sp = new SimulatedSecureProcessor(platform);
    const handle = sp.launchStart({ policy, godhCert: session.godhCert, launchBlob: session.launchBlob });
    sp.launchUpdateData(handle, measuredFirmware);
    if (kernelHashes) sp.launchUpdateData(handle, buildPaddedSevHashTable(kernelHashes));
    if (es) for (let v = 0; v < c.vcpus; v++) sp.launchUpdateVmsa(handle, v === 0 ? vmsas!.bsp : vmsas!.ap);
    measurement = sp.launchMeasure(handle, bytes(c.seed, 'nonce', 16));
    expect(sp.launchDigest(handle)).toEqual(digest);
    simLaunch = { sp, handle };
  } else {
    const mnonce = bytes(c.seed, 'nonce', 16);
    measurement = Buffer.concat([computeMeasurement({ tik: launchTik, apiMajor: api[0], apiMinor: api[1], build: api[2], policy, digest, mnonce }), mnonce]);
  }
  if (wrong === 'measure-bit') measurement[c.seed & 31]! ^= 1 << ((c.seed >>> 5) & 7);
  if (wrong === 'nonce-bit') measurement[32 + (c.seed & 15)]! ^= 1;
  const argPolicy = wrong === 'policy-arg' ? policy ^ 0x2 : policy;
  const argApi = wrong === 'api-minor' ? [api[0], (api[1] + 1) & 0xff, api[2]] : api;
  args.push(
    '-m',
    measurement.toString('base64'),
    '--api-major',
    String(argApi[0]),
    '--api-minor',
    String(argApi[1]),
    '--build-id',
    String(argApi[2]),
    '--policy',
    String(argPolicy),
  );

  let secrets: Prepared['secrets'];
  if (c.secrets && wrong === null) {
    const seen = new Set<string>();
    secrets = [];
    for (const [k, s] of c.secrets.entries()) {
      const guid = s.guid === 'luks-key' ? '736869e5-84f0-4973-92ec-06879ce3da0b' : s.guid;
      if (seen.has(guid)) continue;
      seen.add(guid);
      secrets.push({ guid, data: bytes(c.seed, `secret${k}`, s.len) });
      args.push('-s', `${s.guid}:${w(`secret${k}`, secrets[secrets.length - 1]!.data)}`);
    }
  }
  return {
    name: `case ${i}: ${es ? `SEV-ES ${c.vcpus} vCPU(s) (${c.vmsaFiles})` : 'SEV'} policy 0x${policy.toString(16)}${c.kernel ? ', kernel' : ''}${secrets ? `, ${secrets.length} secret(s)` : ''}${sim ? ', simulated launch' : ''}${wrong ? `, wrong: ${wrong}` : ''}`,
    dir,
    args,
    expected: wrong === null ? 0 : 1,
    tik,
    tek,
    measure: measurement.subarray(0, 32),
    secrets,
    sim: simLaunch,
  };
}

const secretFiles = (who: string) => ['--secret-header', `${who}-header.b64`, '--secret-payload', `${who}-payload.b64`];
const readB64 = (dir: string, name: string) => Buffer.from(readFileSync(join(dir, name), 'utf8'), 'base64');

/** Labels both tools print under --debug with the same value (first occurrence). */
const COMPARED = [
  'Firmware(sha256)',
  'TIK(hex)',
  'TEK(hex)',
  'VMSA CPU 0(sha256)',
  'VMSA CPU 1(sha256)',
  'Kernel(sha256)',
  'Initrd(sha256)',
  'Cmdline(sha256)',
  'Table(hex)',
  'VMSA(sha256)',
  'Measured-data(sha256)',
  'Measured-msg(hex)',
  'Measurement reported(hex)',
  'Measurement computed(hex)',
];

function compareDebug(ours: Result, theirs: Result): Record<string, [string | undefined, string | undefined]> {
  const a = debugLines(ours.err);
  const b = debugLines(theirs.err);
  const diff: Record<string, [string | undefined, string | undefined]> = {};
  for (const k of COMPARED) if (a.has(k) && b.has(k) && a.get(k) !== b.get(k)) diff[k] = [a.get(k), b.get(k)];
  return diff;
}

describe('offline: generated launches', () => {
  it(`${CASES} generated cases (seed ${SEED}): same exit codes, same intermediates, secrets accepted across`, async () => {
    const specs = fc.sample(caseArb, { seed: SEED, numRuns: CASES });
    const cases = specs.map((c, i) => prepare(i, c));
    const theirs = await pool(
      PARALLEL,
      cases.map((c) => () => runLv([...c.args, ...(c.secrets ? secretFiles('lv') : []), '--debug'], { cwd: c.dir })),
    );
    const summary = { cases: cases.length, agree: 0, ok: 0, mismatch: 0, secrets: 0, simulated: 0 };
    for (const [i, c] of cases.entries()) {
      const ours = await kbctl(['validate', ...c.args, ...(c.secrets ? secretFiles('kb') : []), '--debug'], { cwd: c.dir });
      const lv = theirs[i]!;
      expect({ case: c.name, ours: ours.code, theirs: lv.code, theirsErr: lv.code === c.expected ? '' : lv.err.split('\n').slice(-3).join(' | ') }).toEqual({
        case: c.name,
        ours: c.expected,
        theirs: c.expected,
        theirsErr: '',
      });
      expect({ case: c.name, debug: compareDebug(ours, lv) }).toEqual({ case: c.name, debug: {} });
      expect(debugLines(ours.err).has('Measured-data(sha256)')).toBe(true);
      summary.agree++;
      summary[c.expected === 0 ? 'ok' : 'mismatch']++;
      if (c.sim) summary.simulated++;
      if (!c.secrets) continue;
      summary.secrets++;
      expect(ours.out).toBe(`OK: Looks good to me\nOK: Injected ${c.secrets.length} secrets`);
      expect(lv.out).toBe(`OK: Looks good to me\nOK: Injected ${c.secrets.length} secrets`);
      // theirs → our parser
      const plain = openSecret({ tek: c.tek, tik: c.tik, measure: c.measure, header: readB64(c.dir, 'lv-header.b64'), data: readB64(c.dir, 'lv-payload.b64') });
      expect(parseSecretTable(plain)).toEqual(c.secrets);
      // the same secrets give the same table, byte for byte (libvirt's padding included); only the IV differs
      const ourPlain = openSecret({
        tek: c.tek,
        tik: c.tik,
        measure: c.measure,
        header: readB64(c.dir, 'kb-header.b64'),
        data: readB64(c.dir, 'kb-payload.b64'),
      });
      expect(ourPlain.toString('hex')).toBe(plain.toString('hex'));
      // ours → the simulated Secure Processor, and the guest reads them back
      c.sim!.sp.launchSecret(c.sim!.handle, readB64(c.dir, 'kb-header.b64'), readB64(c.dir, 'kb-payload.b64'));
      c.sim!.sp.launchFinish(c.sim!.handle);
      expect(c.sim!.sp.guestSecrets(c.sim!.handle)).toEqual(c.secrets);
    }
    // the generator must exercise both outcomes and the secret path
    expect(summary.ok).toBeGreaterThan(CASES / 4);
    expect(summary.mismatch).toBeGreaterThan(CASES / 8);
    expect(summary.secrets).toBeGreaterThan(3);
    if (process.env.KB_DIFF_SUMMARY) writeFileSync(process.env.KB_DIFF_SUMMARY, JSON.stringify(summary) + '\n');
  });

  /** Usage and environment errors: the same inputs to both tools, one problem at a time. */
  it('usage and file errors: the same exit code for every one', async () => {
    const dir = join(work.dir, 'errors');
    mkdirSync(dir);
    const w = (name: string, data: Uint8Array | string) => (writeFileSync(join(dir, name), data), name);
    const tik = randomBytes(16);
    const tek = randomBytes(16);
    w('tik.bin', tik);
    w('tek.bin', tek);
    w('tk.bin', Buffer.concat([tek, tik]));
    w('short.bin', randomBytes(15));
    w('tk31.bin', randomBytes(31));
    w('page.bin', randomBytes(4095));
    w('fw.bin', readFileSync(SEVCTL_OVMF));
    w('nofooter.bin', randomBytes(4096));
    w('empty', '');
    w('secret.txt', 'secret');
    w('vmsa0.bin', randomBytes(4096));
    w('vmsa1.bin', randomBytes(4096));
    const digest = launchDigest({ mode: 'sev', firmware: readFileSync(SEVCTL_OVMF) });
    const nonce = randomBytes(16);
    const m = Buffer.concat([computeMeasurement({ tik, apiMajor: 1, apiMinor: 51, build: 3, policy: 1, digest, mnonce: nonce }), nonce]).toString('base64');
    const keys = ['--tik', 'tik.bin', '--tek', 'tek.bin'];
    const state = ['-m', m, '--api-major', '1', '--api-minor', '51', '--build-id', '3', '--policy', '1'];
    const ok = [...keys, ...state, '-f', 'fw.bin'];
    const es = [...keys, '-m', m, '--api-major', '1', '--api-minor', '51', '--build-id', '3', '--policy', '5', '-f', 'fw.bin'];
    const sku = ['--cpu-family', '25', '--cpu-model', '1', '--cpu-stepping', '1'];
    const secret = ['--secret-header', 'h', '--secret-payload', 'p'];
    const cases: [string, string[], number][] = [
      ['all good', ok, 0],
      ['--tk and --tik', ['--tk', 'tk.bin', ...ok], 2],
      ['--tik without --tek', ['--tik', 'tik.bin', ...state, '-f', 'fw.bin'], 2],
      ['no --measurement', [...keys, ...state.slice(2), '-f', 'fw.bin'], 2],
      ['no --api-major', [...keys, ...state.slice(0, 2), ...state.slice(4), '-f', 'fw.bin'], 2],
      ['no --api-minor', [...keys, ...state.slice(0, 4), ...state.slice(6), '-f', 'fw.bin'], 2],
      ['no --build-id', [...keys, ...state.slice(0, 6), ...state.slice(8), '-f', 'fw.bin'], 2],
      ['no --policy', [...keys, ...state.slice(0, 8), '-f', 'fw.bin'], 2],
      ['no --firmware', [...keys, ...state], 2],
      ['inject without --secret-header', [...ok, '-s', 'luks-key:secret.txt'], 2],
      ['inject without --secret-payload', [...ok, '-s', 'luks-key:secret.txt', '--secret-header', 'h'], 2],
      ['--secret-payload alone', [...ok, '--secret-payload', 'p'], 2],
      ['--initrd without --kernel', [...ok, '-r', 'empty'], 2],
      ['--cmdline without --kernel', [...ok, '-e', 'quiet'], 2],
      ['--vmsa-cpu1 without --vmsa-cpu0', [...es, '-n', '2', '-1', 'vmsa1.bin'], 2],
      ['VMSA files and a CPU SKU', [...es, '-n', '2', '-0', 'vmsa0.bin', ...sku], 2],
      ['a partial CPU SKU', [...es, '-n', '2', '--cpu-family', '25', '--cpu-model', '1'], 2],
      ['a 15-byte TIK', ['--tik', 'short.bin', '--tek', 'tek.bin', ...state, '-f', 'fw.bin'], 2],
      ['a 15-byte TEK', ['--tik', 'tik.bin', '--tek', 'short.bin', ...state, '-f', 'fw.bin'], 2],
      ['a 31-byte --tk', ['--tk', 'tk31.bin', ...state, '-f', 'fw.bin'], 2],
      ['a 4095-byte VMSA', [...es, '-n', '1', '-0', 'page.bin'], 2],
      ['SEV-ES without --num-cpus', [...es, ...sku], 2],
      ['SEV-ES without VMSAs', [...es, '-n', '1'], 2],
      ['SEV-ES SMP with only the boot VMSA', [...es, '-n', '2', '-0', 'vmsa0.bin'], 2],
      ['SEV-ES, firmware without the OVMF table', [...keys, ...state.slice(0, 8), '--policy', '5', '-f', 'nofooter.bin', '-n', '1', ...sku], 6],
      ['a non-integer --policy', [...keys, ...state.slice(0, 8), '--policy', 'one', '-f', 'fw.bin'], 2],
      ['a non-integer --num-cpus', [...es, '-n', 'two', ...sku], 2],
      ['an unknown option', [...ok, '--frobnicate'], 2],
      ['a missing firmware file', [...keys, ...state, '-f', 'missing.fd'], 6],
      ['a missing TIK file', ['--tik', 'missing', '--tek', 'tek.bin', ...state, '-f', 'fw.bin'], 6],
      ['a missing kernel file', [...ok, '-k', 'missing'], 6],
      ['a missing VMSA file', [...es, '-n', '1', '-0', 'missing'], 6],
      ['a measurement with bad base64 padding', [...keys, '-m', 'abc', ...state.slice(2), '-f', 'fw.bin'], 6],
      ['a measurement of non-base64 characters only', [...keys, '-m', '@@@@', ...state.slice(2), '-f', 'fw.bin'], 1],
      ['a 32-byte measurement', [...keys, '-m', Buffer.from(m, 'base64').subarray(0, 32).toString('base64'), ...state.slice(2), '-f', 'fw.bin'], 1],
      [
        'a measurement with another nonce',
        [...keys, '-m', Buffer.concat([Buffer.from(m, 'base64').subarray(0, 32), randomBytes(16)]).toString('base64'), ...state.slice(2), '-f', 'fw.bin'],
        1,
      ],
      ['an unknown secret alias', [...ok, '-s', 'disk-key:secret.txt', ...secret], 2],
      ['a secret without a path', [...ok, '-s', 'luks-key', ...secret], 2],
      ['a secret with two colons', [...ok, '-s', 'luks-key:a:b', ...secret], 2],
      ['the same GUID twice', [...ok, '-s', 'luks-key:secret.txt', '-s', '736869e5-84f0-4973-92ec-06879ce3da0b:secret.txt', ...secret], 2],
      ['a missing secret file', [...ok, '-s', 'luks-key:missing', ...secret], 6],
      ['an unwritable secret header', [...ok, '-s', 'luks-key:secret.txt', '--secret-header', 'no/such/dir/h', '--secret-payload', 'p'], 6],
      ['a quiet mismatch', [...keys, ...state.slice(0, 8), '--policy', '3', '-f', 'fw.bin', '-q'], 1],
    ];
    const theirs = await pool(
      PARALLEL,
      cases.map(
        ([, args]) =>
          () =>
            runLv(args, { cwd: dir }),
      ),
    );
    const got: [string, number, number][] = [];
    for (const [i, [name, args]] of cases.entries()) got.push([name, (await kbctl(['validate', ...args], { cwd: dir })).code, theirs[i]!.code]);
    expect(got).toEqual(cases.map(([name, , code]) => [name, code, code]));
  });

  // libvirt's GUIDTable.build pads with 16 - len % 16 bytes, i.e. a whole extra block when the table is already
  // aligned; sevctl and @kb/sev's buildSecretTable add none (the broker keeps that, simple-kbs's padding), but
  // `kbctl validate` produces libvirt's bytes. The firmware and efi_secret only read `total_len` bytes.
  it("an aligned secret table: libvirt's extra zero block, from both tools, accepted by parseSecretTable", async () => {
    const dir = join(work.dir, 'aligned');
    mkdirSync(dir);
    const tik = randomBytes(16);
    const tek = randomBytes(16);
    writeFileSync(join(dir, 'tik.bin'), tik);
    writeFileSync(join(dir, 'tek.bin'), tek);
    writeFileSync(join(dir, 'fw.bin'), readFileSync(SEVCTL_OVMF));
    writeFileSync(join(dir, 's24'), randomBytes(24)); // 20 + (20 + 24) = 64: aligned
    const nonce = randomBytes(16);
    const measure = computeMeasurement({
      tik,
      apiMajor: 1,
      apiMinor: 51,
      build: 3,
      policy: 1,
      digest: launchDigest({ mode: 'sev', firmware: readFileSync(SEVCTL_OVMF) }),
      mnonce: nonce,
    });
    const lv = await runLv(
      [
        '--tik',
        'tik.bin',
        '--tek',
        'tek.bin',
        '-m',
        Buffer.concat([measure, nonce]).toString('base64'),
        '--api-major',
        '1',
        '--api-minor',
        '51',
        '--build-id',
        '3',
        '--policy',
        '1',
        '-f',
        'fw.bin',
        '-s',
        'luks-key:s24',
        ...secretFiles('lv'),
      ],
      { cwd: dir },
    );
    expect(lv.code).toBe(0);
    const plain = openSecret({ tek, tik, measure, header: readB64(dir, 'lv-header.b64'), data: readB64(dir, 'lv-payload.b64') });
    expect(plain.length).toBe(80);
    expect(parseSecretTable(plain)).toEqual([{ guid: '736869e5-84f0-4973-92ec-06879ce3da0b', data: readFileSync(join(dir, 's24')) }]);
    const ours = await kbctl(
      [
        'validate',
        '--tik',
        'tik.bin',
        '--tek',
        'tek.bin',
        '-m',
        Buffer.concat([measure, nonce]).toString('base64'),
        '--api-major',
        '1',
        '--api-minor',
        '51',
        '--build-id',
        '3',
        '--policy',
        '1',
        '-f',
        'fw.bin',
        '-s',
        'luks-key:s24',
        ...secretFiles('kb'),
      ],
      { cwd: dir },
    );
    expect(ours.code).toBe(0);
    expect(readB64(dir, 'kb-payload.b64')).toHaveLength(80);
    const ourPlain = openSecret({ tek, tik, measure, header: readB64(dir, 'kb-header.b64'), data: readB64(dir, 'kb-payload.b64') });
    expect(ourPlain.toString('hex')).toBe(plain.toString('hex'));
  });
});

describe('--domain: recorded hosts (fake virsh for kbctl, fake libvirt module for virt-qemu-sev-validate)', () => {
  it('every scenario: the same exit code, and injected secrets accepted across', async () => {
    const dir = join(work.dir, 'domain');
    mkdirSync(dir);
    const fixture = domainFixture(dir);
    const hosts = fixture.cases.map((c, i) => ({ kb: fakeHost(join(dir, `kb-${i}`), c.scenario), lv: fakeHost(join(dir, `lv-${i}`), c.scenario) }));
    const theirs = await pool(
      PARALLEL,
      fixture.cases.map((c, i) => () => runLv(c.args, { cwd: dir, env: hosts[i]!.lv.pythonEnv })),
    );
    const got: [string, number, number][] = [];
    for (const [i, c] of fixture.cases.entries()) {
      got.push([c.name, (await kbctl(['validate', ...c.args], { cwd: dir, env: hosts[i]!.kb.kbctlEnv })).code, theirs[i]!.code]);
      if (!c.measure) continue;
      for (const host of [hosts[i]!.kb, hosts[i]!.lv]) {
        const { header, secret, resumed } = host.injected();
        expect(resumed).toBe(true);
        const plain = openSecret({
          tek: fixture.tek,
          tik: fixture.tik,
          measure: c.measure,
          header: Buffer.from(header!, 'base64'),
          data: Buffer.from(secret!, 'base64'),
        });
        expect(parseSecretTable(plain)).toEqual([{ guid: '736869e5-84f0-4973-92ec-06879ce3da0b', data: Buffer.from('a LUKS passphrase') }]);
      }
    }
    expect(got).toEqual(fixture.cases.map((c) => [c.name, c.expected, c.expected]));
  });
});

describe("--domain: libvirt's test driver through the real virsh and the real Python binding", () => {
  it.each([
    ['a local connection without --insecure', ['-c', 'test:///default', '-o', 'test'], 3],
    ['--insecure: the test domain has no SEV launch security', ['-c', 'test:///default', '-o', 'test', '-i'], 4],
    ['--ignore-config: the test driver cannot report launch security info', ['-c', 'test:///default', '-o', 'test', '-i', '-g'], 6],
    ['an unknown domain', ['-c', 'test:///default', '-o', 'nosuchdomain', '-i'], 6],
    ['by id', ['-c', 'test:///default', '-o', '1', '-i'], 4],
  ])('%s (%j): exit %i from both', async (_name, args, code) => {
    const dir = join(work.dir, 'testdriver');
    if (!existsSync(dir)) {
      mkdirSync(dir);
      writeFileSync(join(dir, 'tk.bin'), randomBytes(32));
    }
    const env = { PATH: process.env.PATH, HOME: process.env.HOME };
    const [lv, ours] = [await runLv(['--tk', 'tk.bin', ...args], { cwd: dir, env }), await kbctl(['validate', '--tk', 'tk.bin', ...args], { cwd: dir, env })];
    expect([ours.code, lv.code]).toEqual([code, code]);
  });
});
