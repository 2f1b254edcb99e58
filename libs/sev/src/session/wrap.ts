import { SevError } from '../errors';
import { encodeLaunchBlob, type LaunchBlob } from '../launch/session-blob';
import { assertPolicyRange, policyBytes } from '../launch/policy';
import { constantTimeEqual, expectLength, u32le } from '../util/bytes';
import { aes128Ctr } from './aes-ctr';
import { kdf } from './kdf';
import { hmacSha256 } from './mac';

export interface WrapKeys {
  kek: Buffer;
  kik: Buffer;
}

/** master = KDF(Z, nonce); KEK and KIK = KDF(master) (spec §3.3; every key 16 bytes). */
export function deriveWrapKeys(z: Uint8Array, nonce: Uint8Array): WrapKeys {
  expectLength('session nonce', nonce, 16);
  const master = kdf(z, 'sev-master-secret', nonce, 16);
  return {
    kek: kdf(master, 'sev-kek', Buffer.alloc(0), 16),
    kik: kdf(master, 'sev-kik', Buffer.alloc(0), 16),
  };
}

export interface WrapSessionInput {
  /** The ECDH shared secret (48 bytes in a real session; the crate's known-answer test uses 16 zero bytes). */
  z: Uint8Array;
  nonce: Uint8Array;
  wrapIv: Uint8Array;
  tek: Uint8Array;
  tik: Uint8Array;
  policy: number;
}

/** The pure key-wrapping step of `Session::start` (the crate's `session()`): returns the 128-byte launch blob. */
export function wrapSession(input: WrapSessionInput): Buffer {
  expectLength('TEK', input.tek, 16);
  expectLength('TIK', input.tik, 16);
  expectLength('wrap IV', input.wrapIv, 16);
  const policy = policyBytes(input.policy);
  const { kek, kik } = deriveWrapKeys(input.z, input.nonce);
  const wrapTk = aes128Ctr(kek, input.wrapIv, Buffer.concat([input.tek, input.tik]));
  return encodeLaunchBlob({
    nonce: Buffer.from(input.nonce),
    wrapTk,
    wrapIv: Buffer.from(input.wrapIv),
    wrapMac: hmacSha256(kik, wrapTk),
    policyMac: hmacSha256(input.tik, policy),
  });
}

export interface SessionKeys {
  tek: Buffer;
  tik: Buffer;
}

/**
 * What the Secure Processor does with the blob at LAUNCH_START: check the wrap MAC before decrypting, then the
 * policy MAC with the unwrapped TIK. The firmware MACs the policy as a raw LE u32 (not the crate's encoding), so a
 * blob made for a policy the crate cannot represent fails here just as it would on hardware.
 */
export function unwrapSession(z: Uint8Array, blob: LaunchBlob, policy: number): SessionKeys {
  assertPolicyRange(policy);
  const { kek, kik } = deriveWrapKeys(z, blob.nonce);
  if (!constantTimeEqual(hmacSha256(kik, blob.wrapTk), blob.wrapMac)) {
    throw new SevError('ERR_SEV_MAC', 'launch blob wrap MAC does not verify (wrong key exchange or altered blob)');
  }
  const keys = aes128Ctr(kek, blob.wrapIv, blob.wrapTk);
  const tek = keys.subarray(0, 16);
  const tik = keys.subarray(16, 32);
  if (!constantTimeEqual(hmacSha256(tik, u32le(policy)), blob.policyMac)) {
    throw new SevError('ERR_SEV_MAC', 'launch blob policy MAC does not verify for this guest policy');
  }
  return { tek, tik };
}
