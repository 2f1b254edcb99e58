import type { Group } from '../cli';
import { snpVerifyReport } from './snp-verify';

/** `kbctl snp …`: the guest owner's offline SEV-SNP tools. Other snp commands join this list. */
export const snpGroup: Group = {
  name: 'snp',
  summary: 'SEV-SNP tools (offline): verify attestation reports',
  commands: [snpVerifyReport],
};
