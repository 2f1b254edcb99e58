import { SevError } from '../errors';
import { guidFromBytesLe, guidToBytesLe } from '../guid';
import { u32le } from '../util/bytes';

/**
 * The OVMF secret table that LAUNCH_SECRET writes into the guest's secret page (simple-kbs `payload_table`, sevctl
 * `build_table`, read by the Linux efi_secret driver):
 *   header GUID (LE) ‖ u32 total length ‖ entries, each GUID (LE) ‖ u32 (20 + data length) ‖ data,
 *   then zero padding to a multiple of 16 that the total length does not count.
 */
export const SECRET_TABLE_GUID = '1e74f542-71dd-4d66-963e-ef4287ff173b';
/** OVMF reserves one 4 KiB page for the injected secret. */
export const SECRET_TABLE_MAX_SIZE = 4096;

const HEADER_SIZE = 20; // GUID 16 + u32 length, for the table and for every entry
const ALIGN = 16;
const NIL_GUID = '00000000-0000-0000-0000-000000000000';
const TABLE_GUID_LE = guidToBytesLe(SECRET_TABLE_GUID);

export interface SecretTableEntry {
  guid: string;
  data: Buffer;
}

function paddedSize(n: number): number {
  return Math.ceil(n / ALIGN) * ALIGN;
}

function tooLarge(size: number): SevError {
  return new SevError('ERR_SEV_SECRET_TABLE', `secret table of ${size} bytes (with padding) does not fit the ${SECRET_TABLE_MAX_SIZE}-byte OVMF secret page`);
}

export function buildSecretTable(entries: readonly { guid: string; data: Uint8Array }[]): Buffer {
  const seen = new Set<string>();
  const parts: Buffer[] = [];
  for (const e of entries) {
    const guid = e.guid.toLowerCase();
    // the efi_secret driver treats a nil GUID as a deleted entry and would silently drop it
    if (guid === NIL_GUID) throw new SevError('ERR_SEV_SECRET_TABLE', 'a secret table entry cannot use the nil GUID');
    if (seen.has(guid)) throw new SevError('ERR_SEV_SECRET_TABLE', `duplicate secret table GUID ${guid}`);
    seen.add(guid);
    parts.push(guidToBytesLe(guid), u32le(HEADER_SIZE + e.data.length), Buffer.from(e.data));
  }
  const total = HEADER_SIZE + parts.reduce((n, p) => n + p.length, 0);
  const size = paddedSize(total);
  if (size > SECRET_TABLE_MAX_SIZE) throw tooLarge(size);
  const out = Buffer.alloc(size);
  Buffer.concat([TABLE_GUID_LE, u32le(total), ...parts]).copy(out);
  return out;
}

/**
 * Strict inverse of buildSecretTable: zero padding of the sevctl/simple-kbs size, or of libvirt's (which pads with
 * `16 - len % 16` bytes, a whole extra block when the table is already aligned; firmware and efi_secret accept both),
 * every length in range, no duplicate GUIDs.
 */
export function parseSecretTable(bytes: Uint8Array): SecretTableEntry[] {
  const fail = (why: string): never => {
    throw new SevError('ERR_SEV_SECRET_TABLE', `malformed secret table: ${why}`);
  };
  const b = Buffer.from(bytes);
  if (b.length > SECRET_TABLE_MAX_SIZE) throw tooLarge(b.length);
  if (b.length < HEADER_SIZE) fail(`${b.length} bytes is shorter than the header`);
  if (!b.subarray(0, 16).equals(TABLE_GUID_LE)) fail('wrong header GUID');
  const total = b.readUInt32LE(16);
  if (total < HEADER_SIZE || total > b.length) fail(`total length ${total} out of range`);
  const libvirtSize = total + 16 - (total % 16);
  if (b.length !== paddedSize(total) && b.length !== libvirtSize) fail(`${b.length} bytes is not the total length ${total} padded to 16`);
  if (b.subarray(total).some((x) => x !== 0)) fail('non-zero padding');

  const entries: SecretTableEntry[] = [];
  const seen = new Set<string>();
  let off = HEADER_SIZE;
  while (off < total) {
    if (total - off < HEADER_SIZE) fail(`truncated entry header at offset ${off}`);
    const guid = guidFromBytesLe(b.subarray(off, off + 16));
    const len = b.readUInt32LE(off + 16);
    if (len < HEADER_SIZE || len > total - off) fail(`entry length ${len} at offset ${off} out of range`);
    if (guid === NIL_GUID) fail(`nil GUID at offset ${off}`);
    if (seen.has(guid)) fail(`duplicate GUID ${guid}`);
    seen.add(guid);
    entries.push({ guid, data: Buffer.from(b.subarray(off + HEADER_SIZE, off + len)) });
    off += len;
  }
  return entries;
}
