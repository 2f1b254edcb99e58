/**
 * The kernel / initrd / cmdline hashes table QEMU writes into the firmware's SEV_HASH_TABLE_RV area and measures when
 * a guest boots with `-kernel` and `kernel-hashes=on`. QEMU `target/i386/sev.c` (`PaddedSevHashTable`),
 * sev-snp-measure `sev_hashes.py`, sev crate `measurement/sev_hashes.rs`.
 * Layout: ../shared/specs/launch-digest.md §1.4.
 */
import { createHash } from 'node:crypto';
import { SevError } from '../errors';
import { guidToBytesLe } from '../guid';
import { expectLength } from '../util/bytes';

export const SEV_HASH_TABLE_HEADER_GUID = '9438d606-4f22-4cc9-b479-a793d411fd21';
export const SEV_CMDLINE_ENTRY_GUID = '97d02dd8-bd20-4c94-aa78-e7714d36ab2a';
export const SEV_INITRD_ENTRY_GUID = '44baf731-3a2f-4bd7-9af1-41e29169781d';
export const SEV_KERNEL_ENTRY_GUID = '4de79437-abd2-427f-b835-d5b172d2045b';

/** sizeof(SevHashTable): the value of its `len` field, which excludes the padding. */
export const SEV_HASH_TABLE_SIZE = 168;
/** sizeof(PaddedSevHashTable): what is written and measured, rounded up to 16 bytes. */
export const PADDED_SEV_HASH_TABLE_SIZE = 176;

/** Offsets in the packed `SevHashTable`; entries are cmdline, initrd, kernel, in that order. */
export const SEV_HASH_TABLE = { GUID: 0x00, LEN: 0x10, CMDLINE: 0x12, INITRD: 0x44, KERNEL: 0x76 } as const;
/** `SevHashTableEntry`: GUID, u16 len (= 50), SHA-256. */
export const SEV_HASH_TABLE_ENTRY = { GUID: 0x00, LEN: 0x10, HASH: 0x12, SIZE: 50 } as const;

/**
 * A file the table measures: its bytes, or its SHA-256 when the caller has hashed a large file while streaming it.
 * The table always uses SHA-256, whatever the launch mode.
 */
export type MeasuredFile = Uint8Array | { sha256: Uint8Array };

export interface KernelHashesInput {
  kernel: MeasuredFile;
  /** Absent: QEMU hashes an empty initrd. */
  initrd?: MeasuredFile;
  /**
   * The `-append` string (UTF-8) or its bytes, without a terminator. Absent or empty: the single byte 0x00. Or the
   * SHA-256 QEMU computed (of the bytes plus the NUL), as a guest owner registers it with the attestation service.
   */
  cmdline?: string | Uint8Array | { sha256: Uint8Array };
}

function measuredFileHash(what: string, file: MeasuredFile): Buffer {
  if (ArrayBuffer.isView(file)) return createHash('sha256').update(file).digest();
  if (typeof file !== 'object' || file === null || !ArrayBuffer.isView(file.sha256)) {
    throw new SevError('ERR_SEV_ARGUMENT', `${what} must be given as bytes or as { sha256 }`);
  }
  expectLength(`${what} SHA-256`, file.sha256, 32);
  return Buffer.from(file.sha256);
}

/** QEMU hashes the command line as the C string it holds: the bytes plus one terminating NUL. */
export function cmdlineHash(cmdline: string | Uint8Array = ''): Buffer {
  const bytes = typeof cmdline === 'string' ? Buffer.from(cmdline, 'utf8') : Buffer.from(cmdline);
  // A NUL inside would end QEMU's string early, so the table would not measure what the caller asked for.
  if (bytes.includes(0)) throw new SevError('ERR_SEV_ARGUMENT', 'the kernel command line must not contain NUL bytes');
  return createHash('sha256').update(bytes).update(Buffer.of(0)).digest();
}

function isHashed(v: KernelHashesInput['cmdline']): v is { sha256: Uint8Array } {
  return typeof v === 'object' && v !== null && !ArrayBuffer.isView(v);
}

export function buildPaddedSevHashTable(input: KernelHashesInput): Buffer {
  const table = Buffer.alloc(PADDED_SEV_HASH_TABLE_SIZE);
  guidToBytesLe(SEV_HASH_TABLE_HEADER_GUID).copy(table, SEV_HASH_TABLE.GUID);
  table.writeUInt16LE(SEV_HASH_TABLE_SIZE, SEV_HASH_TABLE.LEN);
  const entries: [number, string, Buffer][] = [
    [SEV_HASH_TABLE.CMDLINE, SEV_CMDLINE_ENTRY_GUID, isHashed(input.cmdline) ? measuredFileHash('cmdline', input.cmdline) : cmdlineHash(input.cmdline)],
    [SEV_HASH_TABLE.INITRD, SEV_INITRD_ENTRY_GUID, measuredFileHash('initrd', input.initrd ?? new Uint8Array(0))],
    [SEV_HASH_TABLE.KERNEL, SEV_KERNEL_ENTRY_GUID, measuredFileHash('kernel', input.kernel)],
  ];
  for (const [offset, guid, hash] of entries) {
    guidToBytesLe(guid).copy(table, offset + SEV_HASH_TABLE_ENTRY.GUID);
    table.writeUInt16LE(SEV_HASH_TABLE_ENTRY.SIZE, offset + SEV_HASH_TABLE_ENTRY.LEN);
    hash.copy(table, offset + SEV_HASH_TABLE_ENTRY.HASH);
  }
  return table;
}

/**
 * The page QEMU measures for an SNP guest's SNP_KERNEL_HASHES metadata section when it boots with `-kernel`: 4096
 * zero bytes with the PaddedSevHashTable at the page offset of the SEV_HASH_TABLE_RV base (0xC00 in edk2 builds).
 * ../shared/specs/launch-digest.md §4.2; sev-snp-measure `SevHashes.construct_page`.
 */
export const SNP_KERNEL_HASHES_PAGE_SIZE = 4096;

export function buildSnpKernelHashesPage(input: KernelHashesInput, offsetInPage: number): Buffer {
  if (!Number.isInteger(offsetInPage) || offsetInPage < 0 || offsetInPage + PADDED_SEV_HASH_TABLE_SIZE > SNP_KERNEL_HASHES_PAGE_SIZE) {
    throw new SevError(
      'ERR_SEV_FIRMWARE',
      `the ${PADDED_SEV_HASH_TABLE_SIZE}-byte kernel hashes table does not fit its page at offset 0x${offsetInPage.toString(16)}`,
    );
  }
  const page = Buffer.alloc(SNP_KERNEL_HASHES_PAGE_SIZE);
  buildPaddedSevHashTable(input).copy(page, offsetInPage);
  return page;
}
