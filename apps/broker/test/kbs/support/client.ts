/**
 * The guest client's side, written independently of the broker's code with node:crypto, per
 * ../shared/specs/kbs-protocol.md §4.1 (binding), §6.4 (key unwrap) and §6.5 (the client re-serialises the protected
 * header — alg, enc, then the other members sorted — and uses that as the GCM AAD).
 */
import {
  createDecipheriv,
  createHash,
  createPrivateKey,
  createPublicKey,
  diffieHellman,
  generateKeyPairSync,
  privateDecrypt,
  constants,
  type KeyObject,
} from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

export const KBS_VECTORS = join(__dirname, '../../../../../../shared/vectors/kbs-protocol');
export const vector = <T = any>(rel: string): T => JSON.parse(readFileSync(join(KBS_VECTORS, rel), 'utf8')) as T;

function sortDeep(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(sortDeep);
  if (v && typeof v === 'object')
    return Object.fromEntries(
      Object.keys(v)
        .sort()
        .map((k) => [k, sortDeep((v as Record<string, unknown>)[k])]),
    );
  return v;
}

/** kbs-types ProtectedHeader::generate_aad in a build without preserve_order. */
export function clientAad(protectedB64: string): Buffer {
  const h = JSON.parse(Buffer.from(protectedB64, 'base64url').toString('utf8')) as Record<string, unknown>;
  const { alg, enc, ...rest } = h;
  const ser = JSON.stringify({ alg, enc, ...(sortDeep(rest) as object) });
  return Buffer.from(Buffer.from(ser, 'utf8').toString('base64url'), 'ascii');
}

export interface ClientJwe {
  protected: string;
  encrypted_key: string;
  iv: string;
  ciphertext: string;
  tag: string;
}

const B64URL_NOPAD = /^[A-Za-z0-9_-]*$/;

export function clientDecrypt(jwe: ClientJwe, teePrivate: KeyObject): Buffer {
  const keys = Object.keys(jwe).sort();
  if (keys.join(',') !== 'ciphertext,encrypted_key,iv,protected,tag') throw new Error(`JWE members ${keys.join(',')}`);
  for (const k of keys) if (!B64URL_NOPAD.test((jwe as unknown as Record<string, string>)[k]!)) throw new Error(`${k} is not base64url without padding`);
  const header = JSON.parse(Buffer.from(jwe.protected, 'base64url').toString('utf8')) as Record<string, any>;
  const wrapped = Buffer.from(jwe.encrypted_key, 'base64url');
  let cek: Buffer;
  if (header.alg === 'ECDH-ES+A256KW') {
    const crv = teePrivate.asymmetricKeyDetails?.namedCurve === 'prime256v1' ? 'P-256' : 'P-521';
    if (header.epk.crv !== crv) throw new Error('epk on another curve');
    const size = crv === 'P-256' ? 32 : 66;
    if (Buffer.from(header.epk.x, 'base64url').length !== size || Buffer.from(header.epk.y, 'base64url').length !== size)
      throw new Error('epk coordinate length');
    const epk = createPublicKey({ key: { kty: 'EC', crv, x: header.epk.x, y: header.epk.y }, format: 'jwk' });
    const z = diffieHellman({ privateKey: teePrivate, publicKey: epk });
    const u32 = (n: number) => Buffer.from([n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255]);
    const alg = Buffer.from('ECDH-ES+A256KW');
    const kek = createHash('sha256')
      .update(Buffer.concat([u32(1), z, u32(alg.length), alg, u32(0), u32(0), u32(256)]))
      .digest();
    const d = createDecipheriv('id-aes256-wrap', kek, Buffer.from('A6A6A6A6A6A6A6A6', 'hex'));
    cek = Buffer.concat([d.update(wrapped), d.final()]);
  } else if (header.alg === 'RSA-OAEP-256') {
    cek = privateDecrypt({ key: teePrivate, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha256' }, wrapped);
  } else {
    throw new Error(`alg ${header.alg}`);
  }
  const iv = Buffer.from(jwe.iv, 'base64url');
  if (iv.length !== 12) throw new Error('IV length');
  const gcm = createDecipheriv('aes-256-gcm', cek, iv);
  gcm.setAAD(clientAad(jwe.protected));
  gcm.setAuthTag(Buffer.from(jwe.tag, 'base64url'));
  return Buffer.concat([gcm.update(Buffer.from(jwe.ciphertext, 'base64url')), gcm.final()]);
}

/** The transcript's deterministic P-256 TEE key. */
export function transcriptKey(): { privateKey: KeyObject; jwk: Record<string, string> } {
  const t = vector('derived/rcar-sample-transcript.json');
  return { privateKey: createPrivateKey(t.tee_private_key_pkcs8_pem), jwk: t.runtime_data['tee-pubkey'] };
}

/** A fresh TEE key in the client's JWK form (member order kty, crv, alg, x, y as the client sends it). */
export function newTeeKey(kind: 'P-256' | 'P-521' | 'RSA' = 'P-256'): { privateKey: KeyObject; jwk: Record<string, string> } {
  if (kind === 'RSA') {
    const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const j = publicKey.export({ format: 'jwk' });
    return { privateKey, jwk: { kty: 'RSA', alg: 'RSA-OAEP-256', n: j.n!, e: j.e! } };
  }
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: kind === 'P-256' ? 'prime256v1' : 'secp521r1' });
  const j = publicKey.export({ format: 'jwk' });
  return { privateKey, jwk: { kty: 'EC', crv: kind, alg: 'ECDH-ES+A256KW', x: j.x!, y: j.y! } };
}

/** What the sample attester sends for a nonce and key (§10), with the client's binding (§4.1). */
export function sampleAttestation(nonce: string, jwk: Record<string, string>, additional = ''): Record<string, unknown> {
  const canon = JSON.stringify(sortDeep({ 'tee-pubkey': jwk, nonce, 'additional-evidence': additional }));
  const digest = createHash('sha384').update(canon).digest();
  return {
    'init-data': null,
    'runtime-data': { nonce, 'tee-pubkey': jwk },
    'tee-evidence': { primary_evidence: { svn: '1', report_data: digest.toString('base64') }, additional_evidence: additional },
  };
}
