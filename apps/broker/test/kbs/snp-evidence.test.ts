/**
 * SNP evidence at /attest (§9) with the real vectors: their REPORT_DATA is not tied to a nonce we chose, so the
 * binding is taken from the report itself to reach the end of the checklist, and changed to prove it is compared
 * over all 64 bytes. Certificates from the evidence or from a CertificateSource; HOST_DATA against init-data (§11).
 */
import { createHash } from 'node:crypto';
import { parseSnpEvidenceJson, type SnpEvidenceCertificates } from '@kb/sev';
import type { CertificateSource } from '../../src/kbs/certificate-source';
import { evidenceOnlyCertificates } from '../../src/kbs/certificate-source';
import { initDataDigest, verifySnpEvidence } from '../../src/kbs/evidence/snp';
import { vector } from './support/client';

const genoa = vector('upstream/snp/e2e-evidence-genoa-v3.json');
const milanV2 = vector('derived/snp/test-report-milan-v2.evidence.json');
const vlek = vector('derived/snp/test-vlek-report-milan-v3.evidence.json');
const NOW = new Date('2025-06-01T00:00:00Z');
const reportData = (e: any) => Buffer.from(e.attestation_report.report_data as number[]);
const opts = { certificates: evidenceOnlyCertificates, now: NOW };

describe('SNP evidence', () => {
  it('verifies the Genoa e2e evidence (VCEK in cert_chain) and yields trustee-named claims', async () => {
    const v = await verifySnpEvidence(genoa, reportData(genoa), null, opts);
    expect(v.verification.ok).toBe(true);
    expect(v.claims).toMatchObject({
      reported_tcb_bootloader: 10,
      reported_tcb_tee: 0,
      reported_tcb_snp: 23,
      reported_tcb_microcode: 25,
      policy_debug_allowed: false,
      policy_smt_allowed: true,
      vmpl: 0,
      generation: 'genoa',
    });
    expect(v.claims.measurement).toBe(Buffer.from(genoa.attestation_report.measurement).toString('hex'));
  });

  it('compares all 64 REPORT_DATA bytes (a change in the last padding byte is refused)', async () => {
    const rd = reportData(genoa);
    rd[63] = rd[63]! ^ 1;
    await expect(verifySnpEvidence(genoa, rd, null, opts)).rejects.toMatchObject({
      type: 'AttestationError',
      reason: expect.stringContaining('SNP_REPORT_DATA'),
    });
  });

  it('refuses a report whose signed bytes were changed (measurement)', async () => {
    const tampered = structuredClone(genoa);
    tampered.attestation_report.measurement[0] ^= 1;
    await expect(verifySnpEvidence(tampered, reportData(genoa), null, opts)).rejects.toMatchObject({ reason: expect.stringContaining('SNP_REPORT_SIGNATURE') });
  });

  it('refuses the v2 report unless v2 is allowed, then verifies it', async () => {
    await expect(verifySnpEvidence(milanV2, reportData(milanV2), null, opts)).rejects.toMatchObject({ reason: expect.stringContaining('SNP_REPORT_VERSION') });
    const v = await verifySnpEvidence(milanV2, reportData(milanV2), null, { ...opts, allowV2Reports: true });
    expect(v.claims.generation).toBe('milan');
  });

  it('refuses the VLEK report at VMPL 1 (the guest must attest from VMPL 0)', async () => {
    await expect(verifySnpEvidence(vlek, reportData(vlek), null, opts)).rejects.toMatchObject({ reason: expect.stringContaining('SNP_VMPL') });
  });

  it('without certificates in the evidence: refused by the evidence-only default, verified with a CertificateSource', async () => {
    const bare = { ...genoa, cert_chain: null };
    await expect(verifySnpEvidence(bare, reportData(genoa), null, opts)).rejects.toMatchObject({ reason: expect.stringContaining('certificate source') });
    const known: SnpEvidenceCertificates = parseSnpEvidenceJson(genoa).certificates;
    const calls: string[] = [];
    const source: CertificateSource = {
      certificatesFor: async (report) => {
        calls.push(report.chipId.toString('hex').slice(0, 8));
        return known;
      },
    };
    const v = await verifySnpEvidence(bare, reportData(genoa), null, { ...opts, certificates: source });
    expect(v.verification.ok).toBe(true);
    expect(calls).toEqual([Buffer.from(genoa.attestation_report.chip_id).toString('hex').slice(0, 8)]);
  });

  it('checks HOST_DATA against init-data when it is sent (§11)', async () => {
    const body = 'version = "0.1.0"\nalgorithm = "sha256"\n[data]\n';
    expect(initDataDigest({ format: 'toml', body })).toEqual(createHash('sha256').update(body).digest());
    await expect(verifySnpEvidence(genoa, reportData(genoa), { format: 'toml', body }, opts)).rejects.toMatchObject({
      reason: expect.stringContaining('HOST_DATA'),
    });
    expect(() => initDataDigest({ format: 'json', body })).toThrow(/toml/);
    expect(() => initDataDigest({ format: 'toml', body: 'algorithm = "md5"' })).toThrow(/algorithm/);
  });

  it('refuses malformed evidence with a clear reason', async () => {
    await expect(verifySnpEvidence({ attestation_report: { version: 'x' } }, Buffer.alloc(64), null, opts)).rejects.toMatchObject({
      reason: expect.stringContaining('SNP_EVIDENCE_FORMAT'),
    });
    await expect(verifySnpEvidence('nope', Buffer.alloc(64), null, opts)).rejects.toMatchObject({ type: 'AttestationError' });
  });
});
