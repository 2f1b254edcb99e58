/**
 * The launch digest of an IGVM file exactly as coconut-svsm's `igvmmeasure … measure` computes it
 * (../shared/specs/igvm.md §3): directives in file order; SNP uses the PAGE_INFO chain of snp/page-info.ts, SEV and
 * SEV-ES one SHA-256 over page data and VMSA pages. Quirks kept on purpose (they decide the digest): VP contexts are
 * measured whatever their mask (§3.4), a PARAMETER_INSERT is one page (§3.3), data-less pages are NORMAL zero pages
 * unless --native-zero.
 */
import { createHash } from 'node:crypto';
import { pageHashes } from '../snp/page-hashes';
import { SnpLaunchDigest, SnpPageType, SNP_VMSA_GPA, type SnpPageTypeValue } from '../snp/page-info';
import { constantTimeEqual } from '../util/bytes';
import { IgvmError } from './errors';
import { hex, IGVM_PAGE_SIZE, PageDataFlag, PageDataType, PAGES_PER_2MB, PlatformType, VMSA_CR0_OFFSET, type IgvmDirective, type IgvmFile } from './layout';

export type IgvmPlatformName = 'sev-snp' | 'sev-es' | 'sev';
export const IGVM_PLATFORMS: readonly IgvmPlatformName[] = ['sev-snp', 'sev-es', 'sev'];
const PLATFORM_TYPE: Record<IgvmPlatformName, number> = { 'sev-snp': PlatformType.SEV_SNP, 'sev-es': PlatformType.SEV_ES, sev: PlatformType.SEV };

/** SHA-384 of a 4 KiB zero page: the CONTENTS of a data-less NORMAL page without --native-zero (§3.3). */
const ZERO_PAGE_SHA384 = createHash('sha384').update(Buffer.alloc(IGVM_PAGE_SIZE)).digest();
const PAGE = BigInt(IGVM_PAGE_SIZE);

export interface IgvmMeasureOptions {
  /** default sev-snp */
  platform?: IgvmPlatformName;
  /** measure data-less NORMAL pages as SNP ZERO pages (igvmmeasure -n) */
  nativeZero?: boolean;
  /** apply igvmmeasure's QEMU/KVM rules (-c, §3.6) */
  checkKvm?: boolean;
  /** one call per run of contiguous pages of one type (igvmmeasure -v, §3.8) */
  onRange?: (range: MeasuredRange) => void;
  /** called after each measured page with the pages done and the total (for progress on large images) */
  onProgress?: (pagesDone: number, pagesTotal: number) => void;
  /** worker threads hashing SNP PAGE_DATA (snp/page-hashes.ts): 0 for none; default automatic; the same digest either way */
  threads?: number;
}

export type MeasuredPageKind = 'Normal' | 'Unmeasured' | 'Zero' | 'Secrets' | 'Cpuid' | 'VMSA';
export interface MeasuredRange {
  gpa: bigint;
  length: bigint;
  kind: MeasuredPageKind;
}

export interface IgvmMeasurement {
  platform: IgvmPlatformName;
  /** the compatibility mask of the chosen platform (the first SUPPORTED_PLATFORM of its type) */
  compatibilityMask: number;
  /** 48 bytes (SEV-SNP) or 32 bytes (SEV, SEV-ES) */
  digest: Buffer;
  /** the LD of the last SNP_ID_BLOCK matching the platform (sev-snp only), checked by checkIdBlock */
  idBlockLd?: Buffer;
  /** number of measured pages (PAGE_INFO steps, or hashed pages for SEV/SEV-ES) */
  pages: number;
}

const KIND: Record<SnpPageTypeValue, MeasuredPageKind> = {
  [SnpPageType.NORMAL]: 'Normal',
  [SnpPageType.VMSA]: 'VMSA',
  [SnpPageType.ZERO]: 'Zero',
  [SnpPageType.UNMEASURED]: 'Unmeasured',
  [SnpPageType.SECRETS]: 'Secrets',
  [SnpPageType.CPUID]: 'Cpuid',
};

/** The mask of the first SUPPORTED_PLATFORM of the chosen type, or an error (igvmmeasure §3.1 step 2). */
export function platformMask(file: IgvmFile, platform: IgvmPlatformName): number {
  const p = file.platforms.find((x) => x.platformType === PLATFORM_TYPE[platform]);
  if (!p) throw new IgvmError('PlatformNotInFile', `IGVM file is not compatible with the specified platform (${platform}).`);
  return p.compatibilityMask;
}

