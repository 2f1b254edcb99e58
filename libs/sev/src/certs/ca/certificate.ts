import { createPublicKey, type KeyObject } from 'node:crypto';
import { SevError } from '../../errors';
import { reversed } from '../../util/bytes';
import type { SevHash } from '../crypto';
import { Usage, usageName } from '../sev/usage';
import { CA_CERT, CA_MODULUS_BITS, caCertificateSize, caSignedBodySize, type CaModulusBits } from './layout';
import { completeUnsignedNaplesArk } from './naples-quirk';

/** An AMD CA certificate (ARK or ASK). Key components are big-endian (OpenSSL order), exactly N bytes long. */
export interface CaCertificate {
  version: 1;
  /** 16 raw bytes. */
  keyId: Buffer;
  /** 16 raw bytes; the signer's key_id (equal to keyId when self-signed). */
  certifyingId: Buffer;
  usage: number;
  modulusBits: CaModulusBits;
  exponent: Buffer;
  modulus: Buffer;
  /** The N-byte RSA-PSS signature as stored (little-endian). */
  signature: Buffer;
  /** The exact bytes (832 or 1600) this certificate was parsed from or encoded to. */
  raw: Buffer;
}

/** Fields needed to lay out a CA certificate; `raw` is ignored when present. */
export type CaCertificateFields = Omit<CaCertificate, 'raw' | 'version'> & { version?: 1 };

function isModulusBits(n: number): n is CaModulusBits {
  return (CA_MODULUS_BITS as readonly number[]).includes(n);
}

/** Validate the 64-byte preamble and return the modulus size it announces. */
function readPreamble(bytes: Uint8Array): CaModulusBits {
  if (bytes.length < CA_CERT.PREAMBLE_SIZE) {
    throw new SevError('ERR_SEV_LENGTH', `an AMD CA certificate has a ${CA_CERT.PREAMBLE_SIZE}-byte preamble, got ${bytes.length} bytes`);
  }
  const b = Buffer.from(bytes.buffer, bytes.byteOffset, CA_CERT.PREAMBLE_SIZE);
  const version = b.readUInt32LE(CA_CERT.VERSION);
  if (version !== 1) throw new SevError('ERR_SEV_FORMAT', `unsupported AMD CA certificate version ${version}`);
  const usage = b.readUInt32LE(CA_CERT.KEY_USAGE);
  if (usage !== Usage.ARK && usage !== Usage.ASK) {
    throw new SevError('ERR_SEV_FORMAT', `AMD CA certificate has invalid key usage 0x${usage.toString(16)}`);
  }
  // Zero in every AMD certificate; requiring it keeps the parsed fields a complete description of the bytes.
  if (b.subarray(CA_CERT.RESERVED, CA_CERT.RESERVED + CA_CERT.RESERVED_SIZE).some((x) => x !== 0)) {
    throw new SevError('ERR_SEV_FORMAT', `${usageName(usage)} certificate has non-zero reserved bytes`);
  }
  const pubexpBits = b.readUInt32LE(CA_CERT.PUBEXP_SIZE);
  const modulusBits = b.readUInt32LE(CA_CERT.MODULUS_SIZE);
  if (!isModulusBits(modulusBits)) {
    throw new SevError('ERR_SEV_FORMAT', `${usageName(usage)} certificate has unsupported modulus size ${modulusBits}`);
  }
  if (pubexpBits !== modulusBits) {
    throw new SevError('ERR_SEV_FORMAT', `${usageName(usage)} certificate exponent size ${pubexpBits} differs from modulus size ${modulusBits}`);
  }
  return modulusBits;
}

/** Total size announced by a CA certificate's preamble, so a chain decoder knows where the next one starts. */
export function caCertificateLength(bytes: Uint8Array): number {
  return caCertificateSize(readPreamble(bytes));
}

/**
 * Parse an AMD CA certificate. The input must be exactly one certificate, except for AMD's unsigned Naples ARK (see
 * ./naples-quirk.ts), which is completed with its known signature.
 */
