import { SevError } from './errors';

const GUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export function isGuid(s: string): boolean {
  return GUID_RE.test(s);
}

/**
 * The EFI / Microsoft mixed-endian GUID layout (Rust `Uuid::to_bytes_le`, Python `uuid.bytes_le`): the first three
 * fields are byte-swapped, the last eight bytes are kept in order. OVMF tables and the secret table use it.
 */
export function guidToBytesLe(guid: string): Buffer {
  if (!GUID_RE.test(guid)) throw new SevError('ERR_SEV_FORMAT', `not a GUID: ${JSON.stringify(guid)}`);
  const hex = guid.replace(/-/g, '');
  const b = Buffer.from(hex, 'hex');
  b.subarray(0, 4).reverse();
  b.subarray(4, 6).reverse();
  b.subarray(6, 8).reverse();
  return b;
}

export function guidFromBytesLe(b: Uint8Array): string {
  if (b.length !== 16) throw new SevError('ERR_SEV_LENGTH', `a GUID is 16 bytes, got ${b.length}`);
  const c = Buffer.from(b);
  c.subarray(0, 4).reverse();
  c.subarray(4, 6).reverse();
  c.subarray(6, 8).reverse();
  const h = c.toString('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}
