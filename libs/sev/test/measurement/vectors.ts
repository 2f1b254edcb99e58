import { readFileSync } from 'node:fs';
import * as path from 'node:path';

/** ../shared sits beside the repository (CI clones it there). */
export const MEASURE_DIR = path.resolve(__dirname, '../../../../../shared/vectors/measure');

export function measureFile(rel: string): Buffer {
  return readFileSync(path.join(MEASURE_DIR, rel));
}

export const AMDSEV = 'sev-snp-measure/fixtures/ovmf_AmdSev_suffix.bin';
export const OVMFX64 = 'sev-snp-measure/fixtures/ovmf_OvmfX64_suffix.bin';
export const SEVCTL_DIR = 'sevctl/data';
export const SEVCTL_OVMF = 'sevctl/data/OVMF.amdsev.fd_trimmed_edk2-ovmf-20220126gitbb1bba3d77-4.el9';

export const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');
