import { parseSnpEvidenceJson, snpReportFromJson, verifySnpReport } from '../../../src';
import { T0, vec } from './synthetic';

/** trustee's JSON evidence (spec §4.5) rebuilds to the MANIFEST's derived report, byte for byte, and verifies. */
const text = () => vec('trustee/evidence.json').toString();

describe('trustee SnpEvidence JSON', () => {
  it('rebuilds derived/trustee-evidence-report-rebuilt.bin exactly, and the evidence verifies with its own VCEK', () => {
    const { report, certificates } = parseSnpEvidenceJson(text());
    expect(report.equals(vec('derived/trustee-evidence-report-rebuilt.bin'))).toBe(true);
    expect(Object.keys(certificates)).toEqual(['vcek']);
    expect(verifySnpReport(report, { certificates, now: T0 }).ok).toBe(true);
  });

  it('a Turin-layout TCB (fmc set) and v5 mitigation vectors land at their offsets', () => {
    const j = JSON.parse(text()).attestation_report;
    j.reported_tcb = { fmc: 1, bootloader: 2, tee: 3, snp: 4, microcode: 81 };
    j.version = 5;
    j.launch_mit_vector = 63;
    const b = snpReportFromJson(j);
    expect(b.subarray(0x180, 0x188).toString('hex')).toBe('0102030400000051');
    expect(b.readBigUInt64LE(0x1f8)).toBe(63n);
    expect(b.readBigUInt64LE(0x200)).toBe(0n);
  });

  it.each([
    ['not JSON', '{', 'not JSON'],
    ['no report', '{}', 'attestation_report must be an object'],
    [
      'short measurement',
      JSON.stringify({ attestation_report: { ...JSON.parse(text()).attestation_report, measurement: [1, 2] } }),
      'measurement must be an array of 48 bytes',
    ],
    [
      'byte out of range',
      JSON.stringify({ attestation_report: { ...JSON.parse(text()).attestation_report, chip_id: Array(64).fill(256) } }),
      'chip_id must be an array of 64 bytes',
    ],
    ['policy beyond 2^53', JSON.stringify({ attestation_report: { ...JSON.parse(text()).attestation_report, policy: 2 ** 60 } }), 'policy must be an integer'],
    ['bad cert_chain', JSON.stringify({ ...JSON.parse(text()), cert_chain: {} }), 'cert_chain must be an array or null'],
  ])('%s → SNP_EVIDENCE_FORMAT', (_n, input, msg) => {
    expect(() => parseSnpEvidenceJson(input)).toThrow(expect.objectContaining({ code: 'SNP_EVIDENCE_FORMAT', message: expect.stringContaining(msg) }));
  });
});
