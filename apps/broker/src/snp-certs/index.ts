import type { SnpEvidenceCertificates, SnpReport } from '@kb/sev';
import type { CertificateSource as KbsCertificateSource } from '../kbs/certificate-source';
import type { SnpCertificateStore } from '@kb/store';
import { evidenceSource, vcekProduct } from './evidence';
import type { KdsFetcher } from './kds';
import { offlineStoreSource } from './offline-store';
import { chainSources, type CertificateSource, type SnpProduct } from './source';

export * from './source';
export { evidenceSource, vcekProduct } from './evidence';
export { offlineStoreSource, importSnpCertificates, classifySnpFiles, SnpImportError, vcekKey, caKey } from './offline-store';
export { KdsFetcher, parseRetryAfter, type KdsOptions } from './kds';

/**
 * The certificate source for one attestation: the evidence's table, then the offline store, then (when enabled) KDS
 * (snp-attestation.md §4.4 order). The KBS front-end calls this with the certificates parsed from the evidence.
 */
export function certificateSourceFor(opts: {
  evidence?: SnpEvidenceCertificates;
  store: Pick<SnpCertificateStore, 'getSnpCertificate'>;
  kds?: KdsFetcher;
}): CertificateSource {
  return chainSources([...(opts.evidence ? [evidenceSource(opts.evidence)] : []), offlineStoreSource(opts.store), ...(opts.kds ? [opts.kds] : [])]);
}

/**
 * The certificate sources as the KBS front-end asks for them (kbs/certificate-source.ts): when a guest's evidence
 * carries no VCEK/VLEK, the VCEK of its chip and TCB from the offline store, then from AMD's KDS when enabled, with
 * its product's ASK/ARK and CRL. Whatever is found is verified against the pinned roots like evidence certificates.
 */
export function kbsCertificateSource(store: Pick<SnpCertificateStore, 'getSnpCertificate'>, kds?: KdsFetcher): KbsCertificateSource {
  const source = certificateSourceFor({ store, ...(kds ? { kds } : {}) });
  const productOfReport = async (report: SnpReport): Promise<SnpProduct | undefined> => {
    const vcek = await source.getVcek(report);
    return vcek ? (vcekProduct(vcek) as SnpProduct | undefined) : undefined;
  };
  return {
    async certificatesFor(report) {
      const vcek = await source.getVcek(report);
      if (!vcek) return undefined;
      const product = vcekProduct(vcek) as SnpProduct | undefined;
      const chain = product ? await source.getChain(product) : undefined;
      return { vcek, ...(chain ? { ask: chain.ask, ark: chain.ark } : {}) };
    },
    async crls(report) {
      const product = await productOfReport(report);
      const crl = product ? await source.getCrl(product) : undefined;
      return crl ? [crl] : [];
    },
  };
}
