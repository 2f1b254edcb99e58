import { createPublicKey, type KeyObject } from 'node:crypto';
import { SevError } from '../../errors';
import { reversed } from '../../util/bytes';
import { CURVE_BYTES, CURVE_NAME, EC_KEY, ECDSA_SIG, RSA_KEY, SEV_CERT, SEV_CERT_SIZE } from './layout';
import { Algo, algoKind, isKnownAlgo, Usage } from './usage';

/** Public key coordinates are kept big-endian (OpenSSL order) and exactly curve-size long. */
export interface SevEcKey {
  kind: 'ec';
  curve: number;
  x: Buffer;
  y: Buffer;
}

/** RSA key components big-endian, without leading zeros beyond the modulus size. */
export interface SevRsaKey {
  kind: 'rsa';
  modulusBits: number;
  exponent: Buffer;
  modulus: Buffer;
}

export interface SevSignatureSlot {
  usage: number;
  algo: number;
  /** The raw 0x200-byte slot contents, as stored (little-endian components). */
  sig: Buffer;
}

export interface SevCertificate {
  version: 1;
  apiMajor: number;
  apiMinor: number;
  usage: number;
  algo: number;
  key: SevEcKey | SevRsaKey;
  sigs: [SevSignatureSlot, SevSignatureSlot];
  /** The exact 2084 bytes this certificate was parsed from (or encoded to). */
  raw: Buffer;
}

const SEV_USAGES: number[] = [Usage.OCA, Usage.PEK, Usage.PDH, Usage.CEK];

export function emptySignatureSlot(): SevSignatureSlot {
  return { usage: Usage.INV, algo: Algo.NONE, sig: Buffer.alloc(SEV_CERT.SIG_BYTES) };
}

/**
 * Parse a SEV certificate. Rejects anything the firmware would not have produced: wrong size, version, usage,
 * algorithm or curve, and EC points that are not on their curve (the invalid-curve class of CVE-2019-9836).
 */
export function parseSevCertificate(bytes: Uint8Array): SevCertificate {
  if (bytes.length !== SEV_CERT_SIZE) {
    throw new SevError('ERR_SEV_LENGTH', `a SEV certificate is ${SEV_CERT_SIZE} bytes, got ${bytes.length}`);
  }
  const raw = Buffer.from(bytes);
  const version = raw.readUInt32LE(SEV_CERT.VERSION);
  if (version !== 1) throw new SevError('ERR_SEV_FORMAT', `unsupported SEV certificate version ${version}`);
  const usage = raw.readUInt32LE(SEV_CERT.PUBKEY_USAGE);
  if (!SEV_USAGES.includes(usage)) {
    throw new SevError('ERR_SEV_FORMAT', `SEV certificate has invalid key usage 0x${usage.toString(16)}`);
  }
  const algo = raw.readUInt32LE(SEV_CERT.PUBKEY_ALGO);
  if (!isKnownAlgo(algo)) throw new SevError('ERR_SEV_FORMAT', `SEV certificate has unknown algorithm 0x${algo.toString(16)}`);
  const key = parseKey(raw.subarray(SEV_CERT.PUBKEY, SEV_CERT.PUBKEY + SEV_CERT.PUBKEY_SIZE), algo);
  const slot = (off: number): SevSignatureSlot => ({
    usage: raw.readUInt32LE(off),
    algo: raw.readUInt32LE(off + 4),
    sig: Buffer.from(raw.subarray(off + 8, off + 8 + SEV_CERT.SIG_BYTES)),
  });
  const cert: SevCertificate = {
    version: 1,
    apiMajor: raw[SEV_CERT.API_MAJOR]!,
    apiMinor: raw[SEV_CERT.API_MINOR]!,
    usage,
    algo,
    key,
    sigs: [slot(SEV_CERT.SIG1), slot(SEV_CERT.SIG2)],
    raw,
  };
  sevPublicKey(cert); // validates the point / modulus eagerly so a parsed certificate always has a usable key
  return cert;
}

