/**
 * SEV-SNP launch digest chaining (../shared/specs/launch-digest.md §4.1; SNP ABI spec, table "PAGE_INFO"):
 *
 *   LD_0 = 48 zero bytes
 *   PAGE_INFO = LD_i(48) ‖ CONTENTS(48) ‖ u16 0x0070 ‖ u8 PAGE_TYPE ‖ u8 IMI_PAGE ‖ u8 × 3 VMPL perms ‖ u8 reserved ‖ u64 GPA
 *   LD_{i+1} = SHA-384(PAGE_INFO)
 *
 * Every SNP digest (QEMU/OVMF guests, SVSM, IGVM images, the simulated Secure Processor) is built from this one step,
 * so the layout exists once. The permission and reserved bytes are always 0 for a launch (the two peer tools even
 * order them differently), so they are not parameters.
 */
import { SevError } from '../errors';
import { pageHashes, type PageHashOptions } from './page-hashes';
import { sha384 } from './sha384';

export { sha384 };

/** PAGE_TYPE values of SNP_LAUNCH_UPDATE (SNP ABI spec, table "Page Types"). */
export const SnpPageType = {
  NORMAL: 0x01,
  VMSA: 0x02,
  ZERO: 0x03,
  UNMEASURED: 0x04,
  SECRETS: 0x05,
  CPUID: 0x06,
} as const;
export type SnpPageTypeValue = (typeof SnpPageType)[keyof typeof SnpPageType];

export const SNP_LD_SIZE = 48;
export const PAGE_INFO_SIZE = 0x70;
export const SNP_PAGE_SIZE = 4096;
/** KVM's INITIAL_VMSA_GPA: "-1" page-aligned with the bits above 51 cleared (§4.1, VMSA row). */
export const SNP_VMSA_GPA = 0x0000_ffff_ffff_f000n;

const ZERO48 = Buffer.alloc(SNP_LD_SIZE);

const MAX_GPA = (1n << 64n) - 1n;

function checkGpa(gpa: bigint): void {
  if (gpa < 0n || gpa > MAX_GPA) throw new SevError('ERR_SEV_RANGE', `GPA 0x${gpa.toString(16)} is not a 64-bit address`);
  if ((gpa & 0xfffn) !== 0n) throw new SevError('ERR_SEV_ARGUMENT', `GPA 0x${gpa.toString(16)} is not 4 KiB aligned`);
}

/** The PAGE_INFO fields after CONTENTS, written in place (`out` is 112 bytes; LD and CONTENTS are set by the caller). */
function writePageInfoTail(out: Buffer, pageType: SnpPageTypeValue, gpa: bigint): void {
  out.writeUInt16LE(PAGE_INFO_SIZE, 96);
  out[98] = pageType;
  // 99 IMI_PAGE, 100-102 VMPL permissions, 103 reserved: all zero for a launch.
  out.fill(0, 99, 104);
  out.writeBigUInt64LE(gpa, 104);
}

/** Encodes one PAGE_INFO structure (112 bytes). `contents` is SHA-384 of the page, or 48 zero bytes per §4.1's table. */
export function encodePageInfo(ld: Uint8Array, contents: Uint8Array, pageType: SnpPageTypeValue, gpa: bigint): Buffer {
  if (ld.length !== SNP_LD_SIZE) throw new SevError('ERR_SEV_LENGTH', `launch digest must be ${SNP_LD_SIZE} bytes, got ${ld.length}`);
  if (contents.length !== SNP_LD_SIZE) throw new SevError('ERR_SEV_LENGTH', `page contents digest must be ${SNP_LD_SIZE} bytes, got ${contents.length}`);
  checkGpa(gpa);
  const out = Buffer.alloc(PAGE_INFO_SIZE);
  out.set(ld, 0);
  out.set(contents, 48);
  writePageInfoTail(out, pageType, gpa);
  return out;
}

/**
 * A running SNP launch digest. `update` takes a page's bytes for NORMAL and VMSA pages (hashed here) and nothing for
 * the types whose CONTENTS are zero (ZERO, UNMEASURED, SECRETS, CPUID).
 */
