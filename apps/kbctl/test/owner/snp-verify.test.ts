import { execFileSync } from 'node:child_process';
import { generateKeyPairSync, sign, constants } from 'node:crypto';
import { copyFileSync, mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { AsnConvert } from '@peculiar/asn1-schema';
import { AlgorithmIdentifier, Certificate, CertificateList, TBSCertList, Time, Version } from '@peculiar/asn1-x509';
import { PSS_ALGORITHM_IDENTIFIERS, pinnedSnpRootCertificates } from '@kb/sev';
import { kbctl, read, tempDir, VECTORS } from './support/cli';

/**
 * `kbctl snp verify-report` through the real command tree: every SNP vector with its MANIFEST outcome and exit code,
 * the certs-directory layout, --chain bundles, CRLs, --json, and every usage error (exit 2).
 */
const SNP = join(VECTORS, 'snp');
const MS = join(SNP, 'microsoft-tee-attestation-verification');
const T0 = '2026-06-01T00:00:00Z';
const T1 = '2025-06-01T00:00:00Z';
let work: ReturnType<typeof tempDir>;
beforeAll(() => {
  work = tempDir('snp-verify');
});
afterAll(() => work.cleanup());
const run = (argv: string[]) => kbctl(['snp', 'verify-report', ...argv], { cwd: work.dir });

describe('the real vectors (../shared/vectors/snp/MANIFEST.md)', () => {
  it.each([
    ['virtee-sev/report_milan.hex', 'virtee-sev/vcek_milan.der', ['--allow-v2']],
    ['trustee/test-report.bin', 'trustee/test-vcek.der', ['--allow-v2']],
    ['microsoft-tee-attestation-verification/milan_attestation_report.bin', 'microsoft-tee-attestation-verification/milan_vcek.pem', []],
    ['microsoft-tee-attestation-verification/genoa_attestation_report.bin', 'microsoft-tee-attestation-verification/genoa_vcek.pem', []],
    ['microsoft-tee-attestation-verification/turin_attestation_report.bin', 'microsoft-tee-attestation-verification/turin_vcek.pem', []],
  ])('%s with %s: valid (exit 0)', async (report, vcek, extra) => {
    const r = await run([join(SNP, report), '--vcek', join(SNP, vcek), '--at', T0, ...extra]);
    expect(r.err).toBe('');
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/\[PASS\] 10 {2}report signature/);
    expect(r.out).toMatch(/\[PASS\] 11 {2}REPORTED_TCB = certificate TCB/);
    expect(r.out.trimEnd().endsWith('Result: VALID')).toBe(true);
    expect(r.out).not.toContain('[FAIL]');
  });

  it('v2 reports without --allow-v2: SNP_REPORT_VERSION (exit 1)', async () => {
    const r = await run([join(SNP, 'trustee/test-report.bin'), '--vcek', join(SNP, 'trustee/test-vcek.der'), '--at', T0]);
    expect(r.code).toBe(1);
    expect(r.out).toContain('Result: INVALID — SNP_REPORT_VERSION');
  });

  it('the VLEK report: SNP_VMPL at T1, valid with --vmpl 1 (or any), expired at T0, CSP allow-list', async () => {
    const base = [join(SNP, 'trustee/test-vlek-report.bin'), '--vlek', join(SNP, 'trustee/test-vlek.der')];
    const vmpl = await run([...base, '--at', T1]);
    expect([vmpl.code, vmpl.out]).toEqual([1, expect.stringContaining('[FAIL] 14  VMPL')]);
    expect((await run([...base, '--at', T1, '--vmpl', '1'])).code).toBe(0);
    expect((await run([...base, '--at', T1, '--vmpl', 'any'])).code).toBe(0);
    expect((await run([...base, '--at', T1, '--vmpl', '1', '--csp', 'CN=cc-us-east-2.amazonaws.com'])).code).toBe(0);
    const csp = await run([...base, '--at', T1, '--vmpl', '1', '--csp', 'CN=other.example']);
    expect([csp.code, csp.out]).toEqual([1, expect.stringContaining('SNP_VLEK_CSP')]);
    const expired = await run([...base, '--at', T0, '--vmpl', '1']);
    expect([expired.code, expired.out]).toEqual([1, expect.stringContaining('Result: INVALID — SNP_CERT_VALIDITY')]);
    // a single certificate given as --vcek is used for the key the report names (snpguest's meaning)
    expect((await run([join(SNP, 'trustee/test-vlek-report.bin'), '--vcek', join(SNP, 'trustee/test-vlek.der'), '--at', T1, '--vmpl', '1'])).code).toBe(0);
  });

  it('derived: a flipped MEASUREMENT bit is SNP_REPORT_SIGNATURE, signature padding SNP_REPORT_RESERVED (exit 1)', async () => {
    const flip = await run([join(SNP, 'derived/milan-v3_measurement-bitflip.bin'), '--vcek', join(MS, 'milan_vcek.pem'), '--at', T0]);
    expect(flip.code).toBe(1);
    expect(flip.out).toMatch(/\[PASS\] {2}8 {2}chain to the pinned AMD root/);
    expect(flip.out).toMatch(/\[FAIL\] 10 {2}report signature +SNP_REPORT_SIGNATURE/);
    expect(flip.out).toMatch(/\[ {2}- \] 11 {2}signing key kind +not run/);
    const pad = await run([join(SNP, 'derived/turin-v5_sig-padding-nonzero.bin'), '--vcek', join(MS, 'turin_vcek.pem'), '--at', T0]);
    expect([pad.code, pad.out]).toEqual([1, expect.stringContaining('[FAIL]  3  reserved fields are zero')]);
  });

  it('--chain: the derived VEK+Milan CA bundle for a Genoa report is SNP_ARK_MISMATCH; the KDS Genoa cert_chain passes', async () => {
    const rep = join(MS, 'genoa_attestation_report.bin');
    const bad = await run([rep, '--chain', join(SNP, 'derived/genoa-v3_vcek-with-milan-ca.pem'), '--at', T0]);
    expect([bad.code, bad.out]).toEqual([1, expect.stringContaining('Result: INVALID — SNP_ARK_MISMATCH')]);
    const good = await run([rep, '--vcek', join(MS, 'genoa_vcek.pem'), '--chain', join(SNP, 'roots/kds-cert-chain/ask_ark_genoa.pem'), '--at', T0]);
    expect(good.code).toBe(0);
    const vlekChain = await run([
      join(SNP, 'trustee/test-vlek-report.bin'),
      '--vlek',
      join(SNP, 'trustee/test-vlek.der'),
      '--chain',
      join(SNP, 'roots/kds-cert-chain/ask_ark_milan_vlek.pem'),
      '--at',
      T1,
      '--vmpl',
      '1',
    ]);
    expect(vlekChain.code).toBe(0);
  });

  it("--report-data and --measurement: the report's own values pass, others fail at steps 12 and 16", async () => {
    const rep = join(SNP, 'trustee/test-report.bin');
    const base = [rep, '--vcek', join(SNP, 'trustee/test-vcek.der'), '--at', T0, '--allow-v2'];
    const m = 'a1f3930413247bb38cfc171579ea3c12d5fe4901f0c792f63fd75d98f1ef827c23500644e0e692e6be917f9050d3d38c';
    const rd = 'ec6c52d7533cc2c4f45be7849cf112ab82b2009fe7bd43e71ed08c14400ad7e2'; // 32 bytes, zero-padded to 64
    expect((await run([...base, '--report-data', rd, '--measurement', '00'.repeat(48), '--measurement', m])).code).toBe(0);
    const wrongRd = await run([...base, '--report-data', 'ff']);
    expect([wrongRd.code, wrongRd.out]).toEqual([1, expect.stringContaining('SNP_REPORT_DATA')]);
    const wrongM = await run([...base, '--measurement', '00'.repeat(48)]);
    expect([wrongM.code, wrongM.out]).toEqual([1, expect.stringContaining('SNP_MEASUREMENT')]);
  });

  it('trustee SnpEvidence JSON as REPORT: rebuilt and verified with the VCEK it carries; malformed JSON is a usage error', async () => {
    const r = await run([join(SNP, 'trustee/evidence.json'), '--at', T0]);
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/version 3, Genoa, signed by the VCEK/);
    writeFileSync(join(work.dir, 'bad-evidence.json'), '{"attestation_report": {"version": 3}}');
    const bad = await run(['bad-evidence.json', '--vcek', join(MS, 'genoa_vcek.pem')]);
    expect([bad.code, bad.err]).toEqual([2, expect.stringContaining('SNP evidence JSON: guest_svn must be an integer')]);
  });

  it('--json: one object with the verdict, the decoded report and every check', async () => {
    const r = await run([join(MS, 'turin_attestation_report.bin'), '--vcek', join(MS, 'turin_vcek.pem'), '--at', T0, '--json']);
    expect(r.code).toBe(0);
    const j = JSON.parse(r.out);
    expect(j).toMatchObject({
      valid: true,
      report: {
        version: 5,
        generation: 'turin',
        signingKey: 'vcek',
        reportedTcb: { fmc: 1, bootloader: 1, tee: 1, snp: 4, microcode: 81, raw: '0101010400000051' },
      },
    });
    expect(j.checks).toHaveLength(20);
    expect(j.checks[7]).toMatchObject({ step: 8, id: 'chain', status: 'pass' });
    const bad = JSON.parse(
      (await run([join(SNP, 'derived/milan-v3_measurement-bitflip.bin'), '--vcek', join(MS, 'milan_vcek.pem'), '--at', T0, '--json'])).out,
    );
    expect(bad).toMatchObject({ valid: false, code: 'SNP_REPORT_SIGNATURE' });
  });
});

