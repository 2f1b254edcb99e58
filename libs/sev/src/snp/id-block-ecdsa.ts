/**
 * ECDSA P-384 / SHA-384 for SNP ID blocks (../shared/specs/igvm.md §4.3), with node:crypto doing the curve work.
 *
 * igvmmeasure signs deterministically (RFC 6979 nonces, no low-S normalisation), and its signed files are only
 * reproducible byte for byte with the same nonce. node:crypto's ECDSA nonces are random (OpenSSL 3.0), so the nonce
 * is derived here (RFC 6979 §3.2, HMAC-SHA-384 from node:crypto), k·G is computed by node:crypto's ECDH (its public
 * key for private key k), and only s = k⁻¹(z + r·d) mod n is BigInt arithmetic. Every signature is verified with
 * node:crypto before it is returned. BigInt arithmetic is not constant-time: this is an owner's offline signer, not
 * a service exposed to chosen-message timing.
 */
import { createECDH, createHash, createHmac, createPublicKey, verify as nodeVerify, type KeyObject } from 'node:crypto';
import { SevError } from '../errors';

/** The order of the P-384 base point (SEC 2 / FIPS 186-4 D.1.2.4). */
export const P384_N = 0xffffffffffffffffffffffffffffffffffffffffffffffffc7634d81f4372ddf581a0db248b0a77aecec196accc52973n;
const QLEN = 48;

export interface P384Signature {
  r: bigint;
  s: bigint;
}

export const bigFromBytes = (b: Uint8Array): bigint => (b.length === 0 ? 0n : BigInt('0x' + Buffer.from(b).toString('hex')));
export function bytesFromBig(v: bigint, len = QLEN): Buffer {
  const hex = v.toString(16).padStart(len * 2, '0');
  if (hex.length > len * 2) throw new SevError('ERR_SEV_RANGE', `integer does not fit ${len} bytes`);
  return Buffer.from(hex, 'hex');
}
const mod = (a: bigint, m: bigint) => ((a % m) + m) % m;
function modPow(b: bigint, e: bigint, m: bigint): bigint {
  let r = 1n;
  b = mod(b, m);
  while (e > 0n) {
    if (e & 1n) r = (r * b) % m;
    b = (b * b) % m;
    e >>= 1n;
  }
  return r;
}

/** Checks that a private key is EC P-384 and returns its scalar and public point (big-endian 48-byte x, y). */
export function p384KeyParts(key: KeyObject): { d?: Buffer; x: Buffer; y: Buffer } {
  if (key.asymmetricKeyType !== 'ec') throw new SevError('ERR_SEV_KEY', 'The provided key is not an EC key (SNP ID and author keys are ECDSA P-384).');
  if (key.asymmetricKeyDetails?.namedCurve !== 'secp384r1') {
    throw new SevError('ERR_SEV_KEY', `SNP only supports the EC curve P-384, this key is on ${key.asymmetricKeyDetails?.namedCurve ?? 'an unknown curve'}`);
  }
  const jwk = key.export({ format: 'jwk' });
  const b = (s: string | undefined) => Buffer.from(s ?? '', 'base64url');
  return { ...(key.type === 'private' ? { d: b(jwk.d) } : {}), x: b(jwk.x), y: b(jwk.y) };
}

/** RFC 6979 §3.2 nonce candidates for P-384 with SHA-384 (hlen = qlen = 384 bits, so bits2int is the identity). */
function* rfc6979Nonces(d: Buffer, h1: Buffer): Generator<bigint> {
  const x = bytesFromBig(bigFromBytes(d));
  const h = bytesFromBig(mod(bigFromBytes(h1), P384_N)); // bits2octets
  const hmac = (k: Buffer, ...parts: Buffer[]) => createHmac('sha384', k).update(Buffer.concat(parts)).digest();
  let v = Buffer.alloc(QLEN, 0x01);
  let k = Buffer.alloc(QLEN, 0x00);
  k = hmac(k, v, Buffer.from([0x00]), x, h);
  v = hmac(k, v);
  k = hmac(k, v, Buffer.from([0x01]), x, h);
  v = hmac(k, v);
  for (;;) {
    v = hmac(k, v); // tlen = qlen after one block
    const cand = bigFromBytes(v);
    if (cand >= 1n && cand < P384_N) yield cand;
    k = hmac(k, v, Buffer.from([0x00]));
    v = hmac(k, v);
  }
}

/** Deterministic ECDSA P-384 over SHA-384(message) (RFC 6979), as RustCrypto's p384 `SigningKey::sign`. */
export function signP384Deterministic(privateKey: KeyObject, message: Uint8Array): P384Signature {
  const { d, x, y } = p384KeyParts(privateKey);
  if (!d) throw new SevError('ERR_SEV_KEY', 'signing needs a private key');
  const dn = bigFromBytes(d);
  const h1 = createHash('sha384').update(message).digest();
  const z = bigFromBytes(h1);
  for (const k of rfc6979Nonces(d, h1)) {
    const ecdh = createECDH('secp384r1');
    ecdh.setPrivateKey(bytesFromBig(k));
    const r = mod(bigFromBytes(ecdh.getPublicKey().subarray(1, 1 + QLEN)), P384_N); // x of k·G
    if (r === 0n) continue;
    const s = mod(modPow(k, P384_N - 2n, P384_N) * (z + r * dn), P384_N);
    if (s === 0n) continue;
    if (!verifyP384({ x, y }, message, { r, s })) throw new SevError('ERR_SEV_SIGNATURE', 'internal error: a fresh P-384 signature did not verify');
    return { r, s };
  }
  throw new SevError('ERR_SEV_SIGNATURE', 'unreachable'); // the nonce generator never ends
}

/** Verifies an ECDSA P-384 / SHA-384 signature with node:crypto. A point off the curve is a key error. */
export function verifyP384(pub: { x: Uint8Array; y: Uint8Array }, message: Uint8Array, sig: P384Signature): boolean {
  if (sig.r <= 0n || sig.s <= 0n || sig.r >= P384_N || sig.s >= P384_N) return false;
  return nodeVerify('sha384', message, { key: p384PublicKey(pub), dsaEncoding: 'ieee-p1363' }, Buffer.concat([bytesFromBig(sig.r), bytesFromBig(sig.s)]));
}

/** A node:crypto public key from big-endian affine coordinates; refuses points that are not on P-384. */
export function p384PublicKey(pub: { x: Uint8Array; y: Uint8Array }): KeyObject {
  try {
    return createPublicKey({
      key: { kty: 'EC', crv: 'P-384', x: bytesFromBig(bigFromBytes(pub.x)).toString('base64url'), y: bytesFromBig(bigFromBytes(pub.y)).toString('base64url') },
      format: 'jwk',
    });
  } catch (e) {
    const err = new SevError('ERR_SEV_KEY', `not a P-384 public key: ${(e as Error).message}`);
    (err as { cause?: unknown }).cause = e;
    throw err;
  }
}
