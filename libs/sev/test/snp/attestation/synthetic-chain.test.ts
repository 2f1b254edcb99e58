import { createPublicKey } from 'node:crypto';
import { AsnConvert } from '@peculiar/asn1-schema';
import { AlgorithmIdentifier } from '@peculiar/asn1-x509';
import {
  AmdOid,
  parseSnpCertificate,
  parseSnpCrl,
  PSS_ALGORITHM_IDENTIFIERS,
  verifySnpReport,
  type SnpErrorCode,
  type VerifySnpReportOptions,
} from '../../../src';
import { makeCa, makeCrl, makeCert, makeVek, milanTcb, MS, signReport, T0, vec, type SyntheticCa, type VekSpec } from './synthetic';

/**
 * Chain, validity, revocation and report↔certificate binding (steps 7–11) with a synthetic AMD-shaped CA: the cases
 * no real vector covers — expired and revoked certificates, CRLs, TCB and chip mismatches, profile violations.
 */
let milan: SyntheticCa;
let turin: SyntheticCa;
beforeAll(async () => {
  milan = await makeCa('milan');
  turin = await makeCa('turin', milan);
}, 300_000);

const CHIP = Buffer.alloc(64, 0x5a);
const TCB = milanTcb(4, 0, 24, 219); // the MS Milan report's own TCB

/** A VCEK for the Milan report and the report re-signed with it; `spec` and `rep` alter either side. */
function pair(spec: VekSpec = {}, rep: Parameters<typeof signReport>[1] = {}, ca = milan) {
  const vek = makeVek(ca, { hwId: CHIP, tcb: { bl: 4, tee: 0, snp: 24, ucode: 219 }, ...spec });
  const report = signReport(vek.key, { chipId: CHIP, tcb: TCB, ...rep });
  return { vek: vek.der, report };
}

function run(p: { vek: Buffer; report: Buffer }, o: VerifySnpReportOptions = {}, slot: 'vcek' | 'vlek' = 'vcek') {
  return verifySnpReport(p.report, { certificates: { [slot]: p.vek }, roots: milan.roots, now: T0, ...o });
}
const code = (p: { vek: Buffer; report: Buffer }, o: VerifySnpReportOptions = {}, slot: 'vcek' | 'vlek' = 'vcek'): SnpErrorCode | undefined =>
  run(p, o, slot).error?.code;

