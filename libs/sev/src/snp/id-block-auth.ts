/**
 * SNP ID_AUTH_INFO (4096 bytes), its signature and public key formats (../shared/specs/igvm.md §5.3; SNP ABI
 * SNP_LAUNCH_FINISH): integers little-endian, zero-padded to 72 bytes. A key digest (ID_KEY_DIGEST,
 * AUTHOR_KEY_DIGEST of the attestation report) is SHA-384 of the 0x404-byte public key structure.
 */
import { createHash, type KeyObject } from 'node:crypto';
import { SevError } from '../errors';
import { bigFromBytes, bytesFromBig, p384KeyParts, type P384Signature } from './id-block-ecdsa';

export const ID_AUTH_SIZE = 4096;
export const SNP_SIGNATURE_SIZE = 512;
export const SNP_PUBLIC_KEY_SIZE = 0x404;
/** ID_KEY_ALGO / AUTH_KEY_ALGO: ECDSA P-384 with SHA-384. */
export const SNP_ALGO_ECDSA_P384_SHA384 = 1;
/** The public key CURVE field: P-384. */
export const SNP_CURVE_P384 = 2;
const COMP = 72;

const OFF = { idKeyAlgo: 0x000, authKeyAlgo: 0x004, idBlockSig: 0x040, idKey: 0x240, idKeySig: 0x680, authorKey: 0x880 } as const;

/** A little-endian integer zero-padded to 72 bytes (the r/s/qx/qy component format). */
export function leComponent(v: bigint): Buffer {
  return Buffer.concat([bytesFromBig(v).reverse(), Buffer.alloc(COMP - 48)]);
}
export function fromLeComponent(b: Uint8Array): bigint {
  return bigFromBytes(Buffer.from(b).reverse());
}

/** The 512-byte SNP signature: r[72] ‖ s[72] ‖ reserved[368]. */
export function encodeSnpSignature(sig: P384Signature): Buffer {
  const b = Buffer.alloc(SNP_SIGNATURE_SIZE);
  leComponent(sig.r).copy(b, 0);
  leComponent(sig.s).copy(b, COMP);
  return b;
}
export function decodeSnpSignature(b: Uint8Array): P384Signature {
  return { r: fromLeComponent(b.subarray(0, COMP)), s: fromLeComponent(b.subarray(COMP, 2 * COMP)) };
}

/** The 0x404-byte SNP public key structure of a P-384 key (private or public): CURVE ‖ QX ‖ QY ‖ zeros. */
export function snpPublicKey(key: KeyObject): Buffer {
  const { x, y } = p384KeyParts(key);
  const b = Buffer.alloc(SNP_PUBLIC_KEY_SIZE);
  b.writeUInt32LE(SNP_CURVE_P384, 0);
  leComponent(bigFromBytes(x)).copy(b, 4);
  leComponent(bigFromBytes(y)).copy(b, 4 + COMP);
  return b;
}

/** Big-endian affine coordinates from an SNP public key structure; refuses a curve other than P-384. */
export function snpPublicKeyPoint(key: Uint8Array): { x: Buffer; y: Buffer } {
  if (key.length !== SNP_PUBLIC_KEY_SIZE) throw new SevError('ERR_SEV_LENGTH', `an SNP public key is ${SNP_PUBLIC_KEY_SIZE} bytes, got ${key.length}`);
  const curve = Buffer.from(key).readUInt32LE(0);
  if (curve !== SNP_CURVE_P384) throw new SevError('ERR_SEV_FORMAT', `SNP public key curve ${curve} is not P-384 (${SNP_CURVE_P384})`);
  return { x: bytesFromBig(fromLeComponent(key.subarray(4, 4 + COMP))), y: bytesFromBig(fromLeComponent(key.subarray(4 + COMP, 4 + 2 * COMP))) };
}

/** SHA-384 of the 0x404-byte key structure: the report's ID_KEY_DIGEST / AUTHOR_KEY_DIGEST. */
export function snpKeyDigest(key: Uint8Array): Buffer {
  if (key.length !== SNP_PUBLIC_KEY_SIZE) throw new SevError('ERR_SEV_LENGTH', `an SNP public key is ${SNP_PUBLIC_KEY_SIZE} bytes, got ${key.length}`);
  return createHash('sha384').update(key).digest();
}

export interface IdAuthInfo {
  idKeyAlgo: number;
  authKeyAlgo: number;
  /** 512 bytes */
  idBlockSignature: Buffer;
  /** 0x404 bytes */
  idKey: Buffer;
  /** 512 bytes; zero without an author key */
  idKeySignature: Buffer;
  /** 0x404 bytes; zero without an author key */
  authorKey: Buffer;
}

export function encodeIdAuth(a: IdAuthInfo): Buffer {
  const b = Buffer.alloc(ID_AUTH_SIZE);
  b.writeUInt32LE(a.idKeyAlgo >>> 0, OFF.idKeyAlgo);
  b.writeUInt32LE(a.authKeyAlgo >>> 0, OFF.authKeyAlgo);
  const put = (v: Buffer, off: number, size: number, what: string) => {
    if (v.length !== size) throw new SevError('ERR_SEV_LENGTH', `ID_AUTH ${what} must be ${size} bytes, got ${v.length}`);
    v.copy(b, off);
  };
  put(a.idBlockSignature, OFF.idBlockSig, SNP_SIGNATURE_SIZE, 'ID block signature');
  put(a.idKey, OFF.idKey, SNP_PUBLIC_KEY_SIZE, 'ID key');
  put(a.idKeySignature, OFF.idKeySig, SNP_SIGNATURE_SIZE, 'ID key signature');
  put(a.authorKey, OFF.authorKey, SNP_PUBLIC_KEY_SIZE, 'author key');
  return b;
}

export function decodeIdAuth(b: Uint8Array): IdAuthInfo {
  if (b.length !== ID_AUTH_SIZE) throw new SevError('ERR_SEV_LENGTH', `ID_AUTH_INFO is ${ID_AUTH_SIZE} bytes, got ${b.length}`);
  const buf = Buffer.from(b);
  const slice = (off: number, size: number) => Buffer.from(buf.subarray(off, off + size));
  return {
    idKeyAlgo: buf.readUInt32LE(OFF.idKeyAlgo),
    authKeyAlgo: buf.readUInt32LE(OFF.authKeyAlgo),
    idBlockSignature: slice(OFF.idBlockSig, SNP_SIGNATURE_SIZE),
    idKey: slice(OFF.idKey, SNP_PUBLIC_KEY_SIZE),
    idKeySignature: slice(OFF.idKeySig, SNP_SIGNATURE_SIZE),
    authorKey: slice(OFF.authorKey, SNP_PUBLIC_KEY_SIZE),
  };
}
