import { createHash, createPublicKey, type KeyObject } from 'node:crypto';
import { AsnConvert } from '@peculiar/asn1-schema';
import { Certificate, type Name } from '@peculiar/asn1-x509';
import { SnpError } from './errors';
import { derOf } from './pem';

/**
 * An X.509 certificate of the SNP chain (ARK, ASK, ASVK, VCEK, VLEK), parsed with @peculiar/asn1-x509 because
 * node:crypto's X509Certificate exposes neither the AMD extensions nor the signature-algorithm parameters
 * (../shared/specs/snp-attestation.md §3.7). Signatures are verified over the tbsCertificate bytes as received.
 */
export interface SnpCertificate {
  der: Buffer;
  /** SHA-256 of the DER, hex: identity for caches and comparisons */
  sha256: string;
  tbs: Buffer;
  /** DER of the outer signatureAlgorithm and of tbsCertificate.signature */
  signatureAlgorithm: Buffer;
  tbsSignatureAlgorithm: Buffer;
  signature: Buffer;
  /** lowercase hex without leading zero bytes ("00" for 0) */
  serial: string;
  subjectCn: string | undefined;
  issuerCn: string | undefined;
  subjectName: Buffer;
  issuerName: Buffer;
  notBefore: Date;
  notAfter: Date;
  /** the same as epoch milliseconds (compared on every verification; Date comparisons go through valueOf) */
  notBeforeMs: number;
  notAfterMs: number;
  /** `notBefore – notAfter` in ISO form (precomputed: it is printed on every verification) */
  validityText: string;
  publicKey: KeyObject;
  spki: Buffer;
  /** extnValue contents by OID; duplicates are refused at parse time (GSG kdsOidMap) */
  extensions: ReadonlyMap<string, Buffer>;
}

const CN = '2.5.4.3';
/** keyed by the DER's SHA-256, and by the input's bytes as a latin1 string (a cheaper lookup than hashing again) */
const cache = new Map<string, SnpCertificate>();
const CACHE_MAX = 4096;
const INPUT_KEY_MAX = 8192; // inputs longer than this are never keys

function cnOf(name: Name): string | undefined {
  for (const rdn of name) for (const atv of rdn) if (atv.type === CN) return atv.value.toString();
  return undefined;
}

export function serialHex(bytes: ArrayBuffer | Uint8Array): string {
  const b = Buffer.from(bytes instanceof ArrayBuffer ? new Uint8Array(bytes) : bytes);
  let i = 0;
  while (i < b.length - 1 && b[i] === 0) i++;
  return b.subarray(i).toString('hex') || '00';
}

/** The outer TLV must span the whole input (the ASN.1 parser would ignore trailing bytes). Shared with crl.ts. */
export function assertSingleTlv(der: Buffer): void {
  if (der.length < 2 || der[0] !== 0x30) throw new Error('not a DER SEQUENCE');
  const l = der[1]!;
  let len: number;
  let head = 2;
  if (l < 0x80) len = l;
  else {
    const n = l & 0x7f;
    if (n === 0 || n > 4 || der.length < 2 + n) throw new Error('bad DER length');
    len = der.readUIntBE(2, n);
    head += n;
  }
  if (head + len !== der.length) throw new Error(`DER length ${head + len} does not match the ${der.length} bytes given`);
}

/**
 * Parses a PEM or DER certificate. Parsed certificates are memoised by the SHA-256 of their DER (parsing costs more
 * than an ECDSA verification); the returned object is frozen and shared, so callers must not mutate its buffers.
 */
export function parseSnpCertificate(input: Uint8Array, what = 'certificate'): SnpCertificate {
  // the input's own bytes find a known certificate (PEM or DER) without decoding or hashing it again
  const inputKey = input.length <= INPUT_KEY_MAX ? `i:${Buffer.from(input.buffer, input.byteOffset, input.byteLength).toString('latin1')}` : undefined;
  const known = inputKey === undefined ? undefined : cache.get(inputKey);
  if (known) return known;
  const der = derOf(input, 'CERTIFICATE', what);
  const sha256 = createHash('sha256').update(der).digest('hex');
  const hit = cache.get(sha256);
  if (hit) {
    if (inputKey !== undefined) remember(inputKey, hit);
    return hit;
  }
  let parsed: SnpCertificate;
  try {
    assertSingleTlv(der);
    const c = AsnConvert.parse(der, Certificate);
    const t = c.tbsCertificate;
    if (!c.tbsCertificateRaw) throw new Error('no tbsCertificate bytes');
    const extensions = new Map<string, Buffer>();
    for (const e of t.extensions ?? []) {
      if (extensions.has(e.extnID)) throw new Error(`duplicate extension ${e.extnID}`);
      extensions.set(e.extnID, Buffer.from(e.extnValue.buffer));
    }
    const spki = Buffer.from(AsnConvert.serialize(t.subjectPublicKeyInfo));
    parsed = {
      der,
      sha256,
      tbs: Buffer.from(c.tbsCertificateRaw),
      signatureAlgorithm: Buffer.from(AsnConvert.serialize(c.signatureAlgorithm)),
      tbsSignatureAlgorithm: Buffer.from(AsnConvert.serialize(t.signature)),
      signature: Buffer.from(c.signatureValue),
      serial: serialHex(t.serialNumber),
      subjectCn: cnOf(t.subject),
      issuerCn: cnOf(t.issuer),
      subjectName: Buffer.from(AsnConvert.serialize(t.subject)),
      issuerName: Buffer.from(AsnConvert.serialize(t.issuer)),
      notBefore: t.validity.notBefore.getTime(),
      notAfter: t.validity.notAfter.getTime(),
      notBeforeMs: t.validity.notBefore.getTime().getTime(),
      notAfterMs: t.validity.notAfter.getTime().getTime(),
      validityText: `${t.validity.notBefore.getTime().toISOString()} – ${t.validity.notAfter.getTime().toISOString()}`,
      publicKey: createPublicKey({ key: spki, format: 'der', type: 'spki' }),
      spki,
      extensions,
    };
  } catch (e) {
    if (e instanceof SnpError) throw e;
    throw new SnpError('SNP_CERT_PARSE', `${what} is not a valid X.509 certificate: ${(e as Error).message}`, { cause: e });
  }
  Object.freeze(parsed);
  remember(sha256, parsed);
  if (inputKey !== undefined) remember(inputKey, parsed);
  return parsed;
}

function remember(key: string, c: SnpCertificate): void {
  if (cache.size >= CACHE_MAX) cache.delete(cache.keys().next().value as string);
  cache.set(key, c);
}
