import { timingSafeEqual } from 'node:crypto';
import { SevError } from '../errors';

/** AMD structures store big integers little-endian; OpenSSL and node want big-endian. */
export function reversed(b: Uint8Array): Buffer {
  return Buffer.from(b).reverse();
}

export function u32le(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n >>> 0);
  return b;
}

export function u16le(n: number): Buffer {
  const b = Buffer.alloc(2);
  b.writeUInt16LE(n);
  return b;
}

/** Constant-time equality that also answers false (instead of throwing) for different lengths. */
export function constantTimeEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  return timingSafeEqual(a, b);
}

export function expectLength(what: string, b: Uint8Array, ...allowed: number[]): void {
  if (!allowed.includes(b.length)) {
    throw new SevError('ERR_SEV_LENGTH', `${what} must be ${allowed.join(' or ')} bytes, got ${b.length}`);
  }
}

export function asBuffer(b: Uint8Array): Buffer {
  return Buffer.isBuffer(b) ? b : Buffer.from(b.buffer, b.byteOffset, b.byteLength);
}