describe('a synthetic chain trusted explicitly', () => {
  it("verifies under its roots, and only there (AMD's pinned Milan roots refuse it)", () => {
    const p = pair();
    const res = run(p);
    expect(res.checks.filter((c) => c.status === 'fail')).toEqual([]);
    expect(res.checks.find((c) => c.id === 'chain')!.detail).toBe('ARK-Milan → SEV-Milan (ASK, pinned) → SEV-VCEK');
    expect(verifySnpReport(p.report, { certificates: { vcek: p.vek }, now: T0 }).error?.code).toBe('SNP_CHAIN_SIGNATURE');
  });

  it('a supplied ARK that is not the pinned one: SNP_ARK_MISMATCH; a supplied ASK the pinned ARK did not sign: SNP_CHAIN_SIGNATURE', () => {
    const p = pair();
    expect(verifySnpReport(p.report, { certificates: { vcek: p.vek, ark: milan.ark }, now: T0 }).error?.code).toBe('SNP_ARK_MISMATCH');
    const res = verifySnpReport(p.report, { certificates: { vcek: p.vek, ask: milan.ask }, now: T0 });
    expect(res.error?.code).toBe('SNP_CHAIN_SIGNATURE');
    expect(res.error?.message).toContain('supplied ASK is not signed by the pinned ARK-Milan');
  });

  it('a supplied intermediate the ARK did sign is used (and labelled supplied)', () => {
    const otherAsk = makeCert({ subject: 'SEV-Milan', issuer: 'ARK-Milan', publicKey: createPublicKey(milan.asvkKey), signer: milan.arkKey, serial: 0x10002 });
    const vek = makeVek(milan, { hwId: CHIP, tcb: { bl: 4, tee: 0, snp: 24, ucode: 219 } });
    // re-sign the VCEK with the other ASK's key (the ASVK key here): only the supplied ASK verifies it
    const vcek = makeCert({
      subject: 'SEV-VCEK',
      issuer: 'SEV-Milan',
      publicKey: createPublicKey(vek.key),
      signer: milan.asvkKey,
      extensions: [...parseExt(vek.der)],
    });
    const report = signReport(vek.key, { chipId: CHIP, tcb: TCB });
    expect(verifySnpReport(report, { certificates: { vcek }, roots: milan.roots, now: T0 }).error?.code).toBe('SNP_CHAIN_SIGNATURE');
    const res = verifySnpReport(report, { certificates: { vcek, ask: otherAsk }, roots: milan.roots, now: T0 });
    expect(res.ok).toBe(true);
    expect(res.checks.find((c) => c.id === 'chain')!.detail).toContain('(ASK, supplied)');
  });

  it('a VEK signed by the ARK directly, or with a certificate subject that is no VEK, is refused', () => {
    const vek = makeVek(milan, { hwId: CHIP });
    const pub = createPublicKey(vek.key);
    const direct = makeCert({ subject: 'SEV-VCEK', issuer: 'ARK-Milan', publicKey: pub, signer: milan.arkKey, extensions: parseExt(vek.der) });
    const report = signReport(vek.key, { chipId: CHIP, tcb: TCB });
    expect(verifySnpReport(report, { certificates: { vcek: direct }, roots: milan.roots, now: T0 }).error?.code).toBe('SNP_CHAIN_SIGNATURE');
    const odd = makeCert({ subject: 'SEV-SOMETHING', issuer: 'SEV-Milan', publicKey: pub, signer: milan.askKey, extensions: parseExt(vek.der) });
    expect(verifySnpReport(report, { certificates: { vcek: odd }, roots: milan.roots, now: T0 }).error?.code).toBe('SNP_CERT_PROFILE');
  });

  it('signature algorithm identifiers: both AMD encodings pass; any other (here PSS with SHA-256) is SNP_CERT_PROFILE', () => {
    const alg = (hex: string) => AsnConvert.parse(Buffer.from(hex, 'hex'), AlgorithmIdentifier);
    expect(code(pair({ algorithm: alg(PSS_ALGORITHM_IDENTIFIERS[0]!) }))).toBeUndefined();
    const sha256 = PSS_ALGORITHM_IDENTIFIERS[1]!.replace(/0609608648016503040202/g, '0609608648016503040201');
    expect(code(pair({ algorithm: alg(sha256) }))).toBe('SNP_CERT_PROFILE');
  });
});

describe('step 9: validity', () => {
  it('an expired or not yet valid VCEK: SNP_CERT_VALIDITY', () => {
    expect(code(pair({ notBefore: new Date('2019-01-01Z'), notAfter: new Date('2026-05-31T23:59:59Z') }))).toBe('SNP_CERT_VALIDITY');
    expect(code(pair({ notBefore: new Date('2026-06-01T00:00:01Z') }))).toBe('SNP_CERT_VALIDITY');
  });
  it('an expired ARK/ASK (after 2040) with a VCEK still in its window: SNP_CERT_VALIDITY naming the CA', () => {
    const res = run(pair({ notAfter: new Date('2050-01-01Z') }), { now: new Date('2041-01-01Z') });
    expect(res.error?.code).toBe('SNP_CERT_VALIDITY');
    expect(res.error?.message).toMatch(/SEV-Milan|ARK-Milan/);
  });
});

