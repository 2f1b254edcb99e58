/**
 * OVMF GUIDed footer table and SEV metadata ("ASEV"): the firmware structures a launch-digest calculation reads.
 * EDK2 `OvmfPkg/ResetVector/Ia16/ResetVectorVtf0.asm` and `X64/OvmfSevMetadata.asm`; sev-snp-measure `ovmf.py`;
 * sev crate `measurement/ovmf.rs`. Byte layout: ../shared/specs/launch-digest.md §1.2 and §1.3.
 *
 * A firmware without the footer GUID parses as an empty table with `present: false`, as sev-snp-measure does, so a
 * plain SEV digest (which needs nothing from the table) still works for very old or non-OVMF images. Every accessor
 * that then needs an entry fails with ERR_SEV_FIRMWARE and says that the whole table is missing, so the user is not
 * sent looking for one GUID in an image that has none.
 */
import { SevError } from '../errors';
import { guidFromBytesLe, guidToBytesLe } from '../guid';
import { asBuffer } from '../util/bytes';

export const OVMF_TABLE_FOOTER_GUID = '96b582de-1fb2-45f7-baea-a366c55a082d';
export const SEV_HASH_TABLE_RV_GUID = '7255371f-3a3b-4b04-927b-1da6efa8d454';
/** Also called SEV_INFO_BLOCK (QEMU). */
export const SEV_ES_RESET_BLOCK_GUID = '00f771de-1a7e-4fcb-890e-68c77e2fb44e';
export const OVMF_SEV_METADATA_GUID = 'dc886566-984a-4798-a75e-5585a7bf67cc';
export const SEV_SECRET_GUID = '4c2eb361-7d9b-4cc3-8081-127c90d3d294';
/** In a Coconut-SVSM image's table: u32 offset of the SVSM entry point from the image start (§4.6). */
export const SVSM_INFO_GUID = 'a789a612-0597-4c4b-a49f-cbb1fe9d1ddd';

/** The table ends this many bytes before the end of the image (reset vector, VTF signature, AP jump). */
const TABLE_END_FROM_IMAGE_END = 0x20;
/** Every entry, the footer included, ends with `u16 length ‖ GUID[16]`. */
const ENTRY_HEADER_SIZE = 18;
/** The smallest PaddedSevHashTable QEMU accepts in the SEV_HASH_TABLE_RV area (sizeof(PaddedSevHashTable)). */
const MIN_SEV_HASH_AREA_SIZE = 176;

export interface OvmfTableEntry {
  readonly guid: string;
  /** The entry data, without its trailing length and GUID. */
  readonly data: Buffer;
}

export interface OvmfFooterTable {
  /** false when the image does not end with the footer GUID: no entry can be looked up. */
  readonly present: boolean;
  /** Entries in file order (front to back). */
  readonly entries: readonly OvmfTableEntry[];
}

export interface GpaArea {
  readonly base: number;
  readonly size: number;
}

/** OVMF SEV metadata section types (`OvmfSevMetadata.asm`). */
export const SectionType = {
  SNP_SEC_MEM: 1,
  SNP_SECRETS: 2,
  CPUID: 3,
  SVSM_CAA: 4,
  SNP_KERNEL_HASHES: 0x10,
} as const;
export type SectionType = (typeof SectionType)[keyof typeof SectionType];

export interface OvmfSevMetadataSection {
  readonly gpa: number;
  readonly size: number;
  readonly type: SectionType;
}

/** ASEV header, then `num_items` section descriptors (§1.3). */
const SEV_METADATA = { SIGNATURE: 0, LENGTH: 4, VERSION: 8, NUM_ITEMS: 12, HEADER_SIZE: 16 } as const;
const SEV_METADATA_DESC = { GPA: 0, SIZE: 4, TYPE: 8, SIZEOF: 12 } as const;
const SEV_METADATA_SIGNATURE = Buffer.from('ASEV', 'latin1');
const SECTION_TYPES = new Set<number>(Object.values(SectionType));

function firmwareError(message: string): SevError {
  return new SevError('ERR_SEV_FIRMWARE', message);
}

