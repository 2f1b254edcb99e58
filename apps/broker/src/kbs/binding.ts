/**
 * The binding of nonce and TEE public key into the evidence (../shared/specs/kbs-protocol.md §4): the TEE key as the
 * server re-serialises it (only `kty` and the variant's members, §3.2/§4.1), RFC 8785 canonical JSON, SHA-384.
 */
import { createHash, createPublicKey, type KeyObject } from 'node:crypto';
import { KbsError } from './errors';

export type TeePubKey =
  { kty: 'EC'; crv: 'P-256' | 'P-521'; alg: 'ECDH-ES+A256KW'; x: string; y: string } | { kty: 'RSA'; alg: 'RSA-OAEP-256'; n: string; e: string };

const B64URL = /^[A-Za-z0-9_-]*$/;
const COORD: Record<string, number> = { 'P-256': 32, 'P-521': 66 };

const bad = (why: string) => new KbsError('AttestationError', `tee-pubkey: ${why}`);

function b64url(v: unknown, what: string): string {
  // the server's decoder rejects padding (§0.1)
  if (typeof v !== 'string' || v === '' || !B64URL.test(v) || v.length % 4 === 1) throw bad(`${what} must be base64url without padding`);
  return v;
}

/**
 * The key members that were hashed, exactly as received (§4.1), after checking the key is usable: EC on its curve
 * with fixed-length coordinates, RSA with OAEP-256. Unsupported keys are refused at /attest (§3.2 allows it), so the
 * client fails its handshake instead of every resource fetch.
 */
export function parseTeePubKey(v: unknown): { key: TeePubKey; publicKey: KeyObject } {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw bad('must be a JWK object');
  const j = v as Record<string, unknown>;
  let key: TeePubKey;
  if (j.kty === 'EC') {
    if (j.crv !== 'P-256' && j.crv !== 'P-521') throw bad(`unsupported curve ${JSON.stringify(j.crv)}`);
    if (j.alg !== 'ECDH-ES+A256KW') throw bad(`unsupported EC algorithm ${JSON.stringify(j.alg)}`);
    const x = b64url(j.x, 'x');
    const y = b64url(j.y, 'y');
    const n = COORD[j.crv]!;
    if (Buffer.from(x, 'base64url').length !== n || Buffer.from(y, 'base64url').length !== n) throw bad(`${j.crv} coordinates must be ${n} bytes`);
    key = { kty: 'EC', crv: j.crv, alg: 'ECDH-ES+A256KW', x, y };
  } else if (j.kty === 'RSA') {
    if (j.alg !== 'RSA-OAEP-256') throw bad(`unsupported RSA algorithm ${JSON.stringify(j.alg)}`);
    key = { kty: 'RSA', alg: 'RSA-OAEP-256', n: b64url(j.n, 'n'), e: b64url(j.e, 'e') };
  } else {
    throw bad(`unsupported kty ${JSON.stringify(j.kty)}`);
  }
  let publicKey: KeyObject;
  try {
    // node:crypto refuses points off the curve
    publicKey = createPublicKey({ key: key, format: 'jwk' });
  } catch (e) {
    throw new KbsError('AttestationError', `tee-pubkey: not a valid ${key.kty} public key (${(e as Error).message})`, undefined, { cause: e });
  }
  if (key.kty === 'RSA') {
    const bits = publicKey.asymmetricKeyDetails?.modulusLength ?? 0;
    if (bits < 2048) throw bad(`RSA modulus of ${bits} bits (2048 or more required)`);
  }
  return { key, publicKey };
}

/** RFC 8785 for the JSON values that occur here (strings, numbers, objects, arrays): keys sorted by UTF-16 code units. */
export function jcs(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(jcs).join(',')}]`;
  if (typeof value === 'object' && value !== null) {
    const o = value as Record<string, unknown>;
    const keys = Object.keys(o)
      .filter((k) => o[k] !== undefined)
      .sort();
    return `{${keys.map((k) => `${JSON.stringify(k)}:${jcs(o[k])}`).join(',')}}`;
  }
  return JSON.stringify(value);
}

/** §4.3 step 2: SHA-384 of JCS({"tee-pubkey", "nonce" (the session's), "additional-evidence" (as received)}). */
export function bindingDigest(key: TeePubKey, nonce: string, additionalEvidence: string): Buffer {
  return createHash('sha384')
    .update(jcs({ 'tee-pubkey': key, nonce, 'additional-evidence': additionalEvidence }), 'utf8')
    .digest();
}

/** §4.4: the two-member object given to additional devices. */
export function deviceBindingDigest(key: TeePubKey, nonce: string): Buffer {
  return createHash('sha384')
    .update(jcs({ 'tee-pubkey': key, nonce }), 'utf8')
    .digest();
}

/** §4.2: SNP REPORT_DATA is the digest right-padded with zeros to 64 bytes. */
export function snpReportData(digest: Buffer): Buffer {
  const out = Buffer.alloc(64);
  digest.copy(out);
  return out;
}
