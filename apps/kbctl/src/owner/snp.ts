import { snpImportCerts, snpListCerts } from '../admin/snp-certs';
import type { Group } from '../cli';
import { snpIdBlock, snpIdBlockVerify } from './snp-id-block';
import { snpVerifyReport } from './snp-verify';

/** `kbctl snp …`: the guest owner's offline SEV-SNP tools. */
export const snpGroup: Group = {
  name: 'snp',
  summary: "SEV-SNP tools: ID blocks (snp-create-id-block), attestation reports (snpguest verify), the broker's certificate store",
  commands: [snpIdBlock, snpIdBlockVerify, snpVerifyReport, snpImportCerts, snpListCerts],
};
