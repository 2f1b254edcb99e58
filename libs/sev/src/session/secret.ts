import { randomBytes } from 'node:crypto';
import { SevError } from '../errors';
import { assertSecretHeaderFlags, encodeSecretHeader, parseSecretHeader } from '../launch/secret-header';
import { constantTimeEqual, expectLength, u32le } from '../util/bytes';
import { aes128Ctr } from './aes-ctr';
import { hmacSha256 } from './mac';

/** SEV API LAUNCH_SECRET: the packet MAC input starts with this context byte. */
const SECRET_CONTEXT = Buffer.from([0x01]);

export interface SecretKeys {
  tek: Uint8Array;
  tik: Uint8Array;
  /** The 32-byte MEASURE that passed verifyMeasurement; binding it ties the secret to that one launch. */
  measure: Uint8Array;
}

export interface SecretPacket {
  /** 52-byte LAUNCH_SECRET header (SecretResponse.LaunchSecretHeader). */
  header: Buffer;
  /** The encrypted secret (SecretResponse.LaunchSecretData). */
  data: Buffer;
}

function checkKeys(k: SecretKeys): void {
  expectLength('TEK', k.tek, 16);
  expectLength('TIK', k.tik, 16);
  expectLength('measure', k.measure, 32);
}

/** GUEST_LENGTH and TRANS_LENGTH are u32 fields. */
function u32Length(data: Uint8Array): Buffer {
  if (data.length > 0xffffffff) throw new SevError('ERR_SEV_LENGTH', `secret of ${data.length} bytes exceeds 2^32 - 1`);
  return u32le(data.length);
}

/** HMAC(TIK, 0x01 ‖ flags ‖ iv ‖ guest_len ‖ trans_len ‖ ciphertext ‖ measure); never compressed: equal lengths. */
function packetMac(k: SecretKeys, flags: number, iv: Uint8Array, ciphertext: Uint8Array): Buffer {
  const len = u32Length(ciphertext);
  return hmacSha256(k.tik, SECRET_CONTEXT, u32le(flags), iv, len, len, ciphertext, k.measure);
}

/** The guest owner's LAUNCH_SECRET packet (sev crate `Session::secret`, sevctl `secret build`). */
export function packageSecret(input: SecretKeys & { data: Uint8Array; iv?: Uint8Array; flags?: number }): SecretPacket {
  checkKeys(input);
  const flags = input.flags ?? 0;
  const iv = Buffer.from(input.iv ?? randomBytes(16));
  expectLength('secret IV', iv, 16);
  assertSecretHeaderFlags(flags);
  const data = aes128Ctr(input.tek, iv, input.data);
  return { header: encodeSecretHeader({ flags, iv, mac: packetMac(input, flags, iv, data) }), data };
}

/** The Secure Processor's side of LAUNCH_SECRET, for the simulator: verify the MAC, then decrypt. */
export function openSecret(input: SecretKeys & { header: Uint8Array; data: Uint8Array }): Buffer {
  checkKeys(input);
  const h = parseSecretHeader(input.header);
  if (!constantTimeEqual(packetMac(input, h.flags, h.iv, input.data), h.mac)) {
    throw new SevError('ERR_SEV_MAC', 'LAUNCH_SECRET packet MAC does not verify');
  }
  return aes128Ctr(input.tek, h.iv, input.data);
}
