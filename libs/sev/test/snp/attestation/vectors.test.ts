import { createHash } from 'node:crypto';
import {
  decodeHexReport,
  decodeHwId,
  decodeTcb,
  isSnpError,
  parseSnpCertificate,
  parseSnpReport,
  pemBlocks,
  pinnedSnpRootCertificates,
  pinnedSnpRoots,
  SNP_GENERATIONS,
  verifyReportSignature,
  verifySnpChain,
  verifySnpReport,
  vekExtensions,
  type SnpGeneration,
  type VerifySnpReportOptions,
} from '../../../src';
import { MS, T0, T1, vec } from './synthetic';

/**
 * Every file of ../shared/vectors/snp verifies or fails exactly as MANIFEST.md (and spec §6) says. Expected field
 * values are copied from the MANIFEST's decoded dumps, which were computed independently of this code.
 */
const report = (p: string) => (p.endsWith('.hex') ? decodeHexReport(vec(p).toString('latin1'))! : vec(p));
const evidence = JSON.parse(vec('trustee/evidence.json').toString()) as { cert_chain: { cert_type: string; data: number[] }[] };
const evidenceVcek = Buffer.from(evidence.cert_chain[0]!.data);

interface Real {
  report: string;
  vek: string | Buffer;
  kind: 'vcek' | 'vlek';
  version: number;
  gen: SnpGeneration;
  now: Date;
  tcb: string;
  chip8: string;
  measurement: string;
  expected: 'pass' | 'SNP_VMPL';
}

const REAL: Real[] = [
  {
    report: 'virtee-sev/report_milan.hex',
    vek: 'virtee-sev/vcek_milan.der',
    kind: 'vcek',
    version: 2,
    gen: 'milan',
    now: T0,
    tcb: 'bl=3 tee=0 snp=8 ucode=115',
    chip8: 'd49554ec717f4e5b',
    measurement: '7a1e5c266c0108dbc9bb94fa926951320940915d0aafb42464bd88b579ea158d3e1a0dc39b2c60bd95b9c480cd81841f',
    expected: 'pass',
  },
  {
    report: 'trustee/test-report.bin',
    vek: 'trustee/test-vcek.der',
    kind: 'vcek',
    version: 2,
    gen: 'milan',
    now: T0,
    tcb: 'bl=3 tee=0 snp=8 ucode=115',
    chip8: 'c38427a30d4c7af9',
    measurement: 'a1f3930413247bb38cfc171579ea3c12d5fe4901f0c792f63fd75d98f1ef827c23500644e0e692e6be917f9050d3d38c',
    expected: 'pass',
  },
  {
    report: 'trustee/test-vlek-report.bin',
    vek: 'trustee/test-vlek.der',
    kind: 'vlek',
    version: 3,
    gen: 'milan',
    now: T1,
    tcb: 'bl=4 tee=0 snp=24 ucode=217',
    chip8: '0000000000000000',
    measurement: '8922ebbdd00ec2c541f36a6e7a82a8773a7accb451ed67bc94e740dbe92c93c4e8c9af857f5ceeb5a493df2a570d7bf0',
    expected: 'SNP_VMPL',
  },
  {
    report: `${MS}/milan_attestation_report.bin`,
    vek: `${MS}/milan_vcek.pem`,
    kind: 'vcek',
    version: 3,
    gen: 'milan',
    now: T0,
    tcb: 'bl=4 tee=0 snp=24 ucode=219',
    chip8: '4ffb5cb4fd594f3f',
    measurement: '5feee30d6d7e1a29f403d70a4198237ddfb13051a2d6976439487c609388ed7f98189887920ab2fa0096903a0c23fca1',
    expected: 'pass',
  },
  {
    report: `${MS}/genoa_attestation_report.bin`,
    vek: `${MS}/genoa_vcek.pem`,
    kind: 'vcek',
    version: 3,
    gen: 'genoa',
    now: T0,
    tcb: 'bl=10 tee=0 snp=23 ucode=84',
    chip8: 'b1e24a27bbc3a4d5',
    measurement: '5feee30d6d7e1a29f403d70a4198237ddfb13051a2d6976439487c609388ed7f98189887920ab2fa0096903a0c23fca1',
    expected: 'pass',
  },
  {
    report: 'derived/trustee-evidence-report-rebuilt.bin',
    vek: evidenceVcek,
    kind: 'vcek',
    version: 3,
    gen: 'genoa',
    now: T0,
    tcb: 'bl=10 tee=0 snp=23 ucode=25',
    chip8: '371c55d6d15cb50f',
    measurement: '6a6519d757e68c2e939c9dbbbc1828498e8de35d2766dd05f1a2cca5059d0cf4ae62a36d75c837974dd50b315506e73e',
    expected: 'pass',
  },
  {
    report: `${MS}/turin_attestation_report.bin`,
    vek: `${MS}/turin_vcek.pem`,
    kind: 'vcek',
    version: 5,
    gen: 'turin',
    now: T0,
    tcb: 'fmc=1 bl=1 tee=1 snp=4 ucode=81',
    chip8: '59790fb1c39f35c1',
    measurement: '6d6c354511d6f7c6d7504668903dc5bdc066a048b651840d8d03fb85299ebfa142fccf1d1b0baca496841bdf243619d4',
    expected: 'pass',
  },
];
const vekBytes = (r: Real) => (typeof r.vek === 'string' ? vec(r.vek) : r.vek);

