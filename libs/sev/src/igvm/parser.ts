/**
 * A strict IGVM parser: accepts exactly the files igvm 0.4.0 accepts (the crate igvmmeasure uses), in the order of
 * checks of ../shared/specs/igvm.md §2.10, and refuses everything else with an IgvmError (stable code + the 0.4.0
 * variant). Nothing here panics or wraps: u32 sums igvm would overflow are computed exactly (§2.10 step 5, §2.8).
 */
import { igvmChecksum } from './checksum';
import { IgvmError } from './errors';
import {
  BODY_SIZE,
  FIXED_HEADER_V1_SIZE,
  FIXED_HEADER_V2_SIZE,
  hex,
  IGVM_MAGIC,
  IGVM_PAGE_SIZE,
  NATIVE_VP_CONTEXT_SIZE,
  PARAMETER_USAGE_TYPES,
  PlatformType,
  sectionOf,
  SEV_VMSA_SIZE,
  VhType,
  type IgvmDirective,
  type IgvmFile,
  type IgvmInitialization,
  type IgvmPlatform,
  type Section,
} from './layout';
import { decodeSnpIdBlock } from './structures';

const SECTION_ORDER: Record<Section, number> = { platform: 0, initialization: 1, directive: 2 };
const PAGE = BigInt(IGVM_PAGE_SIZE);
const aligned = (v: bigint, a: bigint = PAGE) => v % a === 0n;

interface Triple {
  mask: number;
  vpIndex: number;
  vtl: number;
}

