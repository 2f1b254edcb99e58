/**
 * Resources leave the broker as a JWE in flattened JSON serialization, exactly as the guest client decrypts them
 * (../shared/specs/kbs-protocol.md §6.3–§6.5): A256GCM with a 12-byte IV, the tag separate, AAD = ASCII(protected),
 * no `aad` member; the CEK wrapped with ECDH-ES+A256KW (empty party info, fixed-length Z and epk coordinates) or
 * RSA-OAEP-256. The header is written in the order the client re-serialises it: alg, enc, then sorted members.
 */
import {
  createCipheriv,
  createHash,
  createPublicKey,
  diffieHellman,
  generateKeyPairSync,
  publicEncrypt,
  randomBytes,
  constants,
  type KeyObject,
} from 'node:crypto';
import type { TeePubKey } from './binding';

export interface Jwe {
  protected: string;
  encrypted_key: string;
  iv: string;
  ciphertext: string;
  tag: string;
}

/** Fixed inputs for the known-answer vectors only; production calls leave them unset (fresh per response). */
export interface JweFixedInputs {
  ephemeralPrivateKey?: KeyObject;
  cek?: Buffer;
  iv?: Buffer;
}

const ALG_ID = Buffer.from('ECDH-ES+A256KW', 'ascii');
const u32 = (n: number) => {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n);
  return b;
};

/** RFC 7518 §4.6.2 Concat KDF, one SHA-256 round, 256-bit output, empty PartyUInfo/PartyVInfo (§6.4 step 4). */
export function concatKdfKek(z: Buffer): Buffer {
  return createHash('sha256')
    .update(Buffer.concat([u32(1), z, u32(ALG_ID.length), ALG_ID, u32(0), u32(0), u32(256)]))
    .digest();
}

/** RFC 3394 AES key wrap with the default IV (node's id-aes256-wrap). */
export function aesKeyWrap(kek: Buffer, cek: Buffer): Buffer {
  const c = createCipheriv('id-aes256-wrap', kek, Buffer.from('A6A6A6A6A6A6A6A6', 'hex'));
  return Buffer.concat([c.update(cek), c.final()]);
}

export function encryptToTeeKey(key: TeePubKey, plaintext: Buffer, fixed: JweFixedInputs = {}): Jwe {
  const cek = fixed.cek ?? randomBytes(32);
  const iv = fixed.iv ?? randomBytes(12);
  let header: string;
  let encryptedKey: Buffer;
  if (key.kty === 'EC') {
    const recipient = createPublicKey({ key: { kty: 'EC', crv: key.crv, x: key.x, y: key.y }, format: 'jwk' });
    const namedCurve = key.crv === 'P-256' ? 'prime256v1' : 'secp521r1';
    const eph = fixed.ephemeralPrivateKey ?? generateKeyPairSync('ec', { namedCurve }).privateKey;
    // Z is the fixed-length x coordinate (leading zeros kept, §15 #8): node returns the field size
    const z = diffieHellman({ privateKey: eph, publicKey: recipient });
    encryptedKey = aesKeyWrap(concatKdfKek(z), cek);
    const epk = createPublicKey(eph).export({ format: 'jwk' });
    // members sorted inside epk; node's JWK export keeps leading zero bytes of the coordinates
    header = `{"alg":"ECDH-ES+A256KW","enc":"A256GCM","epk":{"crv":"${key.crv}","kty":"EC","x":"${epk.x}","y":"${epk.y}"}}`;
  } else {
    const recipient = createPublicKey({ key: { kty: 'RSA', n: key.n, e: key.e }, format: 'jwk' });
    encryptedKey = publicEncrypt({ key: recipient, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha256' }, cek);
    header = '{"alg":"RSA-OAEP-256","enc":"A256GCM"}';
  }
  const protectedB64 = Buffer.from(header, 'utf8').toString('base64url');
  const gcm = createCipheriv('aes-256-gcm', cek, iv, { authTagLength: 16 });
  gcm.setAAD(Buffer.from(protectedB64, 'ascii'));
  const ciphertext = Buffer.concat([gcm.update(plaintext), gcm.final()]);
  return {
    protected: protectedB64,
    encrypted_key: encryptedKey.toString('base64url'),
    iv: iv.toString('base64url'),
    ciphertext: ciphertext.toString('base64url'),
    tag: gcm.getAuthTag().toString('base64url'),
  };
}