function parseKey(u: Buffer, algo: number): SevEcKey | SevRsaKey {
  if (algoKind(algo) === 'ec') {
    const curve = u.readUInt32LE(EC_KEY.CURVE);
    const size = CURVE_BYTES[curve];
    if (size === undefined) throw new SevError('ERR_SEV_FORMAT', `SEV certificate has unknown curve id ${curve}`);
    const comp = (off: number) => {
      const le = u.subarray(off, off + EC_KEY.COMPONENT_SIZE);
      if (le.subarray(size).some((b) => b !== 0)) {
        throw new SevError('ERR_SEV_FORMAT', 'EC coordinate larger than its curve');
      }
      return reversed(le.subarray(0, size));
    };
    return { kind: 'ec', curve, x: comp(EC_KEY.QX), y: comp(EC_KEY.QY) };
  }
  const modulusBits = u.readUInt32LE(RSA_KEY.MODULUS_BITS);
  if (modulusBits !== 2048 && modulusBits !== 4096) {
    throw new SevError('ERR_SEV_FORMAT', `SEV certificate has unsupported RSA modulus size ${modulusBits}`);
  }
  const n = modulusBits / 8;
  return {
    kind: 'rsa',
    modulusBits,
    exponent: reversed(u.subarray(RSA_KEY.PUBEXP, RSA_KEY.PUBEXP + n)),
    modulus: reversed(u.subarray(RSA_KEY.MODULUS, RSA_KEY.MODULUS + n)),
  };
}

const keyCache = new WeakMap<SevCertificate, KeyObject>();

/** The certificate's public key as a node KeyObject (EC points are checked to be on the curve here). */
export function sevPublicKey(cert: SevCertificate): KeyObject {
  const cached = keyCache.get(cert);
  if (cached) return cached;
  let key: KeyObject;
  try {
    if (cert.key.kind === 'ec') {
      key = createPublicKey({ key: ecSpki(cert.key), format: 'der', type: 'spki' });
    } else {
      key = createPublicKey({
        key: { kty: 'RSA', n: stripZeros(cert.key.modulus).toString('base64url'), e: stripZeros(cert.key.exponent).toString('base64url') },
        format: 'jwk',
      });
    }
  } catch (e) {
    throw new SevError('ERR_SEV_FORMAT', `SEV certificate public key is invalid (${(e as Error).message})`);
  }
  keyCache.set(cert, key);
  return key;
}

/** DER SubjectPublicKeyInfo prefixes (algorithm id, curve OID, bit-string header, uncompressed-point tag 04). */
const SPKI_PREFIX: Record<number, Buffer> = {
  1: Buffer.from('3059301306072a8648ce3d020106082a8648ce3d030107034200' + '04', 'hex'),
  2: Buffer.from('3076301006072a8648ce3d020106052b81040022036200' + '04', 'hex'),
};

/**
 * Importing the point as SPKI makes OpenSSL check it is on the curve, which for these prime-order curves is the whole
 * validity check; the JWK import path also multiplies by the group order, tripling the cost of every chain decode.
 */
function ecSpki(k: SevEcKey): Buffer {
  const prefix = SPKI_PREFIX[k.curve];
  const size = CURVE_BYTES[k.curve];
  if (prefix === undefined || size === undefined) throw new Error(`unknown curve id ${k.curve}`);
  const coord = (be: Buffer) => {
    const v = stripZeros(be);
    if (v.length > size) throw new Error('EC coordinate larger than its curve');
    return Buffer.concat([Buffer.alloc(size - v.length), v]);
  };
  return Buffer.concat([prefix, coord(k.x), coord(k.y)]);
}

function stripZeros(b: Buffer): Buffer {
  let i = 0;
  while (i < b.length - 1 && b[i] === 0) i++;
  return b.subarray(i);
}

