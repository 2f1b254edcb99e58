import * as fc from 'fast-check';
import {
  describeSnpReport,
  parseSnpReport,
  ReportOffset as O,
  SNP_ERROR_STEP,
  SnpError,
  verifySnpReport,
  type SnpErrorCode,
  type VerifySnpReportOptions,
} from '../../../src';
import { MS, T0, vec } from './synthetic';

/**
 * Steps 1–6 and 10 of the checklist on in-memory mutations of real reports (spec §6.4, last paragraph): each
 * mutation is refused with its code at its step, before anything from the report is trusted.
 */
const milan = () => Buffer.from(vec(`${MS}/milan_attestation_report.bin`));
const turin = () => Buffer.from(vec(`${MS}/turin_attestation_report.bin`));
const opts: VerifySnpReportOptions = { certificates: { vcek: vec(`${MS}/milan_vcek.pem`) }, now: T0 };
const turinOpts: VerifySnpReportOptions = { certificates: { vcek: vec(`${MS}/turin_vcek.pem`) }, now: T0 };
const code = (b: Uint8Array, o = opts) => verifySnpReport(b, o).error?.code;
const mutate = (f: (b: Buffer) => void, base = milan()) => {
  f(base);
  return base;
};

describe('report layout (spec §1.2)', () => {
  it('parses every field at its offset (MS Milan v3 report, values from the MANIFEST)', () => {
    const r = parseSnpReport(milan());
    expect(r).toMatchObject({ version: 3, guestSvn: 2, policy: 0x3001fn, vmpl: 0, signatureAlgo: 1, cpuid: { family: 0x19, model: 0x01, stepping: 1 } });
    expect(r.keyInfo).toEqual({ raw: 0, authorKeyEn: false, maskChipKey: false, signingKey: 0 });
    expect(r.hostData.toString('hex')).toBe('4f4448c67f3c8dfc8de8a5e37125d807dadcc41f06cf23f615dbd52eec777d10');
    expect(r.reportIdMa.every((b) => b === 0xff)).toBe(true);
    expect(r.launchMitVector).toBeUndefined();
    expect(describeSnpReport(r, 'milan')).toBe('version 3, Milan, signed by the VCEK, VMPL 0, policy 0x3001f, firmware 1.55.29');
  });

  it('v5: mitigation vectors; v2: no CPUID', () => {
    const t = parseSnpReport(turin());
    expect([t.launchMitVector, t.currentMitVector, t.platformInfo]).toEqual([63n, 63n, 0x65n]);
    expect(parseSnpReport(vec('trustee/test-report.bin')).cpuid).toBeUndefined();
  });

  it('keeps a private copy: changing the input afterwards changes nothing', () => {
    const b = milan();
    const r = parseSnpReport(b);
    b[O.MEASUREMENT]! ^= 1;
    expect(r.measurement[0]).toBe(0x5f);
  });
});