/** The MANIFEST's configuration: defaults + allowV2Reports, the report's own MEASUREMENT and REPORT_DATA expected. */
function manifestOptions(r: Real, extra: VerifySnpReportOptions = {}): VerifySnpReportOptions {
  const p = parseSnpReport(report(r.report));
  return {
    certificates: { [r.kind]: vekBytes(r) },
    now: r.now,
    allowV2Reports: true,
    measurements: [p.measurement],
    expectedReportData: p.reportData,
    ...extra,
  };
}

describe('real reports (MANIFEST "Reports (decoded)", spec §6.2)', () => {
  it.each(REAL.map((r) => [r.report, r] as const))('%s: %s', (_name, r) => {
    const res = verifySnpReport(report(r.report), manifestOptions(r));
    if (r.expected === 'pass') {
      expect(res.checks.filter((c) => c.status === 'fail')).toEqual([]);
      expect(res.ok).toBe(true);
    } else {
      expect(res.error?.code).toBe(r.expected);
      // everything before the failing step passed
      expect(res.checks.filter((c) => c.step < 14).every((c) => c.status === 'pass' || c.status === 'skip')).toBe(true);
    }
    // decoded values as the MANIFEST lists them
    expect(res.report!.version).toBe(r.version);
    expect(res.generation).toBe(r.gen);
    expect(res.chain!.kind).toBe(r.kind);
    const tcb = res.tcb!.reported;
    expect(`${tcb.fmc === undefined ? '' : `fmc=${tcb.fmc} `}bl=${tcb.bootloader} tee=${tcb.tee} snp=${tcb.snp} ucode=${tcb.microcode}`).toBe(r.tcb);
    expect(res.report!.chipId.subarray(0, 8).toString('hex')).toBe(r.chip8);
    expect(res.report!.measurement.toString('hex')).toBe(r.measurement);
  });

  it('every check runs in the spec order and is reported once', () => {
    const res = verifySnpReport(report(REAL[6]!.report), manifestOptions(REAL[6]!));
    expect(res.checks.map((c) => c.step)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 10, 11, 11, 11, 11, 11, 11, 12, 14, 16]);
    expect(res.checks.find((c) => c.id === 'chip-id')!.status).toBe('pass');
    expect(res.checks.find((c) => c.id === 'csp')!.status).toBe('skip'); // a VCEK has no CSP_ID
  });

  it('version 2 reports need allowV2Reports (SNP_REPORT_VERSION otherwise)', () => {
    for (const r of REAL.filter((x) => x.version === 2)) {
      expect(verifySnpReport(report(r.report), { ...manifestOptions(r), allowV2Reports: false }).error?.code).toBe('SNP_REPORT_VERSION');
    }
  });

  it('the VLEK report: expired at T0 (SNP_CERT_VALIDITY); passes at T1 with vmpl 1; CSP allow-list', () => {
    const r = REAL[2]!;
    expect(verifySnpReport(report(r.report), manifestOptions(r, { now: T0 })).error?.code).toBe('SNP_CERT_VALIDITY');
    expect(verifySnpReport(report(r.report), manifestOptions(r, { vmpl: 1 })).ok).toBe(true);
    const csp = verifySnpReport(report(r.report), manifestOptions(r, { vmpl: 1, vlekCspAllowList: ['CN=cc-us-east-2.amazonaws.com'] }));
    expect(csp.ok).toBe(true);
    expect(csp.checks.find((c) => c.id === 'csp')!.detail).toContain('CN=cc-us-east-2.amazonaws.com');
    expect(verifySnpReport(report(r.report), manifestOptions(r, { vmpl: 1, vlekCspAllowList: ['CN=other.example'] })).error?.code).toBe('SNP_VLEK_CSP');
    expect(verifySnpReport(report(r.report), manifestOptions(r, { vmpl: 1 })).checks.find((c) => c.id === 'chip-id')!.status).toBe('skip');
  });

  it('a report with another REPORT_DATA or MEASUREMENT expected fails steps 12 and 16', () => {
    const r = REAL[3]!;
    expect(verifySnpReport(report(r.report), manifestOptions(r, { expectedReportData: Buffer.alloc(64, 1) })).error?.code).toBe('SNP_REPORT_DATA');
    expect(verifySnpReport(report(r.report), manifestOptions(r, { measurements: [Buffer.alloc(48)] })).error?.code).toBe('SNP_MEASUREMENT');
  });

  it('each report verifies with its own VEK only (7 × 7 matrix: exactly the diagonal)', () => {
    for (const [i, r] of REAL.entries()) {
      const p = parseSnpReport(report(r.report));
      for (const [j, other] of REAL.entries())
        expect([i, j, verifyReportSignature(p, parseSnpCertificate(vekBytes(other)).publicKey)]).toEqual([i, j, i === j]);
    }
  });

  it('each VEK chains under its own generation only (SNP_CHAIN_SIGNATURE under the two others)', () => {
    const roots = pinnedSnpRoots();
    for (const r of [...REAL, { gen: 'turin', vek: 'virtee-sev/vcek_turin.der' } as Real]) {
      const vek = parseSnpCertificate(vekBytes(r));
      for (const g of SNP_GENERATIONS) {
        if (g === r.gen) expect(verifySnpChain(g, roots[g]!, vek).generation).toBe(g);
        else expect(() => verifySnpChain(g, roots[g]!, vek)).toThrow(expect.objectContaining({ code: 'SNP_CHAIN_SIGNATURE' }));
      }
    }
  });

  it('a VLEK never verifies under an ASK, nor a VCEK under an ASVK', () => {
    const m = pinnedSnpRoots().milan!;
    const vlek = parseSnpCertificate(vec('trustee/test-vlek.der'));
    const vcek = parseSnpCertificate(vec(`${MS}/milan_vcek.pem`));
    expect(() => verifySnpChain('milan', { ...m, asvk: m.ask }, vlek)).toThrow(expect.objectContaining({ code: 'SNP_CHAIN_SIGNATURE' }));
    expect(() => verifySnpChain('milan', { ...m, ask: m.asvk }, vcek)).toThrow(expect.objectContaining({ code: 'SNP_CHAIN_SIGNATURE' }));
  });
});

