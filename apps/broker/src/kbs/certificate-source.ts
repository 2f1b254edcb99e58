/**
 * Where SNP endorsement certificates come from when the evidence does not carry them (../shared/specs/kbs-protocol.md
 * §9.4): the operator's offline store or AMD's KDS, implemented by the certificate-store module. The default uses
 * only what the guest sent; the chain is always verified against the pinned AMD roots, never trusted as given.
 */
import type { SnpEvidenceCertificates, SnpReport } from '@kb/sev';

export interface CertificateSource {
  /**
   * Certificates for this report (VCEK/VLEK by chip id and reported TCB, ASK/ASVK) or undefined when unknown.
   * Called only when the evidence lacks a VCEK/VLEK; must not block on the network for chips already known.
   */
  certificatesFor(report: SnpReport, evidence: SnpEvidenceCertificates): Promise<SnpEvidenceCertificates | undefined>;
  /** CRLs to check revocation against (PEM or DER), if the source holds any. */
  crls?(report: SnpReport): Promise<readonly Uint8Array[]>;
}

export const evidenceOnlyCertificates: CertificateSource = {
  certificatesFor: async () => undefined,
};
