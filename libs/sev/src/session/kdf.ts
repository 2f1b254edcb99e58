import { SevError } from '../errors';
import { u32le } from '../util/bytes';
import { hmacSha256 } from './mac';

const HMAC_SHA256_BYTES = 32;
/** The bit length L is written as a u32, so the output can be at most 2^32 - 1 bits. */
const MAX_SIZE = Math.floor(0xffffffff / 8);

/**
 * NIST SP 800-108 KDF in counter mode with HMAC-SHA256, as the sev crate (`Key::derive`) and AMD sev-tool `kdf()`
 * implement it: the counter i and the bit length L are **little-endian** u32 (NIST writes them big-endian), and a
 * 0x00 separates label and context.
 */
export function kdf(key: Uint8Array, label: string, context: Uint8Array, size: number): Buffer {
  if (!Number.isInteger(size) || size < 1 || size > MAX_SIZE) {
    throw new SevError('ERR_SEV_RANGE', `KDF output size must be 1..${MAX_SIZE} bytes, got ${size}`);
  }
  const fixed = Buffer.concat([Buffer.from(label, 'ascii'), Buffer.from([0]), context, u32le(size * 8)]);
  const blocks: Buffer[] = [];
  for (let i = 1; i <= Math.ceil(size / HMAC_SHA256_BYTES); i++) {
    blocks.push(hmacSha256(key, u32le(i), fixed));
  }
  return Buffer.concat(blocks).subarray(0, size);
}
