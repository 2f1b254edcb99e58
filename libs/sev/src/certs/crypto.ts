import { constants, sign, verify, type KeyObject } from 'node:crypto';
import { asBuffer, reversed } from '../util/bytes';
import { ecdsaSlotToP1363, p1363ToEcdsaSlot } from './sev/certificate';
import { ECDSA_SIG, SEV_CERT } from './sev/layout';

/**
 * The signature primitives of virtee sev `certs/sev/crypto.rs`, over AMD's little-endian signature encodings.
 * Verifiers answer false instead of throwing: a malformed signature is just a signature that does not verify, and the
 * caller (./verify.ts) turns that into an error naming the certificates.
 */
export type SevHash = 'sha256' | 'sha384';

const DIGEST_BYTES: Record<SevHash, number> = { sha256: 32, sha384: 48 };

const CURVE_BYTES_BY_NAME: Record<string, number> = { prime256v1: 32, secp384r1: 48 };

/** The crate sets `RsaPssSaltlen::DIGEST_LENGTH` and leaves MGF1 at OpenSSL's default, the signing digest. */
function pss(key: KeyObject, hash: SevHash) {
  return { key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: DIGEST_BYTES[hash] };
}

function modulusBytes(key: KeyObject): number {
  return Math.ceil((key.asymmetricKeyDetails?.modulusLength ?? 0) / 8);
}

/**
 * RSA-PSS over a little-endian signature field. The crate reads the whole field as one little-endian number, so any
 * non-zero byte above the modulus size makes the number too large to be a signature: reject it rather than ignore it.
 */
export function rsaPssVerifyLe(key: KeyObject, hash: SevHash, body: Uint8Array, sigLe: Uint8Array): boolean {
  if (key.asymmetricKeyType !== 'rsa') return false;
  const size = modulusBytes(key);
  if (sigLe.subarray(size).some((b) => b !== 0)) return false;
  const le = Buffer.alloc(size);
  le.set(sigLe.subarray(0, size));
  try {
    return verify(hash, body, pss(key, hash), reversed(le));
  } catch {
    return false;
  }
}

/** RSA-PSS signature, little-endian, exactly the signer's modulus size. */
export function rsaPssSignLe(privateKey: KeyObject, hash: SevHash, body: Uint8Array): Buffer {
  return reversed(sign(hash, body, pss(privateKey, hash)));
}

/**
 * ECDSA over a SEV signature slot (r, s little-endian in 72-byte fields). The crate converts all 72 bytes, so high
 * bytes beyond the curve size make r or s out of range; the 368 bytes after s are not read by anyone.
 */
export function ecdsaVerifySlot(key: KeyObject, hash: SevHash, body: Uint8Array, slot: Uint8Array): boolean {
  if (key.asymmetricKeyType !== 'ec') return false;
  const size = CURVE_BYTES_BY_NAME[key.asymmetricKeyDetails?.namedCurve ?? ''];
  if (size === undefined || slot.length < SEV_CERT.SIG_BYTES) return false;
  const high = (off: number) => slot.subarray(off + size, off + ECDSA_SIG.COMPONENT_SIZE).some((b) => b !== 0);
  if (high(ECDSA_SIG.R) || high(ECDSA_SIG.S)) return false;
  try {
    return verify(hash, body, { key, dsaEncoding: 'ieee-p1363' }, ecdsaSlotToP1363(asBuffer(slot), size));
  } catch {
    return false;
  }
}

/** ECDSA signature laid out as a 0x200-byte SEV signature slot. */
export function ecdsaSignSlot(privateKey: KeyObject, hash: SevHash, body: Uint8Array): Buffer {
  return p1363ToEcdsaSlot(sign(hash, body, { key: privateKey, dsaEncoding: 'ieee-p1363' }));
}