export class SnpLaunchDigest {
  private ld: Buffer;

  constructor(initial?: Uint8Array) {
    if (initial !== undefined && initial.length !== SNP_LD_SIZE) {
      throw new SevError('ERR_SEV_LENGTH', `an initial SNP launch digest must be ${SNP_LD_SIZE} bytes, got ${initial.length}`);
    }
    this.ld = initial === undefined ? Buffer.from(ZERO48) : Buffer.from(initial);
  }

  /** Adds one 4 KiB page. */
  update(pageType: SnpPageTypeValue, gpa: bigint, page?: Uint8Array): this {
    let contents: Uint8Array = ZERO48;
    if (pageType === SnpPageType.NORMAL || pageType === SnpPageType.VMSA) {
      if (page === undefined || page.length !== SNP_PAGE_SIZE) {
        throw new SevError('ERR_SEV_LENGTH', `a ${pageType === SnpPageType.VMSA ? 'VMSA' : 'NORMAL'} page must be ${SNP_PAGE_SIZE} bytes`);
      }
      contents = sha384(page);
    } else if (page !== undefined) {
      throw new SevError('ERR_SEV_ARGUMENT', `page type ${pageType} is measured without its contents`);
    }
    return this.updateWithContents(pageType, gpa, contents);
  }

  /** Adds one page whose CONTENTS field is already known (e.g. an IGVM page given by its hash). */
  updateWithContents(pageType: SnpPageTypeValue, gpa: bigint, contents: Uint8Array): this {
    this.ld = sha384(encodePageInfo(this.ld, contents, pageType, gpa));
    return this;
  }

  /**
   * Adds every 4 KiB page of `data` (a multiple of 4096 bytes) as NORMAL pages from `gpa` upwards. The page hashes
   * (CONTENTS, §4.1) may come from worker threads (page-hashes.ts, `opts.threads`); the chain itself runs here, in order.
   * `onPages` is told the pages chained so far, every 256 pages and at the end.
   */
  updateNormalRange(gpa: bigint, data: Uint8Array, opts: PageHashOptions & { onPages?: (done: number) => void } = {}): this {
    if (data.length % SNP_PAGE_SIZE !== 0)
      throw new SevError('ERR_SEV_LENGTH', `measured data must be a multiple of ${SNP_PAGE_SIZE} bytes, got ${data.length}`);
    if (data.length === 0) return this;
    // Every GPA of the range is checked before anything is hashed, so a refused range leaves the digest unchanged.
    checkGpa(gpa);
    checkGpa(gpa + BigInt(data.length - SNP_PAGE_SIZE));
    const hashes = pageHashes(data, opts);
    try {
      // One PAGE_INFO buffer for the whole range (§4.1): per page only LD, CONTENTS and GPA change, so the rest of the
      // tail is written once, and the GPA as two 32-bit halves (a BigInt per page costs ~5 % of a digest here).
      const info = Buffer.alloc(PAGE_INFO_SIZE);
      writePageInfoTail(info, SnpPageType.NORMAL, gpa);
      const gpaLow = Number(gpa & 0xffff_ffffn);
      const gpaHigh = Number(gpa >> 32n);
      let ld: Buffer = this.ld;
      for (let i = 0; i < hashes.count; i++) {
        info.set(ld, 0);
        info.set(hashes.get(i), 48);
        const low = gpaLow + i * SNP_PAGE_SIZE; // < 2^53: the range was checked to fit in 64 bits
        info.writeUInt32LE(low % 0x1_0000_0000, 104);
        info.writeUInt32LE(gpaHigh + Math.floor(low / 0x1_0000_0000), 108);
        ld = sha384(info);
        if (opts.onPages && ((i + 1) % 256 === 0 || i + 1 === hashes.count)) {
          this.ld = ld;
          opts.onPages(i + 1);
        }
      }
      this.ld = ld;
    } finally {
      hashes.close();
    }
    return this;
  }

  /** The current digest (a copy). */
  digest(): Buffer {
    return Buffer.from(this.ld);
  }
}
