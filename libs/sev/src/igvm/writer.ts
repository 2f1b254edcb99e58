/**
 * The IGVM writer: igvm 0.4.0's `IgvmFile::serialize` (../shared/specs/igvm.md §2.12), which `igvmmeasure sign`
 * uses, so a signed file is byte-identical to igvmmeasure's. Headers are written platform → initialization →
 * directive; file data follows the variable headers in first-reference order, identical blocks stored once.
 * Unlike 0.4.0 (a `todo!()` panic), ERROR_RANGE directives are written too.
 */
import { SevError } from '../errors';
import { igvmChecksum } from './checksum';
import {
  FIXED_HEADER_V1_SIZE,
  FIXED_HEADER_V2_SIZE,
  IGVM_MAGIC,
  IGVM_PAGE_SIZE,
  VhType,
  type IgvmDirective,
  type IgvmFile,
  type IgvmInitialization,
  type IgvmPlatform,
} from './layout';
import { encodeSnpIdBlock } from './structures';

const MAX_U32 = 0xffff_ffff;

/** File data placed in order of first reference; an identical block reuses the first one's offset. */
class FileData {
  private readonly blocks: Buffer[] = [];
  private readonly offsets = new Map<string, number>();
  private size = 0;

  /** Returns the block's offset relative to the start of the file data section. */
  add(data: Buffer): number {
    const key = data.toString('base64');
    const known = this.offsets.get(key);
    if (known !== undefined) return known;
    const off = this.size;
    this.blocks.push(data);
    this.offsets.set(key, off);
    this.size += data.length;
    return off;
  }

  get bytes(): Buffer {
    return Buffer.concat(this.blocks);
  }
}

interface PendingHeader {
  type: number;
  body: Buffer;
  /** relative data offset to patch in at `at` once the data section's position is known */
  data?: { rel: number; at: number };
}

function u64(v: bigint, what: string): bigint {
  if (v < 0n || v > 0xffff_ffff_ffff_ffffn) throw new SevError('ERR_SEV_RANGE', `${what} ${v} is not a u64`);
  return v;
}

function platformBody(p: IgvmPlatform): Buffer {
  const b = Buffer.alloc(16);
  b.writeUInt32LE(p.compatibilityMask >>> 0, 0);
  b[4] = p.highestVtl;
  b[5] = p.platformType;
  b.writeUInt16LE(p.platformVersion, 6);
  b.writeBigUInt64LE(u64(p.sharedGpaBoundary, 'shared_gpa_boundary'), 8);
  return b;
}

function initializationBody(i: IgvmInitialization): PendingHeader {
  switch (i.kind) {
    case 'guest_policy': {
      const b = Buffer.alloc(16);
      b.writeBigUInt64LE(u64(i.policy, 'policy'), 0);
      b.writeUInt32LE(i.compatibilityMask >>> 0, 8);
      return { type: VhType.GUEST_POLICY, body: b };
    }
    case 'relocatable_region': {
      const b = Buffer.alloc(48);
      b.writeUInt32LE(i.compatibilityMask >>> 0, 0);
      b.writeUInt16LE(i.vpIndex, 4);
      b[6] = i.vtl;
      b[7] = i.flags;
      [i.relocationAlignment, i.regionGpa, i.regionSize, i.minimumGpa, i.maximumGpa].forEach((v, k) =>
        b.writeBigUInt64LE(u64(v, 'relocation field'), 8 + 8 * k),
      );
      return { type: VhType.RELOCATABLE_REGION, body: b };
    }
    case 'page_table_relocation': {
      const b = Buffer.alloc(32);
      b.writeUInt32LE(i.compatibilityMask >>> 0, 0);
      b.writeUInt16LE(i.vpIndex, 4);
      b[6] = i.vtl;
      [i.gpa, i.size, i.usedSize].forEach((v, k) => b.writeBigUInt64LE(u64(v, 'page table region field'), 8 + 8 * k));
      return { type: VhType.PAGE_TABLE_RELOCATION_REGION, body: b };
    }
  }
}

function padTo(data: Buffer, size: number, what: string): Buffer {
  if (data.length > size) throw new SevError('ERR_SEV_LENGTH', `${what} is ${data.length} bytes, more than its ${size}-byte area`);
  return data.length === size ? data : Buffer.concat([data, Buffer.alloc(size - data.length)]);
}