describe('steps 1–6: structural refusals, first failure wins', () => {
  const cases: [string, () => Buffer, SnpErrorCode][] = [
    ['1183 bytes', () => milan().subarray(0, 1183), 'SNP_REPORT_SIZE'],
    ['1185 bytes', () => Buffer.concat([milan(), Buffer.alloc(1)]), 'SNP_REPORT_SIZE'],
    ['VERSION 1', () => mutate((b) => b.writeUInt32LE(1, O.VERSION)), 'SNP_REPORT_VERSION'],
    ['VERSION 6', () => mutate((b) => b.writeUInt32LE(6, O.VERSION)), 'SNP_REPORT_VERSION'],
    ['POLICY bit 17 cleared', () => mutate((b) => (b[O.POLICY + 2]! &= ~0x02)), 'SNP_REPORT_RESERVED'],
    ['POLICY bit 26 set', () => mutate((b) => (b[O.POLICY + 3]! |= 0x04)), 'SNP_REPORT_RESERVED'],
    ['KEY_INFO SIGNING_KEY 3', () => mutate((b) => b.writeUInt32LE(3 << 2, O.KEY_INFO)), 'SNP_REPORT_RESERVED'],
    ['KEY_INFO bit 5', () => mutate((b) => b.writeUInt32LE(1 << 5, O.KEY_INFO)), 'SNP_REPORT_RESERVED'],
    ['reserved 0x04C', () => mutate((b) => (b[0x04c] = 1)), 'SNP_REPORT_RESERVED'],
    ['reserved after CPUID (0x18B)', () => mutate((b) => (b[0x18b] = 1)), 'SNP_REPORT_RESERVED'],
    ['reserved 0x1EB', () => mutate((b) => (b[0x1eb] = 1)), 'SNP_REPORT_RESERVED'],
    ['reserved 0x1EF', () => mutate((b) => (b[0x1ef] = 1)), 'SNP_REPORT_RESERVED'],
    ['v3 mitigation-vector bytes (reserved before v5)', () => mutate((b) => (b[0x1f8] = 1)), 'SNP_REPORT_RESERVED'],
    ['reserved tail 0x29F', () => mutate((b) => (b[0x29f] = 1)), 'SNP_REPORT_RESERVED'],
    ['upper bytes of R', () => mutate((b) => (b[0x2d0] = 1)), 'SNP_REPORT_RESERVED'],
    ['upper bytes of S', () => mutate((b) => (b[0x32f] = 1)), 'SNP_REPORT_RESERVED'],
    ['signature padding 0x49F', () => mutate((b) => (b[0x49f] = 1)), 'SNP_REPORT_RESERVED'],
    ['SIGNATURE_ALGO 2', () => mutate((b) => b.writeUInt32LE(2, O.SIGNATURE_ALGO)), 'SNP_SIG_ALGO'],
    ['SIGNING_KEY 7', () => mutate((b) => b.writeUInt32LE(7 << 2, O.KEY_INFO)), 'SNP_UNSIGNED'],
    ['MASK_CHIP_KEY', () => mutate((b) => b.writeUInt32LE(2, O.KEY_INFO)), 'SNP_UNSIGNED'],
    ['zero R', () => mutate((b) => b.fill(0, O.SIGNATURE_R, O.SIGNATURE_R + 72)), 'SNP_UNSIGNED'],
    ['CPUID family 0x17 (Zen 2)', () => mutate((b) => (b[O.CPUID_FAM_ID] = 0x17)), 'SNP_GENERATION'],
    ['CPUID Venice (0x1A/0x50)', () => mutate((b) => ((b[O.CPUID_FAM_ID] = 0x1a), (b[O.CPUID_MOD_ID] = 0x50))), 'SNP_GENERATION'],
    ['CPUID Genoa range end 0x20 (outside)', () => mutate((b) => (b[O.CPUID_MOD_ID] = 0x20)), 'SNP_GENERATION'],
    [
      'v2 with a Turin-like CHIP_ID',
      () => mutate((b) => b.fill(0, O.CHIP_ID + 8, O.CHIP_ID + 64), Buffer.from(vec('trustee/test-report.bin'))),
      'SNP_GENERATION',
    ],
  ];
  it.each(cases)('%s → %s', (_n, make, want) => {
    const res = verifySnpReport(make(), { ...opts, allowV2Reports: true });
    expect(res.error?.code).toBe(want);
    const failed = res.checks.find((c) => c.status === 'fail')!;
    expect(failed.step).toBe(SNP_ERROR_STEP[want]);
    expect(res.checks.filter((c) => c.step > failed.step).every((c) => c.status === 'not-run')).toBe(true);
    expect(res.error).toBeInstanceOf(SnpError);
  });

  it('PLATFORM_INFO reserved bits are not MBZ (the real Turin v5 report has bit 6 set)', () => {
    expect(parseSnpReport(turin()).platformInfo & 0x40n).toBe(0x40n);
    expect(verifySnpReport(turin(), turinOpts).ok).toBe(true);
  });

  it('a Genoa model 0xAF part is Genoa (inclusive range, unlike TR); the Milan VCEK then fails the chain', () => {
    const b = mutate((x) => (x[O.CPUID_MOD_ID] = 0xaf));
    const res = verifySnpReport(b, opts);
    expect(res.checks.find((c) => c.id === 'generation')!.detail).toMatch(/^Genoa/);
    expect(res.error?.code).toBe('SNP_CHAIN_SIGNATURE');
  });
});