/** Parses and validates an IGVM file. The returned model carries copies of all referenced data. */
export function parseIgvm(file: Uint8Array): IgvmFile {
  const buf = Buffer.from(file.buffer, file.byteOffset, file.byteLength);
  const n = buf.length;
  const headerErr = (why: string) => new IgvmError('InvalidFixedHeader', `not a valid IGVM file: ${why}`);

  // §2.10 steps 1–5: the fixed header.
  if (n < FIXED_HEADER_V1_SIZE) throw headerErr(`${n} bytes is shorter than the ${FIXED_HEADER_V1_SIZE}-byte fixed header`);
  if (buf.readUInt32LE(0) !== IGVM_MAGIC) throw headerErr(`bad magic ${hex(buf.readUInt32LE(0), 8)} (expected "IGVM")`);
  const version = buf.readUInt32LE(4);
  let fixedSize: number;
  let architecture: number | undefined;
  if (version === 1) fixedSize = FIXED_HEADER_V1_SIZE;
  else if (version === 2) {
    fixedSize = FIXED_HEADER_V2_SIZE;
    if (n < FIXED_HEADER_V2_SIZE) throw headerErr(`${n} bytes is shorter than the ${FIXED_HEADER_V2_SIZE}-byte version 2 fixed header`);
    architecture = buf.readUInt32LE(0x18);
    if (architecture !== 0 && architecture !== 1) throw headerErr(`unknown architecture ${architecture} (0 x64, 1 AArch64)`);
    const pageSize = buf.readUInt32LE(0x1c);
    if (pageSize !== IGVM_PAGE_SIZE) throw new IgvmError('UnsupportedPageSize', `page size ${hex(pageSize)} is not supported (only 0x1000)`);
  } else throw headerErr(`format version ${version} is not supported (1 or 2)`);
  const vhOffset = buf.readUInt32LE(8);
  const vhSize = buf.readUInt32LE(12);
  const total = buf.readUInt32LE(16);
  if (total !== n) throw headerErr(`total_file_size says ${total} bytes but the file has ${n}`);
  // 0.4.0 only checks `< N`; an offset inside the fixed header cannot describe a valid file (§2.1), so refuse it too.
  if (vhOffset >= n || vhOffset < fixedSize) throw headerErr(`variable_header_offset ${vhOffset} is outside [${fixedSize}, ${n})`);
  const dataStart = vhOffset + vhSize; // exact: both are < 2^32, the sum fits a double
  if (dataStart >= n) throw headerErr(`the variable headers end at ${dataStart}, leaving no file data before the end (${n})`);

  // §2.10 step 6: checksum.
  const vh = buf.subarray(vhOffset, dataStart);
  const expected = igvmChecksum(buf.subarray(0, fixedSize), vh);
  const stored = buf.readUInt32LE(0x14);
  if (expected !== stored) throw new IgvmError('InvalidChecksum', `header checksum ${hex(stored, 8)} does not match the computed ${hex(expected, 8)}`);

  const readData = (fileOffset: number, length: bigint, what: string): Buffer => {
    const end = BigInt(fileOffset) + length;
    if (fileOffset < dataStart || end > BigInt(n)) {
      throw new IgvmError(
        'InvalidDataSize',
        `${what}: ${length} bytes at file offset ${hex(fileOffset)} are not inside the file data [${hex(dataStart)}, ${hex(n)})`,
      );
    }
    return Buffer.from(buf.subarray(fileOffset, Number(end)));
  };

  const platforms: IgvmPlatform[] = [];
  const initializations: IgvmInitialization[] = [];
  const directives: IgvmDirective[] = [];
  const maskToPlatform = new Map<number, number>();
  const areas = new Map<number, { inserted: boolean }>();
  const relocations: { mask: number; start: bigint; end: bigint }[] = [];
  const pageTableRegions: { mask: number; start: bigint; end: bigint }[] = [];
  const triples: Triple[] = [];

  // §2.10 step 7: walk the variable headers.
  let pos = 0;
  let stage = 0;
  let index = 0;
  while (pos < vh.length) {
    // Built only for an error message: formatting it for every header would dominate parsing large files.
    const where = { index, offset: vhOffset + pos };
    const at = { toString: () => `variable header #${where.index} at file offset ${hex(where.offset)}` };
    if (vh.length - pos < 8)
      throw new IgvmError('InvalidBinaryVariableHeaderSection', `${at}: ${vh.length - pos} trailing bytes cannot hold a type and length`);
    const type = vh.readUInt32LE(pos);
    const length = vh.readUInt32LE(pos + 4);
    const section = sectionOf(type);
    // 0.4.0 ignores the "optional" top bit: such a type is outside every range (§2.3).
    if (section === undefined) throw new IgvmError('InvalidBinaryVariableHeaderSection', `${at}: type ${hex(type)} is in no section's range`);
    if (SECTION_ORDER[section] < stage)
      throw new IgvmError('InvalidBinaryVariableHeaderSection', `${at}: a ${section} header (type ${hex(type)}) after a later section`);
    stage = SECTION_ORDER[section];
    const bodySize = BODY_SIZE.get(type);
    if (bodySize === undefined) throw new IgvmError('InvalidVariableHeaderType', `${at}: unknown ${section} type ${hex(type)}`);
    if (length !== bodySize) throw new IgvmError('InvalidVariableHeaderType', `${at}: type ${hex(type)} has length ${length}, its body is ${bodySize} bytes`);
    const padded = type === VhType.VP_CONTEXT ? bodySize + 4 : bodySize; // padding is skipped unchecked (§2.3)
    if (pos + 8 + padded > vh.length)
      throw new IgvmError('InvalidVariableHeaderSize', `${at}: the ${bodySize}-byte body runs past the variable header section`);
    const b = vh.subarray(pos + 8, pos + 8 + bodySize);
    // The compatibility mask sits at offset 8 in every body that has one (used only by those types below).
    const mask = b.length >= 12 ? b.readUInt32LE(8) : 0;

    switch (type) {
      case VhType.SUPPORTED_PLATFORM: {
        const p: IgvmPlatform = {
          compatibilityMask: b.readUInt32LE(0),
          highestVtl: b[4]!,
          platformType: b[5]!,
          platformVersion: b.readUInt16LE(6),
          sharedGpaBoundary: b.readBigUInt64LE(8),
        };
        const m = p.compatibilityMask;
        if (m === 0 || (m & (m - 1)) !== 0) throw new IgvmError('InvalidCompatibilityMask', `${at}: platform mask ${hex(m)} must have exactly one bit set`);
        if (p.highestVtl !== 0 && p.highestVtl !== 2) throw new IgvmError('InvalidVtl', `${at}: highest_vtl ${p.highestVtl} must be 0 or 2`);
        if (p.platformType > PlatformType.SEV_ES) throw new IgvmError('InvalidPlatformType', `${at}: unknown platform type ${p.platformType}`);
        if (p.platformVersion !== 1) throw new IgvmError('InvalidPlatformVersion', `${at}: platform version ${p.platformVersion} must be 1`);
        if ((p.platformType === PlatformType.NATIVE || p.platformType === PlatformType.VSM_ISOLATION) && p.sharedGpaBoundary !== 0n) {
          throw new IgvmError('InvalidSharedGpaBoundary', `${at}: a native or VSM platform must have shared_gpa_boundary 0`);
        }
        if (architecture === 1 && p.platformType !== PlatformType.VSM_ISOLATION) {
          throw new IgvmError('PlatformArchUnsupported', `${at}: platform type ${p.platformType} is not available on AArch64`);
        }
        maskToPlatform.set(m, p.platformType);
        platforms.push(p);
        break;
      }
      case VhType.GUEST_POLICY: {
        if (b.readUInt32LE(12) !== 0) throw new IgvmError('ReservedNotZero', `${at}: GUEST_POLICY reserved field is not zero`);
        initializations.push({ kind: 'guest_policy', policy: b.readBigUInt64LE(0), compatibilityMask: mask });
        break;
      }
      case VhType.RELOCATABLE_REGION: {
        const r = {
          kind: 'relocatable_region' as const,
          compatibilityMask: b.readUInt32LE(0),
          vpIndex: b.readUInt16LE(4),
          vtl: b[6]!,
          flags: b[7]!,
          relocationAlignment: b.readBigUInt64LE(8),
          regionGpa: b.readBigUInt64LE(16),
          regionSize: b.readBigUInt64LE(24),
          minimumGpa: b.readBigUInt64LE(32),
          maximumGpa: b.readBigUInt64LE(40),
        };
        // A zero alignment makes 0.4.0 divide by zero (§2.6); refuse it as an invalid region.
        if (r.relocationAlignment === 0n) throw new IgvmError('InvalidRelocationRegion', `${at}: relocation_alignment is 0`);
        if (!aligned(r.regionSize) || !aligned(r.relocationAlignment))
          throw new IgvmError('UnalignedSize', `${at}: relocation region size and alignment must be 4 KiB multiples`);
        for (const g of [r.regionGpa, r.minimumGpa, r.maximumGpa]) {
          if (!aligned(g, r.relocationAlignment)) throw new IgvmError('UnalignedAddress', `${at}: ${hex(g)} is not a multiple of the relocation alignment`);
        }
        if (r.vtl > 2) throw new IgvmError('InvalidVtl', `${at}: relocation vtl ${r.vtl} must be 0, 1 or 2`);
        const range = { mask: r.compatibilityMask, start: r.regionGpa, end: r.regionGpa + r.regionSize };
        if (relocations.some((o) => (o.mask & range.mask) !== 0 && o.start < range.end && range.start < o.end)) {
          throw new IgvmError('RelocationRegionsOverlap', `${at}: relocation region ${hex(range.start)}..${hex(range.end)} overlaps another`);
        }
        relocations.push(range);
        triples.push({ mask: r.compatibilityMask, vpIndex: r.vpIndex, vtl: r.vtl });
        initializations.push(r);
        break;
      }
      case VhType.PAGE_TABLE_RELOCATION_REGION: {
        const r = {
          kind: 'page_table_relocation' as const,
          compatibilityMask: b.readUInt32LE(0),
          vpIndex: b.readUInt16LE(4),
          vtl: b[6]!,
          gpa: b.readBigUInt64LE(8),
          size: b.readBigUInt64LE(16),
          usedSize: b.readBigUInt64LE(24),
        };
        if (b[7] !== 0) throw new IgvmError('ReservedNotZero', `${at}: PAGE_TABLE_RELOCATION_REGION reserved byte is not zero`);
        if (!aligned(r.gpa)) throw new IgvmError('UnalignedAddress', `${at}: page table region gpa ${hex(r.gpa)} is not 4 KiB aligned`);
        if (!aligned(r.size) || !aligned(r.usedSize) || r.usedSize > r.size) {
          throw new IgvmError('UnalignedSize', `${at}: page table region size/used_size must be 4 KiB multiples with used_size <= size`);
        }
        if (r.vtl > 2) throw new IgvmError('InvalidVtl', `${at}: page table region vtl ${r.vtl} must be 0, 1 or 2`);
        if (pageTableRegions.some((o) => (o.mask & r.compatibilityMask) !== 0)) {
          throw new IgvmError('MultiplePageTableRelocationHeaders', `${at}: a second page table relocation region for mask ${hex(r.compatibilityMask)}`);
        }
        const range = { mask: r.compatibilityMask, start: r.gpa, end: r.gpa + r.size };
        if (relocations.some((o) => (o.mask & range.mask) !== 0 && o.start < range.end && range.start < o.end)) {
          throw new IgvmError('RelocationRegionsOverlap', `${at}: page table region overlaps a relocation region`);
        }
        pageTableRegions.push(range);
        triples.push({ mask: r.compatibilityMask, vpIndex: r.vpIndex, vtl: r.vtl });
        initializations.push(r);
        break;
      }
      case VhType.PAGE_DATA: {
        const gpa = b.readBigUInt64LE(0);
        const fileOffset = b.readUInt32LE(12);
        const flags = b.readUInt32LE(16);
        const dataType = b.readUInt16LE(20);
        // Order of checks in 0.4.0 (§2.10 step 7): data range, reserved, alignment, data type.
        const data = fileOffset === 0 ? undefined : readData(fileOffset, PAGE, `${at} (PAGE_DATA)`);
        if (b.readUInt16LE(22) !== 0) throw new IgvmError('ReservedNotZero', `${at}: PAGE_DATA reserved field is not zero`);
        if (!aligned(gpa)) throw new IgvmError('UnalignedAddress', `${at}: PAGE_DATA gpa ${hex(gpa)} is not 4 KiB aligned`);
        if (dataType > 3) throw new IgvmError('InvalidPageDataType', `${at}: PAGE_DATA data_type ${dataType} is not NORMAL, SECRETS, CPUID_DATA or CPUID_XF`);
        directives.push({ kind: 'page_data', gpa, compatibilityMask: mask, flags, dataType, ...(data ? { data } : {}) });
        break;
      }
      case VhType.PARAMETER_AREA: {
        const numberOfBytes = b.readBigUInt64LE(0);
        const parameterAreaIndex = b.readUInt32LE(8);
        const fileOffset = b.readUInt32LE(12);
        const initialData = fileOffset === 0 ? undefined : readData(fileOffset, numberOfBytes, `${at} (PARAMETER_AREA)`);
        if (!aligned(numberOfBytes)) throw new IgvmError('UnalignedSize', `${at}: parameter area size ${numberOfBytes} is not a multiple of 4096`);
        if (areas.has(parameterAreaIndex)) throw new IgvmError('InvalidParameterAreaIndex', `${at}: parameter area ${parameterAreaIndex} is declared twice`);
        areas.set(parameterAreaIndex, { inserted: false });
        directives.push({ kind: 'parameter_area', numberOfBytes, parameterAreaIndex, ...(initialData ? { initialData } : {}) });
        break;
      }
      case VhType.PARAMETER_INSERT: {
        const gpa = b.readBigUInt64LE(0);
        const parameterAreaIndex = b.readUInt32LE(12);
        if (!aligned(gpa)) throw new IgvmError('UnalignedAddress', `${at}: PARAMETER_INSERT gpa ${hex(gpa)} is not 4 KiB aligned`);
        const area = areas.get(parameterAreaIndex);
        if (!area || area.inserted) {
          throw new IgvmError('InvalidParameterAreaIndex', `${at}: parameter area ${parameterAreaIndex} is ${area ? 'already inserted' : 'not declared'}`);
        }
        if (pageTableRegions.some((r) => (r.mask & mask) !== 0 && gpa >= r.start && gpa < r.end)) {
          throw new IgvmError('ParameterInsertInsidePageTableRegion', `${at}: PARAMETER_INSERT at ${hex(gpa)} is inside a page table relocation region`);
        }
        area.inserted = true;
        directives.push({ kind: 'parameter_insert', gpa, compatibilityMask: mask, parameterAreaIndex });
        break;
      }
      case VhType.VP_CONTEXT: {
        const gpa = b.readBigUInt64LE(0);
        const fileOffset = b.readUInt32LE(12);
        const vpIndex = b.readUInt16LE(16);
        const reserved = b.readUInt16LE(18);
        const platform = maskToPlatform.get(mask);
        let form: 'snp' | 'native';
        if (platform === PlatformType.SEV_SNP || platform === PlatformType.SEV_ES) form = 'snp';
        else if (platform === PlatformType.NATIVE || platform === PlatformType.SEV) form = 'native';
        else if (platform === PlatformType.VSM_ISOLATION) {
          throw new IgvmError('UnsupportedVpContext', `${at}: VBS (VSM_ISOLATION) VP contexts are not supported by this parser`);
        } else {
          throw new IgvmError(
            'InvalidVpContextPlatformType',
            `${at}: VP_CONTEXT mask ${hex(mask)} is not exactly one SEV-SNP, SEV-ES, SEV or native platform's mask`,
          );
        }
        // 0.4.0 computes file_offset − file_data_start in u32 without a test (§2.8): an offset below the data underflows.
        const data = readData(fileOffset, PAGE, `${at} (VP_CONTEXT)`);
        const used = form === 'snp' ? SEV_VMSA_SIZE : NATIVE_VP_CONTEXT_SIZE;
        if (data.subarray(used).some((x) => x !== 0)) {
          throw new IgvmError(
            form === 'snp' ? 'InvalidVmsa' : 'InvalidContext',
            `${at}: bytes ${hex(used)}..0xFFF of the ${form === 'snp' ? 'VMSA' : 'native VP context'} page must be zero`,
          );
        }
        if (!aligned(gpa)) throw new IgvmError('UnalignedAddress', `${at}: VP_CONTEXT gpa ${hex(gpa)} is not 4 KiB aligned`);
        directives.push({ kind: 'vp_context', form, gpa, compatibilityMask: mask, vpIndex, reserved, data });
        break;
      }
      case VhType.REQUIRED_MEMORY: {
        const gpa = b.readBigUInt64LE(0);
        const numberOfBytes = b.readUInt32LE(12);
        const flags = b.readUInt32LE(16);
        if (b.readUInt32LE(20) !== 0) throw new IgvmError('ReservedNotZero', `${at}: REQUIRED_MEMORY reserved field is not zero`);
        if (!aligned(gpa)) throw new IgvmError('UnalignedAddress', `${at}: REQUIRED_MEMORY gpa ${hex(gpa)} is not 4 KiB aligned`);
        if (numberOfBytes % IGVM_PAGE_SIZE !== 0)
          throw new IgvmError('UnalignedSize', `${at}: REQUIRED_MEMORY size ${numberOfBytes} is not a multiple of 4096`);
        directives.push({ kind: 'required_memory', gpa, compatibilityMask: mask, numberOfBytes, flags });
        break;
      }
      case VhType.SNP_ID_BLOCK:
        // 0.4.0 performs no validation on this directive (§2.9).
        directives.push({ kind: 'snp_id_block', ...decodeSnpIdBlock(Buffer.from(b)) });
        break;
      case VhType.ERROR_RANGE: {
        const gpa = b.readBigUInt64LE(0);
        if (!aligned(gpa)) throw new IgvmError('UnalignedAddress', `${at}: ERROR_RANGE gpa ${hex(gpa)} is not 4 KiB aligned`);
        directives.push({ kind: 'error_range', gpa, compatibilityMask: mask, sizeBytes: b.readUInt32LE(12) });
        break;
      }
      case VhType.VBS_MEASUREMENT:
        directives.push({ kind: 'vbs_measurement', body: Buffer.from(b) });
        break;
      default: {
        if (!PARAMETER_USAGE_TYPES.includes(type)) throw new IgvmError('InvalidVariableHeaderType', `${at}: unknown type ${hex(type)}`);
        const parameterAreaIndex = b.readUInt32LE(0);
        const area = areas.get(parameterAreaIndex);
        if (!area || area.inserted) {
          throw new IgvmError('InvalidParameterAreaIndex', `${at}: parameter area ${parameterAreaIndex} is ${area ? 'already inserted' : 'not declared'}`);
        }
        directives.push({ kind: 'parameter_usage', type, parameterAreaIndex, byteOffset: b.readUInt32LE(4) });
      }
    }
    pos += 8 + padded;
    index++;
  }

  // §2.10 step 8: whole-file checks.
  if (platforms.length === 0) throw new IgvmError('NoPlatformHeaders', 'the file has no SUPPORTED_PLATFORM header');
  const seen = new Set<number>();
  for (const p of platforms) {
    if (seen.has(p.platformType))
      throw new IgvmError('MultiplePlatformHeadersWithSameIsolation', `two SUPPORTED_PLATFORM headers for platform type ${p.platformType}`);
    seen.add(p.platformType);
  }
  // Only VBS VP contexts (not supported here) match a relocation triple in 0.4.0 (§2.6).
  if (triples.length > 0) {
    const t = triples[0]!;
    throw new IgvmError('NoMatchingVpContext', `relocation header for mask ${hex(t.mask)} vp ${t.vpIndex} vtl ${t.vtl} has no matching VBS VP context`);
  }
  return { formatVersion: version as 1 | 2, ...(architecture !== undefined ? { architecture } : {}), platforms, initializations, directives };
}