describe("step 9: revocation (AMD's ARK-signed CRL)", () => {
  it('a revoked ASK is refused (SNP_REVOKED), in DER and PEM', () => {
    for (const pem of [false, true]) {
      const res = run(pair(), { crls: [makeCrl(milan, { revoked: [0x10001], pem })] });
      expect(res.error?.code).toBe('SNP_REVOKED');
      expect(res.error?.message).toContain('ASK SEV-Milan (serial 0x010001)');
    }
  });
  it('a revoked VCEK is refused (SNP_REVOKED)', () => {
    const res = run(pair({ serial: 0x4242 }), { crls: [makeCrl(milan, { revoked: [0x99, 0x4242] })] });
    expect(res.error?.code).toBe('SNP_REVOKED');
    expect(res.error?.message).toContain('VCEK (serial 0x4242)');
  });
  it('a CRL listing other serials: checked and passed', () => {
    const res = run(pair({ serial: 0x4242 }), { crls: [makeCrl(milan, { revoked: [0x99, 0x10002] })] });
    expect(res.ok).toBe(true);
    expect(res.checks.find((c) => c.id === 'revocation')).toMatchObject({ status: 'pass', detail: expect.stringContaining('not revoked') });
  });
  it('a CRL not signed by the ARK always fails (SNP_CRL_UNAVAILABLE), as does an unparsable one', () => {
    expect(code(pair(), { crls: [makeCrl(milan, { signer: milan.askKey })] })).toBe('SNP_CRL_UNAVAILABLE');
    expect(code(pair(), { crls: [Buffer.from('garbage')] })).toBe('SNP_CRL_UNAVAILABLE');
    expect(() => parseSnpCrl(Buffer.concat([makeCrl(milan), Buffer.alloc(1)]))).toThrow(expect.objectContaining({ code: 'SNP_CRL_UNAVAILABLE' }));
  });
  it("modes: require needs a CRL of this ARK; another generation's CRL is ignored; off ignores even a revoking CRL", () => {
    expect(code(pair(), { crl: 'require' })).toBe('SNP_CRL_UNAVAILABLE');
    expect(code(pair(), { crl: 'require', crls: [makeCrl(turin)] })).toBe('SNP_CRL_UNAVAILABLE');
    const ignored = run(pair(), { crls: [makeCrl(turin, { revoked: [0x10001] })] });
    expect(ignored.ok).toBe(true);
    expect(ignored.checks.find((c) => c.id === 'revocation')!.status).toBe('skip');
    expect(code(pair(), { crl: 'require', crls: [makeCrl(milan)] })).toBeUndefined();
    expect(code(pair(), { crl: 'off', crls: [makeCrl(milan, { revoked: [0x10001] })] })).toBeUndefined();
  });
  it('an expired CRL: refused in require mode; otherwise still read (a revocation does not expire)', () => {
    const old = { thisUpdate: new Date('2025-01-01Z'), nextUpdate: new Date('2025-02-01Z') };
    expect(code(pair(), { crl: 'require', crls: [makeCrl(milan, old)] })).toBe('SNP_CRL_UNAVAILABLE');
    const res = run(pair(), { crls: [makeCrl(milan, old)] });
    expect(res.ok).toBe(true);
    expect(res.checks.find((c) => c.id === 'revocation')!.detail).toContain('expired');
    expect(code(pair(), { crls: [makeCrl(milan, { ...old, revoked: [0x10001] })] })).toBe('SNP_REVOKED');
  });
});

