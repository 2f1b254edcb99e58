import { createHash } from 'node:crypto';
import { guidToBytesLe, OVMF_TABLE_FOOTER_GUID, SEV_ES_RESET_BLOCK_GUID, SEV_HASH_TABLE_RV_GUID, SEV_SECRET_GUID, type GpaArea } from '@kb/sev';

export interface SyntheticOvmfOptions {
  /** Image size in bytes, a multiple of 4096 (LAUNCH_UPDATE_DATA needs 16-byte multiples). Default 256 KiB. */
  size?: number;
  /** Seeds the image body, so differently labelled images measure differently ("the wrong firmware"). */
  label?: string;
  /** SEV_HASH_TABLE_RV area; null leaves the entry out (a firmware that cannot measure -kernel boots). */
  hashTable?: GpaArea | null;
  /** SEV_ES_RESET_BLOCK AP reset address; null leaves the entry out (no SEV-ES). */
  resetEip?: number | null;
  /** SEV_SECRET area the guest's efi_secret driver reads; null leaves the entry out. */
  secretArea?: GpaArea | null;
}

/** The values of OVMF's AmdSev build (sev-snp-measure fixture ovmf_AmdSev_suffix.bin), so GPAs look familiar. */
export const SYNTHETIC_OVMF_DEFAULTS = {
  hashTable: { base: 0x810c00, size: 0x400 },
  resetEip: 0x80b004,
  secretArea: { base: 0x80d000, size: 0x1000 },
} as const;

const TABLE_END_FROM_IMAGE_END = 0x20;

function entry(guid: string, data: Buffer): Buffer {
  const len = Buffer.alloc(2);
  len.writeUInt16LE(data.length + 18);
  return Buffer.concat([data, len, guidToBytesLe(guid)]);
}

function area(a: GpaArea): Buffer {
  const b = Buffer.alloc(8);
  b.writeUInt32LE(a.base, 0);
  b.writeUInt32LE(a.size, 4);
  return b;
}

/**
 * A firmware image that is not OVMF but carries OVMF's GUIDed footer table (EDK2 ResetVectorVtf0.asm layout), so
 * the digest calculator, QEMU's table lookups (hashes area, SEV-ES reset block, secret area) and the simulated host
 * all find what they need. Real OVMF images are not redistributable test fixtures and a fresh clone has none.
 */
export function syntheticOvmf(opts: SyntheticOvmfOptions = {}): Buffer {
  const size = opts.size ?? 256 * 1024;
  if (!Number.isSafeInteger(size) || size < 8192 || size % 4096 !== 0) {
    throw new RangeError(`synthetic firmware size must be a multiple of 4096 of at least 8192 bytes, got ${size}`);
  }
  const fw = Buffer.alloc(size);
  const seed = createHash('sha256')
    .update(`synthetic-ovmf:${opts.label ?? 'default'}`)
    .digest();
  for (let off = 0, i = 0; off < size; off += 32, i++) {
    createHash('sha256').update(seed).update(String(i)).digest().copy(fw, off);
  }
  const hashTable = opts.hashTable === undefined ? SYNTHETIC_OVMF_DEFAULTS.hashTable : opts.hashTable;
  const resetEip = opts.resetEip === undefined ? SYNTHETIC_OVMF_DEFAULTS.resetEip : opts.resetEip;
  const secretArea = opts.secretArea === undefined ? SYNTHETIC_OVMF_DEFAULTS.secretArea : opts.secretArea;
  const entries: Buffer[] = [];
  if (secretArea) entries.push(entry(SEV_SECRET_GUID, area(secretArea)));
  if (hashTable) entries.push(entry(SEV_HASH_TABLE_RV_GUID, area(hashTable)));
  if (resetEip !== null) {
    const eip = Buffer.alloc(4);
    eip.writeUInt32LE(resetEip >>> 0);
    entries.push(entry(SEV_ES_RESET_BLOCK_GUID, eip));
  }
  const body = Buffer.concat(entries);
  const total = Buffer.alloc(2);
  total.writeUInt16LE(body.length + 18);
  const table = Buffer.concat([body, total, guidToBytesLe(OVMF_TABLE_FOOTER_GUID)]);
  table.copy(fw, size - TABLE_END_FROM_IMAGE_END - table.length);
  return fw;
}