describe('step 10: any change to a signed field the structural steps do not interpret breaks the signature', () => {
  // bytes steps 1–6 read: VERSION, POLICY byte 2 (bit 17) and byte 3 (bits 24–31), SIGNATURE_ALGO, KEY_INFO, CPUID, and every MBZ range
  const interpreted = new Set<number>();
  const mark = (a: number, b: number) => {
    for (let i = a; i < b; i++) interpreted.add(i);
  };
  mark(0x000, 0x004);
  mark(0x00a, 0x010);
  mark(0x034, 0x038);
  mark(0x048, 0x050);
  mark(0x188, 0x1a0);
  mark(0x1eb, 0x1ec);
  mark(0x1ef, 0x1f0);
  mark(0x1f8, 0x2a0);
  const offsets = Array.from({ length: 0x2a0 }, (_, i) => i).filter((i) => !interpreted.has(i));

  it('the upstream tamper tests: FAMILY_ID bit 7 of byte 21 (VS), +1 on IMAGE_ID byte 42 and REPORTED_TCB byte 0x180 (TR)', () => {
    const hex = (p: string) => Buffer.from(vec(p).toString('latin1').trim(), 'hex');
    const vs = hex('virtee-sev/report_milan.hex');
    vs[21]! ^= 0x80;
    expect(code(vs, { certificates: { vcek: vec('virtee-sev/vcek_milan.der') }, now: T0, allowV2Reports: true })).toBe('SNP_REPORT_SIGNATURE');
    for (const off of [42, 0x180]) {
      const tr = Buffer.from(vec('trustee/test-report.bin'));
      tr[off] = (tr[off]! + 1) & 0xff;
      expect(code(tr, { certificates: { vcek: vec('trustee/test-vcek.der') }, now: T0, allowV2Reports: true })).toBe('SNP_REPORT_SIGNATURE');
    }
  });

  it('a random bit flip in a signed, uninterpreted byte → SNP_REPORT_SIGNATURE (property)', () => {
    fc.assert(
      fc.property(fc.constantFrom(...offsets), fc.integer({ min: 0, max: 7 }), (off, bit) => {
        const b = milan();
        b[off]! ^= 1 << bit;
        expect(code(b)).toBe('SNP_REPORT_SIGNATURE');
      }),
      { numRuns: 60 },
    );
  });
});

describe('options', () => {
  it("bad option values are the caller's error (SNP_ARGUMENT thrown), not a verdict on the report", () => {
    expect(() => verifySnpReport(milan(), { expectedReportData: Buffer.alloc(32) })).toThrow(expect.objectContaining({ code: 'SNP_ARGUMENT' }));
    expect(() => verifySnpReport(milan(), { measurements: [Buffer.alloc(32)] })).toThrow(expect.objectContaining({ code: 'SNP_ARGUMENT' }));
    expect(() => verifySnpReport(milan(), { vmpl: 4 })).toThrow(expect.objectContaining({ code: 'SNP_ARGUMENT' }));
  });

  it('vmpl null skips step 14; a missing VEK is SNP_VEK_MISSING; garbage is SNP_CERT_PARSE', () => {
    const vlek = Buffer.from(vec('trustee/test-vlek-report.bin'));
    const res = verifySnpReport(vlek, { certificates: { vlek: vec('trustee/test-vlek.der') }, now: new Date('2025-06-01T00:00:00Z'), vmpl: null });
    expect(res.ok).toBe(true);
    expect(res.checks.find((c) => c.id === 'vmpl')!.status).toBe('skip');
    expect(code(milan(), { now: T0 })).toBe('SNP_VEK_MISSING');
    expect(code(vlek, { certificates: { vcek: vec(`${MS}/milan_vcek.pem`) }, now: T0 })).toBe('SNP_VEK_MISSING'); // VLEK-signed, only a VCEK given
    expect(code(milan(), { certificates: { vcek: Buffer.from('not a certificate') }, now: T0 })).toBe('SNP_CERT_PARSE');
    expect(code(milan(), { certificates: { vcek: Buffer.concat([vec('virtee-sev/vcek_milan.der'), Buffer.alloc(1)]) }, now: T0 })).toBe('SNP_CERT_PARSE');
    expect(code(milan(), { certificates: { vcek: pinnedRsa() }, now: T0 })).toBe('SNP_CERT_PARSE'); // an RSA key is not a VEK
  });
});

function pinnedRsa(): Buffer {
  return vec('roots/milan/ask.pem');
}