describe('--certs DIR (snpguest layout)', () => {
  it("vcek.der + ask.pem + ark.pem from the KDS chain: valid; a report from another chip's directory: invalid", async () => {
    const dir = join(work.dir, 'certs-milan');
    mkdirSync(dir);
    copyFileSync(join(SNP, 'virtee-sev/vcek_milan.der'), join(dir, 'vcek.der'));
    copyFileSync(join(SNP, 'roots/milan/ask.pem'), join(dir, 'ask.pem'));
    copyFileSync(join(SNP, 'roots/milan/ark.pem'), join(dir, 'ark.pem'));
    const ok = await run([join(SNP, 'virtee-sev/report_milan.hex'), '--certs', dir, '--at', T0, '--allow-v2']);
    expect(ok.code).toBe(0);
    const other = await run([join(SNP, 'trustee/test-report.bin'), '--certs', 'certs-milan', '--at', T0, '--allow-v2']);
    expect([other.code, other.out]).toEqual([1, expect.stringContaining('SNP_REPORT_SIGNATURE')]);
  });

  it("a crl.der in the directory must apply: a CRL not signed by AMD's ARK is SNP_CRL_UNAVAILABLE (exit 1)", async () => {
    const dir = join(work.dir, 'certs-crl');
    mkdirSync(dir);
    copyFileSync(join(MS, 'milan_vcek.pem'), join(dir, 'vcek.pem'));
    writeFileSync(join(dir, 'crl.der'), forgedCrl());
    const r = await run([join(MS, 'milan_attestation_report.bin'), '--certs', dir, '--at', T0]);
    expect(r.code).toBe(1);
    expect(r.out).toMatch(/\[FAIL\] {2}9 {2}revocation \(CRL\) +SNP_CRL_UNAVAILABLE: the CRL's signature does not verify under ARK-Milan/);
    // the same CRL with --crl-mode off is not consulted
    expect(
      (await run([join(MS, 'milan_attestation_report.bin'), '--vcek', join(dir, 'vcek.pem'), '--crl', join(dir, 'crl.der'), '--crl-mode', 'off', '--at', T0]))
        .code,
    ).toBe(0);
    const garbage = join(work.dir, 'garbage.crl');
    writeFileSync(garbage, 'not a crl');
    expect((await run([join(MS, 'milan_attestation_report.bin'), '--vcek', join(dir, 'vcek.pem'), '--crl', garbage, '--at', T0])).out).toContain(
      'SNP_CRL_UNAVAILABLE',
    );
  });

  it('ambiguous or empty directories are usage errors (exit 2)', async () => {
    const dir = join(work.dir, 'certs-both');
    mkdirSync(dir);
    copyFileSync(join(MS, 'milan_vcek.pem'), join(dir, 'vcek.pem'));
    copyFileSync(join(MS, 'milan_vcek.pem'), join(dir, 'vcek.der'));
    const both = await run([join(MS, 'milan_attestation_report.bin'), '--certs', dir]);
    expect([both.code, both.err]).toEqual([2, expect.stringContaining('both vcek.pem and vcek.der exist')]);
    mkdirSync(join(work.dir, 'empty'));
    expect((await run([join(MS, 'milan_attestation_report.bin'), '--certs', 'empty'])).code).toBe(2);
  });
});

describe('usage errors (exit 2) and help', () => {
  const rep = () => join(MS, 'milan_attestation_report.bin');
  const vcek = () => join(MS, 'milan_vcek.pem');
  it.each([
    ['no REPORT', () => [], 'expected 1 argument'],
    ['no certificates', () => [rep()], 'no VCEK/VLEK given'],
    ['--certs with --vcek', () => [rep(), '--certs', '.', '--vcek', vcek()], 'either --certs DIR or'],
    ['missing report file', () => ['nope.bin', '--vcek', vcek()], 'cannot read the report from nope.bin: ENOENT'],
    ['missing VCEK file', () => [rep(), '--vcek', 'nope.pem'], 'cannot read the VCEK'],
    ['--certs not a directory', () => [rep(), '--certs', 'nope'], 'not a directory'],
    ['bad --at', () => [rep(), '--vcek', vcek(), '--at', 'yesterday'], '--at must be an ISO 8601 time'],
    ['bad --vmpl', () => [rep(), '--vcek', vcek(), '--vmpl', '4'], '--vmpl must be 0, 1, 2, 3 or any'],
    ['bad --crl-mode', () => [rep(), '--vcek', vcek(), '--crl-mode', 'maybe'], '--crl-mode must be'],
    ['short --measurement', () => [rep(), '--vcek', vcek(), '--measurement', 'abcd'], '--measurement must be exactly 48 bytes'],
    ['long --report-data', () => [rep(), '--vcek', vcek(), '--report-data', '00'.repeat(65)], '--report-data must be at most 64 bytes'],
    ['--chain with one certificate', () => [rep(), '--vcek', vcek(), '--chain', vcek()], 'expected 2 (intermediate, ARK) or 3'],
    ['unknown flag', () => [rep(), '--vcek', vcek(), '--fetch'], "Unknown option '--fetch'"],
  ])('%s', async (_n, argv, msg) => {
    const r = await run(argv());
    expect(r.code).toBe(2);
    expect(r.err).toContain(msg);
    expect(r.out).toBe('');
  });

  it('a report of the wrong size is judged, not a usage error: SNP_REPORT_SIZE (exit 1)', async () => {
    writeFileSync(join(work.dir, 'short.bin'), read(rep()).subarray(0, 1000));
    const r = await run(['short.bin', '--vcek', vcek()]);
    expect([r.code, r.out]).toEqual([1, expect.stringContaining('[FAIL]  1  report size')]);
  });

  it('--help documents every flag, the certs layout and the exit codes; the snp group lists the command', async () => {
    const r = await kbctl(['snp', 'verify-report', '--help']);
    expect(r.code).toBe(0);
    for (const f of [
      '--certs',
      '--vcek',
      '--vlek',
      '--chain',
      '--crl',
      '--crl-mode',
      '--allow-v2',
      '--vmpl',
      '--report-data',
      '--measurement',
      '--allow-masked-chip-id',
      '--csp',
      '--at',
      '--json',
    ])
      expect(r.out).toContain(f);
    for (const f of ['vcek.pem|vcek.der', 'ask.pem|ask.der', 'asvk.pem|asvk.der', 'ark.pem|ark.der', 'crl.der|crl.pem', 'Exit status: 0'])
      expect(r.out).toContain(f);
    expect((await kbctl(['snp', '--help'])).out).toMatch(/^ {2}verify-report +verify an SEV-SNP attestation report offline/m);
  });

  it("loading the command's implementation pulls in no gRPC code", () => {
    const root = resolve(__dirname, '../../../..');
    const out = execFileSync(
      process.execPath,
      [
        '--import',
        'tsx',
        '-e',
        "require('./apps/kbctl/src/owner/snp-verify-run.ts'); require('./apps/kbctl/src/owner/snp.ts'); console.log(Object.keys(require.cache).filter((k) => /grpc/.test(k)).length)",
      ],
      { cwd: root, encoding: 'utf8' },
    );
    expect(out.trim()).toBe('0');
  });
});

/** A CRL naming AMD's Milan ARK as issuer but signed by another key. */
function forgedCrl(): Buffer {
  const arkName = AsnConvert.parse(pinnedSnpRootCertificates('milan').ark, Certificate).tbsCertificate.subject;
  const alg = AsnConvert.parse(Buffer.from(PSS_ALGORITHM_IDENTIFIERS[1]!, 'hex'), AlgorithmIdentifier);
  const tbs = new TBSCertList({
    version: Version.v2,
    signature: alg,
    issuer: arkName,
    thisUpdate: new Time(new Date('2026-01-01Z')),
    nextUpdate: new Time(new Date('2027-01-01Z')),
  });
  const key = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey;
  const sig = sign('sha384', Buffer.from(AsnConvert.serialize(tbs)), { key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: 48 });
  return Buffer.from(AsnConvert.serialize(new CertificateList({ tbsCertList: tbs, signatureAlgorithm: alg, signature: new Uint8Array(sig).buffer })));
}
