/**
 * Encoding and decoding of the fixed-size variable header bodies (../shared/specs/igvm.md §2.5–§2.9). Decoding here
 * only splits bytes into fields; the rules (reserved fields, alignment, masks) are the parser's, so the writer can
 * reuse the encoders for any model value.
 */
import { SevError } from '../errors';
import { type IgvmPublicKey, type IgvmSignature, type IgvmSnpIdBlock } from './layout';

export const SNP_ID_BLOCK_BODY_SIZE = 696;
const SIG_SIZE = 144;
const KEY_SIZE = 152;

function readSignature(b: Buffer, off: number): IgvmSignature {
  return { rComp: Buffer.from(b.subarray(off, off + 72)), sComp: Buffer.from(b.subarray(off + 72, off + 144)) };
}
function readKey(b: Buffer, off: number): IgvmPublicKey {
  return {
    curve: b.readUInt32LE(off),
    reserved: b.readUInt32LE(off + 4),
    qx: Buffer.from(b.subarray(off + 8, off + 80)),
    qy: Buffer.from(b.subarray(off + 80, off + 152)),
  };
}
function writeSignature(b: Buffer, off: number, s: IgvmSignature): void {
  b.set(fixed(s.rComp, 72, 'r_comp'), off);
  b.set(fixed(s.sComp, 72, 's_comp'), off + 72);
}
function writeKey(b: Buffer, off: number, k: IgvmPublicKey): void {
  b.writeUInt32LE(k.curve >>> 0, off);
  b.writeUInt32LE(k.reserved >>> 0, off + 4);
  b.set(fixed(k.qx, 72, 'qx'), off + 8);
  b.set(fixed(k.qy, 72, 'qy'), off + 80);
}
function fixed(b: Uint8Array, n: number, what: string): Uint8Array {
  if (b.length !== n) throw new SevError('ERR_SEV_LENGTH', `SNP ID block ${what} must be ${n} bytes, got ${b.length}`);
  return b;
}

/** IGVM_VHS_SNP_ID_BLOCK (§2.9), 696 bytes. */
export function decodeSnpIdBlock(b: Buffer): IgvmSnpIdBlock {
  return {
    compatibilityMask: b.readUInt32LE(0),
    authorKeyEnabled: b[4]!,
    reserved: Buffer.from(b.subarray(5, 8)),
    ld: Buffer.from(b.subarray(8, 56)),
    familyId: Buffer.from(b.subarray(56, 72)),
    imageId: Buffer.from(b.subarray(72, 88)),
    version: b.readUInt32LE(88),
    guestSvn: b.readUInt32LE(92),
    idKeyAlgorithm: b.readUInt32LE(96),
    authorKeyAlgorithm: b.readUInt32LE(100),
    idKeySignature: readSignature(b, 104),
    idPublicKey: readKey(b, 104 + SIG_SIZE),
    authorKeySignature: readSignature(b, 104 + SIG_SIZE + KEY_SIZE),
    authorPublicKey: readKey(b, 104 + 2 * SIG_SIZE + KEY_SIZE),
  };
}

export function encodeSnpIdBlock(d: IgvmSnpIdBlock): Buffer {
  const b = Buffer.alloc(SNP_ID_BLOCK_BODY_SIZE);
  b.writeUInt32LE(d.compatibilityMask >>> 0, 0);
  b[4] = d.authorKeyEnabled;
  b.set(fixed(d.reserved, 3, 'reserved'), 5);
  b.set(fixed(d.ld, 48, 'ld'), 8);
  b.set(fixed(d.familyId, 16, 'family_id'), 56);
  b.set(fixed(d.imageId, 16, 'image_id'), 72);
  b.writeUInt32LE(d.version >>> 0, 88);
  b.writeUInt32LE(d.guestSvn >>> 0, 92);
  b.writeUInt32LE(d.idKeyAlgorithm >>> 0, 96);
  b.writeUInt32LE(d.authorKeyAlgorithm >>> 0, 100);
  writeSignature(b, 104, d.idKeySignature);
  writeKey(b, 104 + SIG_SIZE, d.idPublicKey);
  writeSignature(b, 104 + SIG_SIZE + KEY_SIZE, d.authorKeySignature);
  writeKey(b, 104 + 2 * SIG_SIZE + KEY_SIZE, d.authorPublicKey);
  return b;
}