/** Fields needed to lay out a certificate; `raw` is ignored when present. */
export type SevCertificateFields = Omit<SevCertificate, 'raw' | 'version'> & { version?: 1 };

/** Lay out a SEV certificate: little-endian components, zero-filled reserved bytes. */
export function encodeSevCertificate(c: SevCertificateFields): Buffer {
  const out = Buffer.alloc(SEV_CERT_SIZE);
  out.writeUInt32LE(1, SEV_CERT.VERSION);
  out[SEV_CERT.API_MAJOR] = c.apiMajor;
  out[SEV_CERT.API_MINOR] = c.apiMinor;
  out.writeUInt32LE(c.usage, SEV_CERT.PUBKEY_USAGE);
  out.writeUInt32LE(c.algo, SEV_CERT.PUBKEY_ALGO);
  const u = out.subarray(SEV_CERT.PUBKEY, SEV_CERT.PUBKEY + SEV_CERT.PUBKEY_SIZE);
  if (c.key.kind === 'ec') {
    const size = CURVE_BYTES[c.key.curve];
    if (size === undefined) throw new SevError('ERR_SEV_FORMAT', `unknown curve id ${c.key.curve}`);
    u.writeUInt32LE(c.key.curve, EC_KEY.CURVE);
    writeLe(u, EC_KEY.QX, c.key.x, EC_KEY.COMPONENT_SIZE);
    writeLe(u, EC_KEY.QY, c.key.y, EC_KEY.COMPONENT_SIZE);
  } else {
    u.writeUInt32LE(c.key.modulusBits, RSA_KEY.MODULUS_BITS);
    writeLe(u, RSA_KEY.PUBEXP, c.key.exponent, RSA_KEY.COMPONENT_SIZE);
    writeLe(u, RSA_KEY.MODULUS, c.key.modulus, RSA_KEY.COMPONENT_SIZE);
  }
  const slots = [SEV_CERT.SIG1, SEV_CERT.SIG2];
  c.sigs.forEach((s, i) => {
    const off = slots[i]!;
    out.writeUInt32LE(s.usage, off);
    out.writeUInt32LE(s.algo, off + 4);
    if (s.sig.length > SEV_CERT.SIG_BYTES) throw new SevError('ERR_SEV_LENGTH', 'signature slot overflow');
    s.sig.copy(out, off + 8);
  });
  return out;
}

/** Write a big-endian integer into a little-endian, zero-padded field. */
function writeLe(dst: Buffer, off: number, be: Buffer, width: number): void {
  const v = stripZeros(be);
  if (v.length > width) throw new SevError('ERR_SEV_LENGTH', 'key component too large for its field');
  reversed(v).copy(dst, off);
}

/** The bytes a signature slot signs: version through the end of the public key. */
export function sevSignedBody(cert: SevCertificate): Buffer {
  return cert.raw.subarray(0, SEV_CERT.BODY_END);
}

/** Little-endian r‖s in a slot → IEEE-P1363 big-endian r‖s for node's verifier. */
export function ecdsaSlotToP1363(sig: Buffer, curveBytes: number): Buffer {
  const r = reversed(sig.subarray(ECDSA_SIG.R, ECDSA_SIG.R + curveBytes));
  const s = reversed(sig.subarray(ECDSA_SIG.S, ECDSA_SIG.S + curveBytes));
  return Buffer.concat([r, s]);
}

/** IEEE-P1363 r‖s → the slot layout (little-endian, 72-byte components, zero rest). */
export function p1363ToEcdsaSlot(p1363: Buffer): Buffer {
  const half = p1363.length / 2;
  const out = Buffer.alloc(SEV_CERT.SIG_BYTES);
  reversed(p1363.subarray(0, half)).copy(out, ECDSA_SIG.R);
  reversed(p1363.subarray(half)).copy(out, ECDSA_SIG.S);
  return out;
}

export { CURVE_NAME };
