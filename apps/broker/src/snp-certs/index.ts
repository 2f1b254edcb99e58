import type { SnpEvidenceCertificates } from '@kb/sev';
import type { SnpCertificateStore } from '@kb/store';
import { evidenceSource } from './evidence';
import type { KdsFetcher } from './kds';
import { offlineStoreSource } from './offline-store';
import { chainSources, type CertificateSource } from './source';

export * from './source';
export { evidenceSource, vcekProduct } from './evidence';
export { offlineStoreSource, importSnpCertificates, classifySnpFiles, SnpImportError, vcekKey, caKey } from './offline-store';
export { KdsFetcher, parseRetryAfter, type KdsOptions } from './kds';

/**
 * The certificate source for one attestation: the evidence's table, then the offline store, then (when enabled) KDS
 * (snp-attestation.md §4.4 order). The KBS front-end calls this with the certificates parsed from the evidence.
 */
export function certificateSourceFor(opts: { evidence?: SnpEvidenceCertificates; store: Pick<SnpCertificateStore, 'getSnpCertificate'>; kds?: KdsFetcher }): CertificateSource {
  return chainSources([...(opts.evidence ? [evidenceSource(opts.evidence)] : []), offlineStoreSource(opts.store), ...(opts.kds ? [opts.kds] : [])]);
}