export function parseCaCertificate(bytes: Uint8Array): CaCertificate {
  const modulusBits = readPreamble(bytes);
  const size = caCertificateSize(modulusBits);
  const raw = bytes.length === size ? Buffer.from(bytes) : completeUnsignedNaplesArk(bytes);
  if (raw === undefined) {
    throw new SevError('ERR_SEV_LENGTH', `an AMD CA certificate with a ${modulusBits}-bit key is ${size} bytes, got ${bytes.length}`);
  }
  const n = modulusBits / 8;
  const usage = raw.readUInt32LE(CA_CERT.KEY_USAGE);
  const modulus = reversed(raw.subarray(CA_CERT.PUBEXP + n, CA_CERT.PUBEXP + 2 * n));
  // The hash is chosen from the announced size, so the key must really have that size.
  if ((modulus[0]! & 0x80) === 0) {
    throw new SevError('ERR_SEV_FORMAT', `${usageName(usage)} modulus is shorter than its announced ${modulusBits} bits`);
  }
  return {
    version: 1,
    keyId: Buffer.from(raw.subarray(CA_CERT.KEY_ID, CA_CERT.KEY_ID + CA_CERT.ID_SIZE)),
    certifyingId: Buffer.from(raw.subarray(CA_CERT.CERTIFYING_ID, CA_CERT.CERTIFYING_ID + CA_CERT.ID_SIZE)),
    usage,
    modulusBits,
    exponent: reversed(raw.subarray(CA_CERT.PUBEXP, CA_CERT.PUBEXP + n)),
    modulus,
    signature: Buffer.from(raw.subarray(CA_CERT.PUBEXP + 2 * n, CA_CERT.PUBEXP + 3 * n)),
    raw,
  };
}

/** Lay out a CA certificate: little-endian components zero-padded to N bytes, zero reserved bytes. */
export function encodeCaCertificate(c: CaCertificateFields): Buffer {
  if (!isModulusBits(c.modulusBits)) throw new SevError('ERR_SEV_FORMAT', `unsupported modulus size ${c.modulusBits}`);
  if (c.keyId.length !== CA_CERT.ID_SIZE || c.certifyingId.length !== CA_CERT.ID_SIZE) {
    throw new SevError('ERR_SEV_LENGTH', `key_id and certifying_id are ${CA_CERT.ID_SIZE} bytes`);
  }
  const n = c.modulusBits / 8;
  const out = Buffer.alloc(caCertificateSize(c.modulusBits));
  out.writeUInt32LE(1, CA_CERT.VERSION);
  c.keyId.copy(out, CA_CERT.KEY_ID);
  c.certifyingId.copy(out, CA_CERT.CERTIFYING_ID);
  out.writeUInt32LE(c.usage >>> 0, CA_CERT.KEY_USAGE);
  out.writeUInt32LE(c.modulusBits, CA_CERT.PUBEXP_SIZE);
  out.writeUInt32LE(c.modulusBits, CA_CERT.MODULUS_SIZE);
  putLe(out, CA_CERT.PUBEXP, reversed(c.exponent), n, 'exponent');
  putLe(out, CA_CERT.PUBEXP + n, reversed(c.modulus), n, 'modulus');
  putLe(out, CA_CERT.PUBEXP + 2 * n, c.signature, n, 'signature');
  return out;
}

function putLe(out: Buffer, off: number, le: Buffer, width: number, what: string): void {
  if (le.subarray(width).some((b) => b !== 0)) {
    throw new SevError('ERR_SEV_LENGTH', `CA certificate ${what} does not fit in ${width} bytes`);
  }
  le.copy(out, off, 0, Math.min(le.length, width));
}

/** The bytes the CA signature covers: preamble, exponent and modulus. */
export function caSignedBody(cert: CaCertificate): Buffer {
  return cert.raw.subarray(0, caSignedBodySize(cert.modulusBits));
}

/** The crate picks the CA hash from the key size: SHA-256 for RSA-2048 (Naples), SHA-384 for RSA-4096. */
export function caHash(modulusBits: CaModulusBits): SevHash {
  return modulusBits === 2048 ? 'sha256' : 'sha384';
}

const keyCache = new WeakMap<CaCertificate, KeyObject>();

/** The certificate's RSA public key as a node KeyObject, built once per parsed certificate. */
export function caPublicKey(cert: CaCertificate): KeyObject {
  const cached = keyCache.get(cert);
  if (cached) return cached;
  let key: KeyObject;
  try {
    key = createPublicKey({
      key: { kty: 'RSA', n: minimal(cert.modulus).toString('base64url'), e: minimal(cert.exponent).toString('base64url') },
      format: 'jwk',
    });
  } catch (e) {
    throw new SevError('ERR_SEV_FORMAT', `${usageName(cert.usage)} public key is invalid (${(e as Error).message})`);
  }
  keyCache.set(cert, key);
  return key;
}

/** JWK wants integers without leading zero bytes. */
function minimal(be: Buffer): Buffer {
  const i = be.findIndex((b) => b !== 0);
  return i < 0 ? be.subarray(be.length - 1) : be.subarray(i);
}