describe('derived vectors (spec §6.4)', () => {
  it('trustee-evidence-report-rebuilt.bin is the file the MANIFEST names, and passes with the VCEK from evidence.json', () => {
    const b = vec('derived/trustee-evidence-report-rebuilt.bin');
    expect(createHash('sha256').update(b).digest('hex')).toBe('18e907bf99a957d8ccf30f2081da17f673da648a7a0b9d551a866e875234c21a');
    expect(createHash('sha256').update(evidenceVcek).digest('hex')).toBe('71cdcd49d922dcf959cb9667b5fbd1c18af80dfddfdc5a1eefa9e577461f4903');
    const p = parseSnpReport(b);
    expect(p.cpuid).toEqual({ family: 0x19, model: 0xa0, stepping: 2 });
    expect(verifySnpReport(b, { certificates: { vcek: evidenceVcek }, now: T0 }).ok).toBe(true);
  });

  it('milan-v3_measurement-bitflip.bin: chain and MBZ pass, SNP_REPORT_SIGNATURE at step 10', () => {
    const res = verifySnpReport(vec('derived/milan-v3_measurement-bitflip.bin'), { certificates: { vcek: vec(`${MS}/milan_vcek.pem`) }, now: T0 });
    expect(res.error?.code).toBe('SNP_REPORT_SIGNATURE');
    expect(res.checks.find((c) => c.id === 'chain')!.status).toBe('pass');
    expect(res.checks.find((c) => c.id === 'reserved')!.status).toBe('pass');
    expect(res.checks.find((c) => c.id === 'tcb')!.status).toBe('not-run');
  });

  it('turin-v5_sig-padding-nonzero.bin: the ECDSA signature still verifies, the MBZ rule refuses it (SNP_REPORT_RESERVED, step 3)', () => {
    const b = vec('derived/turin-v5_sig-padding-nonzero.bin');
    expect(verifyReportSignature(parseSnpReport(b), parseSnpCertificate(vec(`${MS}/turin_vcek.pem`)).publicKey)).toBe(true);
    const res = verifySnpReport(b, { certificates: { vcek: vec(`${MS}/turin_vcek.pem`) }, now: T0 });
    expect(res.error?.code).toBe('SNP_REPORT_RESERVED');
    expect(res.error?.message).toContain('0x330');
    expect(res.checks.filter((c) => c.status === 'pass').map((c) => c.step)).toEqual([1, 2]);
  });

  it('genoa-v3_vcek-with-milan-ca.pem: the Milan ARK for a Genoa report is SNP_ARK_MISMATCH; the Milan ASK alone SNP_CHAIN_SIGNATURE', () => {
    const [vcek, ask, ark] = pemBlocks(vec('derived/genoa-v3_vcek-with-milan-ca.pem').toString('latin1'), 'CERTIFICATE');
    const rep = vec(`${MS}/genoa_attestation_report.bin`);
    expect(verifySnpReport(rep, { certificates: { vcek, ask, ark }, now: T0 }).error?.code).toBe('SNP_ARK_MISMATCH');
    expect(verifySnpReport(rep, { certificates: { vcek, ask }, now: T0 }).error?.code).toBe('SNP_CHAIN_SIGNATURE');
    // the VCEK itself is the right one: with the pinned Genoa CA (or the real Genoa ASK/ARK supplied) it passes
    expect(verifySnpReport(rep, { certificates: { vcek }, now: T0 }).ok).toBe(true);
    const genoa = pinnedSnpRootCertificates('genoa');
    const supplied = verifySnpReport(rep, { certificates: { vcek, ask: genoa.ask, ark: genoa.ark }, now: T0 });
    expect(supplied.ok).toBe(true);
  });
});