/** Computes the launch digest of a parsed file. Does not check an ID block: see checkIdBlock. */
export function measureIgvm(file: IgvmFile, opts: IgvmMeasureOptions = {}): IgvmMeasurement {
  const platform = opts.platform ?? 'sev-snp';
  const mask = platformMask(file, platform);
  const snp = platform === 'sev-snp';
  const ld = new SnpLaunchDigest();
  const sha256 = createHash('sha256');
  let pages = 0;
  let vmsaSeen = false;
  let idBlockLd: Buffer | undefined;

  const total = opts.onProgress ? countPages(file, mask, snp) : 0;
  let run: MeasuredRange | undefined;
  const report = (gpa: bigint, kind: MeasuredPageKind) => {
    opts.onProgress?.(pages, total);
    if (!opts.onRange) return;
    if (run && run.kind === kind && run.gpa + run.length === gpa) run.length += PAGE;
    else {
      if (run) opts.onRange(run);
      run = { gpa, length: PAGE, kind };
    }
  };
  const snpPage = (type: SnpPageTypeValue, gpa: bigint, contents?: Uint8Array) => {
    if (contents) ld.updateWithContents(type, gpa, contents);
    else ld.update(type, gpa);
    pages++;
    report(gpa, KIND[type]);
  };
  const sevPage = (gpa: bigint, data: Uint8Array) => {
    sha256.update(data);
    pages++;
    report(gpa, 'Normal');
  };

  const measureDirective = (d: IgvmDirective, i: number) => {
    const at = { toString: () => `directive #${i} (${d.kind})` }; // formatted only for an error
    switch (d.kind) {
      case 'page_data': {
        if ((d.compatibilityMask & mask) === 0) return;
        const large = (d.flags & PageDataFlag.IS_2MB_PAGE) !== 0;
        // igvmmeasure asserts data length == page size and panics on a 2 MiB page with (4 KiB of) data (§3.3).
        if (large && d.data) throw new IgvmError('LargePageWithData', `${at}: a 2 MiB PAGE_DATA at ${hex(d.gpa)} with file data cannot be measured`);
        const count = large ? PAGES_PER_2MB : 1;
        for (let k = 0; k < count; k++) {
          const gpa = d.gpa + BigInt(k) * PAGE;
          if (!snp) {
            // SEV/SEV-ES: the data bytes of every matching page, whatever its type and flags; none for data-less pages (§3.5).
            if (d.data) sevPage(gpa, d.data);
            continue;
          }
          if (d.dataType === PageDataType.NORMAL) {
            if ((d.flags & PageDataFlag.UNMEASURED) !== 0) snpPage(SnpPageType.UNMEASURED, gpa);
            else if (d.data)
              snpPage(SnpPageType.NORMAL, gpa, d.data.length === IGVM_PAGE_SIZE ? hashes.get(nextData++) : createHash('sha384').update(d.data).digest());
            else if (opts.nativeZero) snpPage(SnpPageType.ZERO, gpa);
            else snpPage(SnpPageType.NORMAL, gpa, ZERO_PAGE_SHA384);
          } else if (d.dataType === PageDataType.SECRETS) snpPage(SnpPageType.SECRETS, gpa);
          else snpPage(SnpPageType.CPUID, gpa); // CPUID_DATA and CPUID_XF; the parser refuses other types
        }
        return;
      }
      case 'parameter_insert':
        if ((d.compatibilityMask & mask) === 0) return;
        if (opts.checkKvm && vmsaSeen) {
          throw new IgvmError(
            'InvalidVmsaOrder',
            `KVM Check failed: ${at}: the VMSA must be the final page directive, but a PARAMETER_INSERT at ${hex(d.gpa)} follows it`,
          );
        }
        if (snp) snpPage(SnpPageType.UNMEASURED, d.gpa); // one page, whatever the area's size (§3.3)
        return;
      case 'vp_context':
        if (d.form !== 'snp') return; // native contexts (NATIVE or SEV platforms) are not measured (§3.5)
        if (opts.checkKvm) {
          if (vmsaSeen) {
            throw new IgvmError(
              'InvalidVmsaCount',
              `KVM Check failed: ${at}: More than one VMSA has been provided in the IGVM file. QEMU/KVM only supports setting of the VMSA for the first virtual CPU.`,
            );
          }
          if (d.gpa !== SNP_VMSA_GPA)
            throw new IgvmError('InvalidVmsaGpa', `KVM Check failed: ${at}: the VMSA GPA must be 0x0000FFFFFFFFF000, not ${hex(d.gpa, 16)}`);
          const cr0 = d.data.readBigUInt64LE(VMSA_CR0_OFFSET);
          if (cr0 !== 0x31n && cr0 !== 0x30n) {
            throw new IgvmError(
              'InvalidVmsaCr0',
              `KVM Check failed: ${at}: KVM sets the VMSA CR0 to 0x31 or 0x30, so the file's 0x${cr0.toString(16).padStart(2, '0')} would not be measured as given`,
            );
          }
        }
        vmsaSeen = true;
        // Measured whatever the directive's mask (§3.4).
        if (snp) snpPage(SnpPageType.VMSA, d.gpa, createHash('sha384').update(d.data).digest());
        else sevPage(d.gpa, d.data);
        return;
      case 'snp_id_block':
        if (snp && (d.compatibilityMask & mask) !== 0) idBlockLd = Buffer.from(d.ld); // the last matching one wins (§3.7)
        return;
      default:
        return; // not measured (§3.3 last row)
    }
  };
  // The SHA-384 of every NORMAL page with data (its CONTENTS, launch-digest.md §4.1) is computed ahead, in parallel
  // when that pays off, and taken in order by measureDirective.
  const hashes = pageHashes(snp ? snpDataPages(file, mask) : [], { threads: opts.threads });
  let nextData = 0;
  try {
    file.directives.forEach(measureDirective);
  } finally {
    hashes.close();
  }
  if (run) opts.onRange!(run);
  return { platform, compatibilityMask: mask, digest: snp ? ld.digest() : sha256.digest(), pages, ...(idBlockLd ? { idBlockLd } : {}) };
}

