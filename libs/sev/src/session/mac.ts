import { createHmac } from 'node:crypto';

/** HMAC-SHA256 over the concatenation of parts: every SEV session MAC (`Key::mac` in the sev crate). */
export function hmacSha256(key: Uint8Array, ...parts: Uint8Array[]): Buffer {
  const h = createHmac('sha256', key);
  for (const p of parts) h.update(p);
  return h.digest();
}