export function parseOvmfFooterTable(firmware: Uint8Array): OvmfFooterTable {
  const fw = asBuffer(firmware);
  const n = fw.length;
  const footerEnd = n - TABLE_END_FROM_IMAGE_END;
  const footerStart = footerEnd - ENTRY_HEADER_SIZE;
  if (footerStart < 0 || !fw.subarray(footerEnd - 16, footerEnd).equals(guidToBytesLe(OVMF_TABLE_FOOTER_GUID))) {
    return { present: false, entries: [] };
  }
  const total = fw.readUInt16LE(footerStart);
  if (total < ENTRY_HEADER_SIZE) {
    throw firmwareError(`malformed OVMF footer table: total length ${total} is shorter than its own 18-byte footer`);
  }
  const tableStart = footerEnd - total;
  if (tableStart < 0) {
    throw firmwareError(`malformed OVMF footer table: total length ${total} exceeds the ${n}-byte image`);
  }
  const reversedEntries: OvmfTableEntry[] = [];
  const seen = new Set<string>();
  let end = footerStart;
  // Fewer than 18 leftover bytes cannot hold an entry; sev-snp-measure and the sev crate ignore them too.
  while (end - tableStart >= ENTRY_HEADER_SIZE) {
    const guid = guidFromBytesLe(fw.subarray(end - 16, end));
    const len = fw.readUInt16LE(end - ENTRY_HEADER_SIZE);
    if (len < ENTRY_HEADER_SIZE) {
      throw firmwareError(`malformed OVMF footer table: entry ${guid} has length ${len}, less than its 18-byte header`);
    }
    if (len > end - tableStart) {
      throw firmwareError(`malformed OVMF footer table: entry ${guid} has length ${len} but only ${end - tableStart} table bytes remain`);
    }
    // Tools disagree on which duplicate wins (QEMU: the last in the image, sev-snp-measure: the first), so a
    // duplicated GUID would make the digest depend on the tool: refuse it.
    if (seen.has(guid)) throw firmwareError(`malformed OVMF footer table: entry ${guid} appears more than once`);
    seen.add(guid);
    reversedEntries.push({ guid, data: Buffer.from(fw.subarray(end - len, end - ENTRY_HEADER_SIZE)) });
    end -= len;
  }
  return { present: true, entries: reversedEntries.reverse() };
}

export function ovmfTableEntry(table: OvmfFooterTable, guid: string): Buffer | undefined {
  const wanted = guid.toLowerCase();
  return table.entries.find((e) => e.guid === wanted)?.data;
}

/** `consequence` says what cannot be done, so the message tells the user why the entry was wanted. */
function requireEntry(table: OvmfFooterTable, guid: string, name: string, minData: number, consequence: string): Buffer {
  const data = table.present ? ovmfTableEntry(table, guid) : undefined;
  if (data === undefined) {
    const reason = table.present
      ? `no ${name} entry (GUID ${guid}) in its OVMF table`
      : `no OVMF footer table (GUID ${OVMF_TABLE_FOOTER_GUID}), so no ${name} entry`;
    throw firmwareError(`firmware has ${reason}: ${consequence}`);
  }
  if (data.length < minData) {
    throw firmwareError(`malformed OVMF table entry ${name}: ${data.length} data bytes, at least ${minData} needed`);
  }
  return data;
}

/**
 * The AP reset address from SEV_ES_RESET_BLOCK: bits 31:16 become CS.base, bits 15:0 RIP. Read as a full u32
 * (sevctl reads only 3 bytes, which agrees for every real OVMF but is not what the layout says).
 */
export function sevEsResetEip(table: OvmfFooterTable): number {
  const consequence = 'cannot compute SEV-ES VMSAs';
  const data = requireEntry(table, SEV_ES_RESET_BLOCK_GUID, 'SEV-ES reset block', 4, consequence);
  const eip = data.readUInt32LE(0);
  // QEMU refuses a zero reset address, so no SEV-ES guest can be launched from such an image.
  if (eip === 0) throw firmwareError(`firmware SEV-ES reset block holds address 0: ${consequence}`);
  return eip;
}

/** Whether the firmware can measure `-kernel` boots: SEV_HASH_TABLE_RV present with a usable area. */
export function supportsKernelHashes(table: OvmfFooterTable): boolean {
  const data = table.present ? ovmfTableEntry(table, SEV_HASH_TABLE_RV_GUID) : undefined;
  if (data === undefined || data.length < 8) return false;
  return data.readUInt32LE(0) !== 0 && data.readUInt32LE(4) >= MIN_SEV_HASH_AREA_SIZE;
}

