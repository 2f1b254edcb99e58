import { createCipheriv } from 'node:crypto';

/**
 * AES-128-CTR with the 16-byte IV as the initial counter block, incremented as one 128-bit big-endian integer
 * (OpenSSL's CTR, which the crate uses). Encryption and decryption are the same operation.
 */
export function aes128Ctr(key: Uint8Array, iv: Uint8Array, data: Uint8Array): Buffer {
  const c = createCipheriv('aes-128-ctr', key, iv);
  return Buffer.concat([c.update(data), c.final()]);
}