describe('step 11: the report against its certificate', () => {
  it('TCB mismatch between report and VCEK: SNP_TCB_MISMATCH naming the component', () => {
    const res = run(pair({}, { tcb: milanTcb(4, 0, 24, 220) }));
    expect(res.error?.code).toBe('SNP_TCB_MISMATCH');
    expect(res.error?.message).toContain('ucode report 220 ≠ certificate 219');
    const spl4 = run(pair({}, { tcb: Buffer.from([4, 0, 1, 0, 0, 0, 24, 219]) }));
    expect(spl4.error?.code).toBe('SNP_TCB_MISMATCH');
    expect(spl4.error?.message).toContain('spl_4');
  });
  it('a VCEK of another chip: SNP_CHIP_ID_MISMATCH; a masked CHIP_ID: SNP_CHIP_ID_MASKED unless allowed', () => {
    expect(code(pair({ hwId: Buffer.alloc(64, 0x5b) }))).toBe('SNP_CHIP_ID_MISMATCH');
    const masked = pair({}, { chipId: Buffer.alloc(64) });
    expect(code(masked)).toBe('SNP_CHIP_ID_MASKED');
    expect(run(masked, { allowMaskedChipId: true }).checks.find((c) => c.id === 'chip-id')!.detail).toContain('masked');
    // the wrapped OCTET STRING form of hwID is accepted (§3.5)
    expect(code(pair({ hwId: Buffer.concat([Buffer.from([0x04, 0x40]), CHIP]) }))).toBeUndefined();
  });
  it('profile violations: SNP_CERT_PROFILE', () => {
    expect(code(pair({ omit: [AmdOid.HW_ID] }))).toBe('SNP_CERT_PROFILE');
    expect(code(pair({ omit: [AmdOid.SPL_4] }))).toBe('SNP_CERT_PROFILE');
    expect(code(pair({ omit: [AmdOid.UCODE_SPL] }))).toBe('SNP_CERT_PROFILE');
    expect(code(pair({ structVersion: 1 }))).toBe('SNP_CERT_PROFILE');
    expect(code(pair({ hwId: Buffer.alloc(8, 0x5a) }))).toBe('SNP_CERT_PROFILE'); // 8 bytes on Milan
  });
  it('productName: the part before "-" must name the generation (SNP_PRODUCT_MISMATCH)', () => {
    expect(code(pair({ productName: 'Milan-B0' }))).toBeUndefined();
    expect(code(pair({ productName: 'Genoa' }))).toBe('SNP_PRODUCT_MISMATCH');
    expect(code(pair({ productName: 'MilanX' }))).toBe('SNP_PRODUCT_MISMATCH');
  });
  it('a valid VLEK for a report that says VCEK: SNP_SIGNER_MISMATCH; the VLEK-signed report passes with its CSP', () => {
    const vlek = pair({ kind: 'vlek', csp: 'CN=cloud.example' });
    expect(code(vlek)).toBe('SNP_SIGNER_MISMATCH');
    const signed = pair({ kind: 'vlek', csp: 'CN=cloud.example' }, { keyInfo: 1 << 2, chipId: Buffer.alloc(64) });
    const res = run(signed, { vlekCspAllowList: ['CN=cloud.example'] }, 'vlek');
    expect(res.ok).toBe(true);
    expect(res.checks.find((c) => c.id === 'chain')!.detail).toBe('ARK-Milan → SEV-VLEK-Milan (ASVK, pinned) → SEV-VLEK');
    expect(code(signed, { vlekCspAllowList: ['CN=other'] }, 'vlek')).toBe('SNP_VLEK_CSP');
    expect(code(pair({ kind: 'vlek', omit: [AmdOid.CSP_ID] }, { keyInfo: 1 << 2 }), {}, 'vlek')).toBe('SNP_CERT_PROFILE');
  });
  it('Turin: hwID is 8 bytes and CHIP_ID must be that prefix followed by zeros', () => {
    const base = vec(`${MS}/turin_attestation_report.bin`);
    const tcb = Buffer.from('0101010400000051', 'hex');
    const tpair = (chip: Buffer) =>
      pair({ hwId: Buffer.alloc(8, 0x77), tcb: { fmc: 1, bl: 1, tee: 1, snp: 4, ucode: 81 } }, { base, tcb, chipId: chip }, turin);
    const opts = { roots: turin.roots };
    expect(code(tpair(Buffer.concat([Buffer.alloc(8, 0x77), Buffer.alloc(56)])), opts)).toBeUndefined();
    expect(code(tpair(Buffer.concat([Buffer.alloc(8, 0x77), Buffer.alloc(56, 1)])), opts)).toBe('SNP_CHIP_ID_MISMATCH');
    expect(code(tpair(Buffer.concat([Buffer.alloc(8, 0x78), Buffer.alloc(56)])), opts)).toBe('SNP_CHIP_ID_MISMATCH');
    const fmc = run(
      pair(
        { hwId: Buffer.alloc(8, 0x77), tcb: { fmc: 2, bl: 1, tee: 1, snp: 4, ucode: 81 } },
        { base, tcb, chipId: Buffer.concat([Buffer.alloc(8, 0x77), Buffer.alloc(56)]) },
        turin,
      ),
      opts,
    );
    expect(fmc.error?.code).toBe('SNP_TCB_MISMATCH');
    expect(fmc.error?.message).toContain('fmc report 1 ≠ certificate 2');
  });
});

/** The AMD extensions of a DER certificate, to re-issue them under another signer. */
function parseExt(der: Buffer): [string, Buffer][] {
  return [...parseSnpCertificate(der).extensions.entries()];
}