/** GPA and size of the area QEMU writes the PaddedSevHashTable into. */
export function sevHashTableArea(table: OvmfFooterTable): GpaArea {
  const consequence = 'it does not support kernel hashes (kernel/initrd/cmdline measurement)';
  const data = requireEntry(table, SEV_HASH_TABLE_RV_GUID, 'SEV_HASH_TABLE_RV', 8, consequence);
  const area = { base: data.readUInt32LE(0), size: data.readUInt32LE(4) };
  // The same conditions QEMU checks before it writes the table (`sev_add_kernel_loader_hashes`).
  if (area.base === 0) throw firmwareError(`firmware SEV_HASH_TABLE_RV base is 0: ${consequence}`);
  if (area.size < MIN_SEV_HASH_AREA_SIZE) {
    throw firmwareError(`firmware SEV_HASH_TABLE_RV area is ${area.size} bytes, smaller than the 176-byte table: ${consequence}`);
  }
  return area;
}

/**
 * The entry point of a Coconut-SVSM image loaded at `imageGpa` (SVSM_INFO entry offset + load address; coconut QEMU
 * `sev.c`, sev-snp-measure `SVSM.sev_es_reset_eip`). The full value becomes the SVSM VMSA's RIP (§4.6).
 */
export function svsmEntryPoint(table: OvmfFooterTable, imageGpa: number): number {
  const data = requireEntry(table, SVSM_INFO_GUID, 'SVSM_INFO', 4, 'it is not a Coconut-SVSM image (no entry point)');
  return imageGpa + data.readUInt32LE(0);
}

/** Names of the SEV metadata section types, for messages and step listings. */
export function sectionTypeName(type: SectionType): string {
  const name = Object.entries(SectionType).find(([, v]) => v === type)?.[0];
  return name ?? `type 0x${Number(type).toString(16)}`;
}

/** The default launch-secret area (SEV_SECRET entry). A base of 0 means the firmware reserves none. */
export function sevSecretArea(table: OvmfFooterTable): GpaArea {
  const data = requireEntry(table, SEV_SECRET_GUID, 'SEV_SECRET', 8, 'cannot locate the launch-secret area');
  return { base: data.readUInt32LE(0), size: data.readUInt32LE(4) };
}

/**
 * The SEV metadata sections in file order (SNP measures them in that order, so they must not be sorted). An image
 * without the OVMF_SEV_METADATA entry has no sections.
 */
export function parseOvmfSevMetadata(firmware: Uint8Array, table: OvmfFooterTable): OvmfSevMetadataSection[] {
  const entry = table.present ? ovmfTableEntry(table, OVMF_SEV_METADATA_GUID) : undefined;
  if (entry === undefined) return [];
  if (entry.length < 4) throw firmwareError(`malformed OVMF table entry OVMF_SEV_METADATA: ${entry.length} data bytes`);
  const fw = asBuffer(firmware);
  const offsetFromEnd = entry.readUInt32LE(0);
  const start = fw.length - offsetFromEnd;
  if (offsetFromEnd > fw.length || start + SEV_METADATA.HEADER_SIZE > fw.length) {
    throw firmwareError(`SEV metadata offset ${offsetFromEnd} from the end does not fit the ${fw.length}-byte image`);
  }
  const header = fw.subarray(start, start + SEV_METADATA.HEADER_SIZE);
  const signature = header.subarray(SEV_METADATA.SIGNATURE, SEV_METADATA.SIGNATURE + 4);
  if (!signature.equals(SEV_METADATA_SIGNATURE)) {
    throw firmwareError(`wrong SEV metadata signature ${signature.toString('hex')} (expected "ASEV")`);
  }
  const length = header.readUInt32LE(SEV_METADATA.LENGTH);
  const version = header.readUInt32LE(SEV_METADATA.VERSION);
  const count = header.readUInt32LE(SEV_METADATA.NUM_ITEMS);
  if (version !== 1) throw firmwareError(`unsupported SEV metadata version ${version} (expected 1)`);
  const needed = SEV_METADATA.HEADER_SIZE + count * SEV_METADATA_DESC.SIZEOF;
  if (length < needed || start + length > fw.length) {
    throw firmwareError(`malformed SEV metadata: length ${length} cannot hold ${count} sections inside the ${fw.length}-byte image`);
  }
  const sections: OvmfSevMetadataSection[] = [];
  for (let i = 0; i < count; i++) {
    const o = start + SEV_METADATA.HEADER_SIZE + i * SEV_METADATA_DESC.SIZEOF;
    const type = fw.readUInt32LE(o + SEV_METADATA_DESC.TYPE);
    if (!SECTION_TYPES.has(type)) {
      throw firmwareError(`SEV metadata section ${i} has unknown type 0x${type.toString(16)}`);
    }
    const gpa = fw.readUInt32LE(o + SEV_METADATA_DESC.GPA);
    sections.push({ gpa, size: fw.readUInt32LE(o + SEV_METADATA_DESC.SIZE), type: type as SectionType });
  }
  return sections;
}