function directiveBody(d: IgvmDirective, fd: FileData): PendingHeader {
  switch (d.kind) {
    case 'page_data': {
      const b = Buffer.alloc(24);
      b.writeBigUInt64LE(u64(d.gpa, 'gpa'), 0);
      b.writeUInt32LE(d.compatibilityMask >>> 0, 8);
      b.writeUInt32LE(d.flags >>> 0, 16);
      b.writeUInt16LE(d.dataType, 20);
      const h: PendingHeader = { type: VhType.PAGE_DATA, body: b };
      if (d.data !== undefined) h.data = { rel: fd.add(padTo(d.data, IGVM_PAGE_SIZE, 'PAGE_DATA data')), at: 12 };
      return h;
    }
    case 'parameter_area': {
      const b = Buffer.alloc(16);
      b.writeBigUInt64LE(u64(d.numberOfBytes, 'number_of_bytes'), 0);
      b.writeUInt32LE(d.parameterAreaIndex >>> 0, 8);
      const h: PendingHeader = { type: VhType.PARAMETER_AREA, body: b };
      if (d.initialData !== undefined) {
        if (d.numberOfBytes > BigInt(MAX_U32)) throw new SevError('ERR_SEV_RANGE', 'a parameter area with initial data must be smaller than 4 GiB');
        h.data = { rel: fd.add(padTo(d.initialData, Number(d.numberOfBytes), 'parameter area data')), at: 12 };
      }
      return h;
    }
    case 'parameter_usage': {
      const b = Buffer.alloc(8);
      b.writeUInt32LE(d.parameterAreaIndex >>> 0, 0);
      b.writeUInt32LE(d.byteOffset >>> 0, 4);
      return { type: d.type, body: b };
    }
    case 'parameter_insert': {
      const b = Buffer.alloc(16);
      b.writeBigUInt64LE(u64(d.gpa, 'gpa'), 0);
      b.writeUInt32LE(d.compatibilityMask >>> 0, 8);
      b.writeUInt32LE(d.parameterAreaIndex >>> 0, 12);
      return { type: VhType.PARAMETER_INSERT, body: b };
    }
    case 'vp_context': {
      // 20-byte body + 4 zero padding bytes (§2.3); the context page is 4096 bytes (the VMSA plus zeros).
      const b = Buffer.alloc(24);
      b.writeBigUInt64LE(u64(d.gpa, 'gpa'), 0);
      b.writeUInt32LE(d.compatibilityMask >>> 0, 8);
      b.writeUInt16LE(d.vpIndex, 16);
      b.writeUInt16LE(d.reserved, 18);
      return { type: VhType.VP_CONTEXT, body: b, data: { rel: fd.add(padTo(d.data, IGVM_PAGE_SIZE, 'VP context')), at: 12 } };
    }
    case 'required_memory': {
      const b = Buffer.alloc(24);
      b.writeBigUInt64LE(u64(d.gpa, 'gpa'), 0);
      b.writeUInt32LE(d.compatibilityMask >>> 0, 8);
      b.writeUInt32LE(d.numberOfBytes >>> 0, 12);
      b.writeUInt32LE(d.flags >>> 0, 16);
      return { type: VhType.REQUIRED_MEMORY, body: b };
    }
    case 'snp_id_block':
      return { type: VhType.SNP_ID_BLOCK, body: encodeSnpIdBlock(d) };
    case 'error_range': {
      const b = Buffer.alloc(16);
      b.writeBigUInt64LE(u64(d.gpa, 'gpa'), 0);
      b.writeUInt32LE(d.compatibilityMask >>> 0, 8);
      b.writeUInt32LE(d.sizeBytes >>> 0, 12);
      return { type: VhType.ERROR_RANGE, body: b };
    }
    case 'vbs_measurement':
      return { type: VhType.VBS_MEASUREMENT, body: padTo(d.body, 864, 'VBS_MEASUREMENT') };
  }
}

/** Serializes a model into IGVM bytes (checksum included). */
export function writeIgvm(file: IgvmFile): Buffer {
  const fd = new FileData();
  const headers: PendingHeader[] = [
    ...file.platforms.map((p) => ({ type: VhType.SUPPORTED_PLATFORM, body: platformBody(p) })),
    ...file.initializations.map(initializationBody),
    ...file.directives.map((d) => directiveBody(d, fd)),
  ];
  const fixedSize = file.formatVersion === 2 ? FIXED_HEADER_V2_SIZE : FIXED_HEADER_V1_SIZE;
  // Every body is a multiple of 8 except VP_CONTEXT's, whose padding is already in its 24-byte buffer.
  const vhSize = headers.reduce((s, h) => s + 8 + h.body.length, 0);
  const dataStart = fixedSize + vhSize;
  const data = fd.bytes;
  // A file without a byte of file data is invalid (§2.10 step 5); 0.4.0 would write one anyway.
  if (data.length === 0) throw new SevError('ERR_SEV_ARGUMENT', 'an IGVM file needs at least one page, VP context or parameter area with data');
  const total = dataStart + data.length;
  if (total > MAX_U32) throw new SevError('ERR_SEV_RANGE', `an IGVM file cannot exceed 4 GiB (this one would be ${total} bytes)`);
  const out = Buffer.alloc(total);
  let pos = fixedSize;
  for (const h of headers) {
    out.writeUInt32LE(h.type, pos);
    // VP_CONTEXT's length field counts its 20-byte body, not the padding.
    out.writeUInt32LE(h.type === VhType.VP_CONTEXT ? 20 : h.body.length, pos + 4);
    out.set(h.body, pos + 8);
    if (h.data) out.writeUInt32LE(dataStart + h.data.rel, pos + 8 + h.data.at);
    pos += 8 + h.body.length;
  }
  data.copy(out, dataStart);
  out.writeUInt32LE(IGVM_MAGIC, 0);
  out.writeUInt32LE(file.formatVersion === 2 ? 2 : 1, 4);
  out.writeUInt32LE(fixedSize, 8);
  out.writeUInt32LE(vhSize, 12);
  out.writeUInt32LE(total, 16);
  if (file.formatVersion === 2) {
    out.writeUInt32LE(file.architecture ?? 0, 0x18);
    out.writeUInt32LE(IGVM_PAGE_SIZE, 0x1c);
  }
  out.writeUInt32LE(igvmChecksum(out.subarray(0, fixedSize), out.subarray(fixedSize, dataStart)), 0x14);
  return out;
}