describe('certificate-only vectors (spec §6.3)', () => {
  it('virtee-sev/vcek_turin.der: Turin profile (structVersion 1, fmcSPL, no spl_4, 8-byte raw hwID)', () => {
    const c = parseSnpCertificate(vec('virtee-sev/vcek_turin.der'));
    const x = vekExtensions(c);
    expect(x).toMatchObject({ structVersion: 1, productName: 'Turin', fmc: 0, bootloader: 0, tee: 0, snp: 0, microcode: 9, spl5: 0, spl6: 0, spl7: 0 });
    expect(x.spl4).toBeUndefined();
    expect(decodeHwId(x.hwIdValue!, 8)!.toString('hex')).toBe('1e550a8ee5cf9f4d');
    expect(c.serial).toBe('00');
    expect(verifySnpChain('turin', pinnedSnpRoots().turin!, c).intermediate.subjectCn).toBe('SEV-Turin');
  });

  it('trustee/test-vcek-invalid-{legacy,new}.der: raw and OCTET STRING hwID decode to the same bytes; the signature fails under every ASK', () => {
    const want = Buffer.from(Array.from({ length: 64 }, (_, i) => i)).toString('hex');
    const legacy = parseSnpCertificate(vec('trustee/test-vcek-invalid-legacy.der'));
    const fresh = parseSnpCertificate(vec('trustee/test-vcek-invalid-new.der'));
    expect(decodeHwId(vekExtensions(legacy).hwIdValue!, 64)!.toString('hex')).toBe(want);
    expect(decodeHwId(vekExtensions(fresh).hwIdValue!, 64)!.toString('hex')).toBe(want);
    expect(vekExtensions(legacy)).toMatchObject({ productName: 'Milan-B0', bootloader: 3, tee: 0, snp: 10, microcode: 169, spl4: 0 });
    expect(vekExtensions(fresh)).toMatchObject({ bootloader: 0, tee: 0, snp: 0, microcode: 30 });
    for (const c of [legacy, fresh])
      for (const g of SNP_GENERATIONS)
        expect(() => verifySnpChain(g, pinnedSnpRoots()[g]!, c)).toThrow(expect.objectContaining({ code: 'SNP_CHAIN_SIGNATURE' }));
  });

  it('a hwID of the wrong length in either form does not decode', () => {
    expect(decodeHwId(Buffer.alloc(63), 64)).toBeUndefined();
    expect(decodeHwId(Buffer.concat([Buffer.from([0x04, 0x08]), Buffer.alloc(8)]), 64)).toBeUndefined();
    expect(decodeHwId(Buffer.concat([Buffer.from([0x04, 0x08]), Buffer.alloc(8, 1)]), 8)!.toString('hex')).toBe('0101010101010101'); // the wrapped Turin form
    expect(decodeHwId(Buffer.concat([Buffer.from([0x04, 0x08]), Buffer.alloc(9)]), 8)).toBeUndefined(); // a byte after the OCTET STRING
    expect(decodeHwId(Buffer.concat([Buffer.from([0x03, 0x40]), Buffer.alloc(64)]), 64)).toBeUndefined(); // not an OCTET STRING
  });
});

