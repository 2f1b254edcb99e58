import { igvmChecksum } from '../../src/igvm/checksum';
import type { IgvmDirective, IgvmFile } from '../../src/igvm/layout';

/** Recomputes the checksum of a hand-edited file (so a test reaches the check it means to exercise). */
export function fixChecksum(file: Buffer): Buffer {
  const out = Buffer.from(file);
  const fixed = out.readUInt32LE(4) === 2 ? 32 : 24;
  const off = out.readUInt32LE(8);
  const size = out.readUInt32LE(12);
  out.writeUInt32LE(igvmChecksum(out.subarray(0, fixed), out.subarray(off, off + size)), 0x14);
  return out;
}

export const pattern = (seed: number, n = 4096): Buffer => Buffer.from(Array.from({ length: n }, (_, i) => (seed * 31 + i * 7 + 3) & 0xff));

/** A VMSA-like page: `seed` bytes in the first 0x670, zeros after, cr0 as given. */
export function vmsaPage(seed: number, cr0 = 0x31n): Buffer {
  const p = Buffer.alloc(4096);
  pattern(seed, 0x670).copy(p);
  p.writeBigUInt64LE(cr0, 0x158);
  return p;
}

/** A one-platform SNP file with the given directives (a data page is added so the file has file data). */
export function snpFile(directives: IgvmDirective[], extra: Partial<IgvmFile> = {}): IgvmFile {
  return {
    formatVersion: 1,
    platforms: [{ compatibilityMask: 1, highestVtl: 0, platformType: 2, platformVersion: 1, sharedGpaBoundary: 0n }],
    initializations: [{ kind: 'guest_policy', policy: 0x30000n, compatibilityMask: 1 }],
    directives: [{ kind: 'page_data', gpa: 0x1000n, compatibilityMask: 1, flags: 0, dataType: 0, data: pattern(1) }, ...directives],
    ...extra,
  };
}
