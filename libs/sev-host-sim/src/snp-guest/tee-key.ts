import { createDecipheriv, createHash, createPublicKey, diffieHellman, generateKeyPairSync, type KeyObject } from 'node:crypto';
import { KbsProtocolError } from './binding';

/**
 * The guest's TEE key pair and the decryption of resources sent to it (../shared/specs/kbs-protocol.md §3.2, §6),
 * as guest-components kbs_protocol does it: EC P-256 (the client default) or P-521 with ECDH-ES+A256KW; JWE in
 * flattened JSON; AES-256-GCM with AAD = the protected header re-serialised with `alg`, `enc` first and the other
 * members sorted (§6.5), the tag separate, `enc` ignored.
 */
export type TeeCurve = 'P-256' | 'P-521';

export interface JweFlattened {
  protected: string;
  encrypted_key: string;
  iv: string;
  ciphertext: string;
  tag: string;
  aad?: string;
}

const B64URL = /^[A-Za-z0-9_-]*$/;

function b64u(s: unknown, what: string): Buffer {
  if (typeof s !== 'string' || !B64URL.test(s)) throw new KbsProtocolError('KBS_JWE', `${what} is not base64url without padding`);
  return Buffer.from(s, 'base64url');
}

export class TeeKeyPair {
  readonly privateKey: KeyObject;
  readonly curve: TeeCurve;

  constructor(opts: { curve?: TeeCurve; privateKey?: KeyObject } = {}) {
    this.curve = opts.curve ?? 'P-256';
    this.privateKey = opts.privateKey ?? generateKeyPairSync('ec', { namedCurve: this.curve }).privateKey;
  }

  /** The `tee-pubkey` JWK with the members in the client's serialisation order: kty, crv, alg, x, y. */
  publicJwk(): { kty: 'EC'; crv: TeeCurve; alg: 'ECDH-ES+A256KW'; x: string; y: string } {
    const j = createPublicKey(this.privateKey).export({ format: 'jwk' });
    return { kty: 'EC', crv: this.curve, alg: 'ECDH-ES+A256KW', x: j.x!, y: j.y! };
  }

  /** The resource bytes of a JWE the KBS encrypted to this key (§6.3–§6.5). */
  decrypt(jwe: unknown): Buffer {
    if (jwe === null || typeof jwe !== 'object') throw new KbsProtocolError('KBS_JWE', 'the resource response is not a JWE object');
    const j = jwe as Record<string, unknown>;
    for (const k of ['protected', 'encrypted_key', 'iv', 'ciphertext', 'tag'])
      if (typeof j[k] !== 'string') throw new KbsProtocolError('KBS_JWE', `the JWE lacks ${k}`);
    let header: Record<string, unknown>;
    try {
      header = JSON.parse(b64u(j.protected, 'protected').toString('utf8')) as Record<string, unknown>;
    } catch (e) {
      if (e instanceof KbsProtocolError) throw e;
      throw new KbsProtocolError('KBS_JWE', 'the protected header is not JSON', undefined, { cause: e });
    }
    if (header.alg !== 'ECDH-ES+A256KW') throw new KbsProtocolError('KBS_JWE', `unsupported key management ${JSON.stringify(header.alg)} for an EC TEE key`);
    const epk = header.epk as Record<string, unknown> | undefined;
    if (!epk || epk.kty !== 'EC' || epk.crv !== this.curve) throw new KbsProtocolError('KBS_JWE', `the epk is not an EC key on ${this.curve}`);
    const n = this.curve === 'P-256' ? 32 : 66;
    const x = b64u(epk.x, 'epk.x');
    const y = b64u(epk.y, 'epk.y');
    if (x.length !== n || y.length !== n) throw new KbsProtocolError('KBS_JWE', `epk coordinates must be ${n} bytes`);
    let z: Buffer;
    try {
      const pub = createPublicKey({ key: { kty: 'EC', crv: this.curve, x: x.toString('base64url'), y: y.toString('base64url') }, format: 'jwk' });
      z = diffieHellman({ privateKey: this.privateKey, publicKey: pub });
    } catch (e) {
      throw new KbsProtocolError('KBS_JWE', 'the epk is not a point on the curve', undefined, { cause: e });
    }
    // Concat KDF (RFC 7518 §4.6.2), empty PartyUInfo/PartyVInfo, 256-bit output: one SHA-256 block
    const alg = Buffer.from('ECDH-ES+A256KW');
    const u32 = (v: number) => Buffer.from([v >>> 24, (v >>> 16) & 0xff, (v >>> 8) & 0xff, v & 0xff]);
    const kek = createHash('sha256')
      .update(Buffer.concat([u32(1), z, u32(alg.length), alg, u32(0), u32(0), u32(256)]))
      .digest();
    let cek: Buffer;
    try {
      const d = createDecipheriv('id-aes256-wrap', kek, Buffer.from('a6a6a6a6a6a6a6a6', 'hex'));
      cek = Buffer.concat([d.update(b64u(j.encrypted_key, 'encrypted_key')), d.final()]);
    } catch (e) {
      throw new KbsProtocolError('KBS_JWE', 'the content key does not unwrap', undefined, { cause: e });
    }
    const iv = b64u(j.iv, 'iv');
    const tag = b64u(j.tag, 'tag');
    if (cek.length !== 32 || iv.length !== 12 || tag.length !== 16)
      throw new KbsProtocolError('KBS_JWE', 'A256GCM needs a 32-byte key, a 12-byte IV and a 16-byte tag');
    try {
      const d = createDecipheriv('aes-256-gcm', cek, iv);
      d.setAAD(Buffer.from(protectedAad(header), 'ascii'));
      d.setAuthTag(tag);
      return Buffer.concat([d.update(b64u(j.ciphertext, 'ciphertext')), d.final()]);
    } catch (e) {
      throw new KbsProtocolError('KBS_JWE', 'the resource does not decrypt (GCM authentication failed)', undefined, { cause: e });
    }
  }
}

/**
 * The AAD as the client computes it (§6.5, kbs-types ProtectedHeader::generate_aad): `alg`, `enc`, then the other
 * members sorted by key (nested objects sorted too), compact JSON, base64url without padding.
 */
export function protectedAad(header: Record<string, unknown>): string {
  const sort = (v: unknown): unknown =>
    v !== null && typeof v === 'object' && !Array.isArray(v)
      ? Object.fromEntries(
          Object.keys(v)
            .sort()
            .map((k) => [k, sort((v as Record<string, unknown>)[k])]),
        )
      : v;
  const { alg, enc, ...rest } = header;
  const ordered = { alg, enc, ...(sort(rest) as object) };
  return Buffer.from(JSON.stringify(ordered), 'utf8').toString('base64url');
}