describe('pinned roots (spec §3.2)', () => {
  const SHA: Record<SnpGeneration, [string, string, string]> = {
    milan: [
      '69d063b45344d26a2e94e1f4210de49ef555308287d4c174445c95639a540bcd',
      '67d303bd3905fd38db8b20e0793699870e7fa612eaad5dec358293fd8c0bac1b',
      'c5e081f59b7efab1fe2f8b505e159704e72f29cab7ef7cf628a05a42439082f5',
    ],
    genoa: [
      '4c6598d19c18719c5dfd4a7d335f674e5bfe1d8f800cea2cf270c10d103db2f1',
      '5464738c1546aed5f2cecf1dc98c5c960a92e8913238a61711bc90ec6e828521',
      '197e610743a917d6b9bb982a5a9226ccc0a15b611be0619e626aca9151457372',
    ],
    turin: [
      '1f084161a44bb6d93778a904877d4819cafa5d05ef4193b2ded9dd9c73dd3f6a',
      '5b77ef5fe7a7a004fd9032668fba9d0fda22f88c4442069a479636a6ae3b3185',
      '104e10a8bd060a3c20a434261a57d0588fd65a88915b4f65b08bdecaf8df1a3c',
    ],
  };
  it.each(SNP_GENERATIONS)("%s: the embedded ARK, ASK and ASVK are AMD's (SHA-256 of the DER, CNs, serials)", (g) => {
    const c = pinnedSnpRootCertificates(g);
    const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
    expect([sha(c.ark), sha(c.ask), sha(c.asvk)]).toEqual(SHA[g]);
    const r = pinnedSnpRoots()[g]!;
    const P = g[0]!.toUpperCase() + g.slice(1);
    expect([r.ark.subjectCn, r.ask.subjectCn, r.asvk.subjectCn]).toEqual([`ARK-${P}`, `SEV-${P}`, `SEV-VLEK-${P}`]);
    // the KDS cert_chain bodies (CRLF on Turin) hold the same certificates
    const kds = pemBlocks(vec(`roots/kds-cert-chain/ask_ark_${g}${g === 'turin' ? '_vcek' : ''}.pem`).toString('latin1'), 'CERTIFICATE');
    expect(kds.map(sha)).toEqual([SHA[g][1], SHA[g][0]]);
  });

  it("the TCB layouts decode the spec's worked examples (§1.6)", () => {
    expect(decodeTcb(Buffer.from('0300000000000873', 'hex'), 'milan')).toMatchObject({ bootloader: 3, tee: 0, snp: 8, microcode: 115 });
    expect(decodeTcb(Buffer.from('0a00000000001b1b', 'hex'), 'genoa')).toMatchObject({ bootloader: 10, tee: 0, snp: 27, microcode: 27 });
    expect(decodeTcb(Buffer.from('0101010400000051', 'hex'), 'turin')).toMatchObject({ fmc: 1, bootloader: 1, tee: 1, snp: 4, microcode: 81 });
  });

  it('test-report.bin carries the ID block the MANIFEST lists', () => {
    const p = parseSnpReport(vec('trustee/test-report.bin'));
    expect([p.guestSvn, p.familyId[0], p.imageId[0], p.keyInfo.authorKeyEn, p.currentFirmware]).toEqual([4, 1, 2, false, { major: 1, minor: 52, build: 4 }]);
    expect(p.idKeyDigest.toString('hex')).toMatch(/^0356215882a8.*7a44a3$/);
    expect(isSnpError(new Error('x'))).toBe(false);
  });
});
