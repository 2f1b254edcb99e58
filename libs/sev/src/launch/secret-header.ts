import { SevError } from '../errors';
import { expectLength } from '../util/bytes';

/**
 * LAUNCH_SECRET packet header (SEV API "LAUNCH_SECRET Packet Header Buffer", virtee sev `launch::sev::Header`).
 * simple-kbs sends bincode of it, which is exactly these 52 raw bytes.
 */
export const SECRET_HEADER_SIZE = 52;
export const SECRET_HEADER = { FLAGS: 0, IV: 4, MAC: 20 } as const;

/** COMPRESSED is only a marker: neither the crate nor sevctl compresses. Bits 1–31 are reserved. */
export const SecretHeaderFlag = { COMPRESSED: 0x1 } as const;
const KNOWN_FLAGS = SecretHeaderFlag.COMPRESSED;

export interface LaunchSecretHeader {
  flags: number;
  iv: Buffer; // 16
  mac: Buffer; // 32
}

export function assertSecretHeaderFlags(flags: number): void {
  if (!Number.isInteger(flags) || flags < 0 || flags > 0xffffffff) {
    throw new SevError('ERR_SEV_RANGE', `secret header flags are a 32-bit unsigned integer, got ${flags}`);
  }
  if ((flags & ~KNOWN_FLAGS) !== 0) {
    throw new SevError('ERR_SEV_FORMAT', `secret header flags 0x${flags.toString(16)} set reserved bits`);
  }
}

export function encodeSecretHeader(h: LaunchSecretHeader): Buffer {
  assertSecretHeaderFlags(h.flags);
  expectLength('secret header IV', h.iv, 16);
  expectLength('secret header MAC', h.mac, 32);
  const out = Buffer.alloc(SECRET_HEADER_SIZE);
  out.writeUInt32LE(h.flags, SECRET_HEADER.FLAGS);
  out.set(h.iv, SECRET_HEADER.IV);
  out.set(h.mac, SECRET_HEADER.MAC);
  return out;
}

export function parseSecretHeader(bytes: Uint8Array): LaunchSecretHeader {
  expectLength('secret header', bytes, SECRET_HEADER_SIZE);
  const b = Buffer.from(bytes);
  const flags = b.readUInt32LE(SECRET_HEADER.FLAGS);
  assertSecretHeaderFlags(flags);
  return {
    flags,
    iv: b.subarray(SECRET_HEADER.IV, SECRET_HEADER.MAC),
    mac: b.subarray(SECRET_HEADER.MAC, SECRET_HEADER_SIZE),
  };
}
