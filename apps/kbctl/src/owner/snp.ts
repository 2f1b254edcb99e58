import type { Group } from '../cli';
import { snpIdBlock, snpIdBlockVerify } from './snp-id-block';
import { snpVerifyReport } from './snp-verify';

/** `kbctl snp …`: the guest owner's offline SEV-SNP tools. */
export const snpGroup: Group = {
  name: 'snp',
  summary: 'SEV-SNP tools (offline): ID blocks (snp-create-id-block), attestation reports (snpguest verify)',
  commands: [snpIdBlock, snpIdBlockVerify, snpVerifyReport],
};
