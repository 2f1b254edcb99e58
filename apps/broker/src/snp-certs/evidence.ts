import { parseSnpCertificate, vekExtensions, type SnpEvidenceCertificates } from '@kb/sev';
import type { CertificateSource, SnpProduct } from './source';

/**
 * (a) Certificates from the evidence: the host's certificate table as the guest sent it (kbs-protocol.md §9.1
 * `cert_chain`). Per attestation. Only what the table holds is answered; an ASK/ARK is answered only when its
 * productName/CN names the product asked for (the verifier pins the ARK anyway and uses a supplied ASK only if the
 * pinned ARK signed it, snp-attestation.md §5.2 step 8).
 */
export function evidenceSource(certs: SnpEvidenceCertificates, crl?: Uint8Array): CertificateSource {
  return {
    getVcek: async () => (certs.vcek ? Buffer.from(certs.vcek) : undefined),
    getChain: async (product: SnpProduct) => {
      if (!certs.ask || !certs.ark) return undefined;
      try {
        const ask = parseSnpCertificate(certs.ask, 'ASK');
        if (!ask.subjectCn?.endsWith(`-${product}`)) return undefined;
      } catch {
        return undefined; // the verifier reports unparsable certificates; here it is just not an answer
      }
      return { ask: Buffer.from(certs.ask), ark: Buffer.from(certs.ark) };
    },
    getCrl: async () => (crl ? Buffer.from(crl) : undefined),
  };
}

/** The productName of a VCEK (prefix before '-', §3.4), or undefined when it is not a parsable VCEK. */
export function vcekProduct(der: Uint8Array): string | undefined {
  try {
    return vekExtensions(parseSnpCertificate(der, 'VCEK')).productName?.split('-')[0];
  } catch {
    return undefined;
  }
}