/** The SNP NORMAL pages with 4 KiB of file data, in the order measureIgvm measures them (the same tests as its loop). */
function snpDataPages(file: IgvmFile, mask: number): Buffer[] {
  const pages: Buffer[] = [];
  for (const d of file.directives) {
    if (d.kind !== 'page_data' || (d.compatibilityMask & mask) === 0 || d.dataType !== PageDataType.NORMAL) continue;
    if ((d.flags & (PageDataFlag.UNMEASURED | PageDataFlag.IS_2MB_PAGE)) !== 0 || d.data?.length !== IGVM_PAGE_SIZE) continue;
    pages.push(d.data);
  }
  return pages;
}

/** The number of pages measureIgvm will measure (the same rules, without hashing). */
function countPages(file: IgvmFile, mask: number, snp: boolean): number {
  let n = 0;
  for (const d of file.directives) {
    if (d.kind === 'page_data' && (d.compatibilityMask & mask) !== 0 && (snp || d.data)) n += (d.flags & PageDataFlag.IS_2MB_PAGE) !== 0 ? PAGES_PER_2MB : 1;
    else if (d.kind === 'parameter_insert' && snp && (d.compatibilityMask & mask) !== 0) n++;
    else if (d.kind === 'vp_context' && d.form === 'snp') n++;
  }
  return n;
}

/**
 * igvmmeasure's ID block rule (§3.1 step 5, §3.7): an ID block recorded for SEV-SNP must carry the computed digest.
 * Only the LD is compared; signatures are checked by verifyIdAuth (snp/id-block-auth.ts) when wanted.
 */
export function checkIdBlock(m: IgvmMeasurement): void {
  if (m.platform !== 'sev-snp' || !m.idBlockLd) return;
  if (!constantTimeEqual(m.idBlockLd, m.digest)) {
    throw new IgvmError(
      'IdBlockMismatch',
      `An ID block has been provided in the IGVM file but the calculated measurement does not match the expected measurement in the ID block. \nExpected: ${m.idBlockLd.toString('hex').toUpperCase()}`,
    );
  }
}

/** Every directive's mask test in one place, for callers that replay a file (the simulated host's loader). */
export function appliesTo(d: IgvmDirective, mask: number): boolean {
  return 'compatibilityMask' in d ? (d.compatibilityMask & mask) !== 0 : true;
}
