/**
 * SNP ID blocks (../shared/specs/igvm.md §4.2, §5): the 96-byte ID_BLOCK an owner signs to pin a launch digest and
 * policy, with its ID_AUTH_INFO (id-block-auth.ts), as sev-snp-measure's `snp-create-id-block` and `igvmmeasure
 * sign` build them; and the checks SNP_LAUNCH_FINISH applies to them (signatures, key digests, the digest itself).
 */
import { createPrivateKey, type KeyObject } from 'node:crypto';
import { SevError } from '../errors';
import { constantTimeEqual } from '../util/bytes';
import {
  decodeIdAuth,
  decodeSnpSignature,
  encodeIdAuth,
  encodeSnpSignature,
  SNP_ALGO_ECDSA_P384_SHA384,
  SNP_PUBLIC_KEY_SIZE,
  SNP_SIGNATURE_SIZE,
  snpKeyDigest,
  snpPublicKey,
  snpPublicKeyPoint,
} from './id-block-auth';
import { signP384Deterministic, verifyP384, type P384Signature } from './id-block-ecdsa';

export const ID_BLOCK_SIZE = 96;
/** sev-snp-measure's fixed policy (SMT allowed + the must-be-one bit 17), also what the IGVM vectors carry. */
export const SNP_DEFAULT_ID_POLICY = 0x30000n;

export interface IdBlock {
  /** 48 bytes */
  ld: Buffer;
  /** 16 bytes */
  familyId: Buffer;
  /** 16 bytes */
  imageId: Buffer;
  version: number;
  guestSvn: number;
  policy: bigint;
}

/** ID_BLOCK: LD[48] ‖ FAMILY_ID[16] ‖ IMAGE_ID[16] ‖ u32 VERSION ‖ u32 GUEST_SVN ‖ u64 POLICY. */
export function encodeIdBlock(i: IdBlock): Buffer {
  const sized = (b: Buffer, n: number, what: string) => {
    if (b.length !== n) throw new SevError('ERR_SEV_LENGTH', `ID block ${what} must be ${n} bytes, got ${b.length}`);
    return b;
  };
  if (i.policy < 0n || i.policy > 0xffff_ffff_ffff_ffffn) throw new SevError('ERR_SEV_RANGE', `policy ${i.policy} is not a u64`);
  const b = Buffer.alloc(ID_BLOCK_SIZE);
  sized(i.ld, 48, 'LD').copy(b, 0);
  sized(i.familyId, 16, 'FAMILY_ID').copy(b, 0x30);
  sized(i.imageId, 16, 'IMAGE_ID').copy(b, 0x40);
  b.writeUInt32LE(i.version >>> 0, 0x50);
  b.writeUInt32LE(i.guestSvn >>> 0, 0x54);
  b.writeBigUInt64LE(i.policy, 0x58);
  return b;
}

export function decodeIdBlock(b: Uint8Array): IdBlock {
  if (b.length !== ID_BLOCK_SIZE) throw new SevError('ERR_SEV_LENGTH', `an ID block is ${ID_BLOCK_SIZE} bytes, got ${b.length}`);
  const buf = Buffer.from(b);
  return {
    ld: Buffer.from(buf.subarray(0, 48)),
    familyId: Buffer.from(buf.subarray(0x30, 0x40)),
    imageId: Buffer.from(buf.subarray(0x40, 0x50)),
    version: buf.readUInt32LE(0x50),
    guestSvn: buf.readUInt32LE(0x54),
    policy: buf.readBigUInt64LE(0x58),
  };
}

/**
 * Loads an SNP ID or author private key from PEM (SEC1 `EC PRIVATE KEY` as openssl ecparam writes, or PKCS#8),
 * refusing anything that is not an unencrypted P-384 EC key with sev-snp-measure's messages.
 */
export function loadSnpSigningKey(pem: string | Buffer, what = 'key'): KeyObject {
  let key: KeyObject;
  try {
    key = createPrivateKey({ key: pem, format: 'pem' });
  } catch (e) {
    const err = new SevError('ERR_SEV_KEY', `the ${what} is not a readable unencrypted PEM private key: ${(e as Error).message}`);
    (err as { cause?: unknown }).cause = e;
    throw err;
  }
  if (key.asymmetricKeyType !== 'ec') throw new SevError('ERR_SEV_KEY', `The provided PEM file does not contain an EC private key (${what}).`);
  if (key.asymmetricKeyDetails?.namedCurve !== 'secp384r1')
    throw new SevError('ERR_SEV_KEY', `SNP only supports the EC curve P-384 (${what} is on ${key.asymmetricKeyDetails?.namedCurve})`);
  return key;
}

export interface CreateIdBlockInput {
  ld: Uint8Array;
  policy?: bigint;
  familyId?: Buffer;
  imageId?: Buffer;
  version?: number;
  guestSvn?: number;
  idKey: KeyObject;
  authorKey?: KeyObject;
}

export interface CreatedIdBlock {
  idBlock: Buffer;
  idAuth: Buffer;
  idKeyDigest: Buffer;
  authorKeyDigest?: Buffer;
  idBlockSignature: P384Signature;
  idKeySignature?: P384Signature;
  /** the 0x404-byte public key structures */
  idPublicKey: Buffer;
  authorPublicKey?: Buffer;
}

/**
 * Builds and signs an ID block: the id key signs the 96-byte ID_BLOCK, the author key (optional) signs the id key's
 * 0x404-byte structure. Signatures are deterministic (RFC 6979), so the same inputs always give the same bytes.
 */
export function createIdBlock(input: CreateIdBlockInput): CreatedIdBlock {
  if (input.ld.length !== 48) throw new SevError('ERR_SEV_LENGTH', `the launch digest must be 48 bytes, got ${input.ld.length}`);
  const idBlock = encodeIdBlock({
    ld: Buffer.from(input.ld),
    familyId: input.familyId ?? Buffer.alloc(16),
    imageId: input.imageId ?? Buffer.alloc(16),
    version: input.version ?? 1,
    guestSvn: input.guestSvn ?? 0,
    policy: input.policy ?? SNP_DEFAULT_ID_POLICY,
  });
  const idPublicKey = snpPublicKey(input.idKey);
  const idBlockSignature = signP384Deterministic(input.idKey, idBlock);
  let idKeySignature: P384Signature | undefined;
  let authorPublicKey: Buffer | undefined;
  if (input.authorKey) {
    authorPublicKey = snpPublicKey(input.authorKey);
    idKeySignature = signP384Deterministic(input.authorKey, idPublicKey);
  }
  const idAuth = encodeIdAuth({
    idKeyAlgo: SNP_ALGO_ECDSA_P384_SHA384,
    authKeyAlgo: SNP_ALGO_ECDSA_P384_SHA384,
    idBlockSignature: encodeSnpSignature(idBlockSignature),
    idKey: idPublicKey,
    idKeySignature: idKeySignature ? encodeSnpSignature(idKeySignature) : Buffer.alloc(SNP_SIGNATURE_SIZE),
    authorKey: authorPublicKey ?? Buffer.alloc(SNP_PUBLIC_KEY_SIZE),
  });
  return {
    idBlock,
    idAuth,
    idKeyDigest: snpKeyDigest(idPublicKey),
    idBlockSignature,
    idPublicKey,
    ...(authorPublicKey && idKeySignature ? { authorKeyDigest: snpKeyDigest(authorPublicKey), authorPublicKey, idKeySignature } : {}),
  };
}

export interface VerifyIdBlockInput {
  idBlock: Uint8Array;
  idAuth: Uint8Array;
  /** SNP_LAUNCH_FINISH's AUTHOR_KEY_EN; default: the author key structure is present (its curve is non-zero, as QEMU decides) */
  authorKeyEnabled?: boolean;
  /** the launch digest the ID block must carry (the measured or expected one) */
  expectedLd?: Uint8Array;
  /** the guest policy the ID block must carry */
  expectedPolicy?: bigint;
}

export interface VerifiedIdBlock {
  idBlock: IdBlock;
  idKeyDigest: Buffer;
  authorKeyDigest?: Buffer;
}

/**
 * SNP_LAUNCH_FINISH's checks of an ID block, in the firmware's order: algorithms, the id key's signature over the
 * ID block, then (AUTHOR_KEY_EN) the author key's signature over the id key, then the digest and the policy.
 * Failures: ERR_SEV_FORMAT (algorithm, curve), ERR_SEV_SIGNATURE, ERR_SEV_MEASUREMENT (LD), ERR_SEV_POLICY.
 */
export function verifyIdBlock(input: VerifyIdBlockInput): VerifiedIdBlock {
  const idBlock = decodeIdBlock(input.idBlock);
  const auth = decodeIdAuth(input.idAuth);
  if (auth.idKeyAlgo !== SNP_ALGO_ECDSA_P384_SHA384) throw new SevError('ERR_SEV_FORMAT', `ID_KEY_ALGO ${auth.idKeyAlgo} is not ECDSA P-384 with SHA-384 (1)`);
  const idPoint = snpPublicKeyPoint(auth.idKey);
  if (!verifyP384(idPoint, input.idBlock, decodeSnpSignature(auth.idBlockSignature))) {
    throw new SevError('ERR_SEV_SIGNATURE', 'the ID block signature does not verify with the ID key');
  }
  const authorEnabled = input.authorKeyEnabled ?? auth.authorKey[0] !== 0;
  let authorKeyDigest: Buffer | undefined;
  if (authorEnabled) {
    if (auth.authKeyAlgo !== SNP_ALGO_ECDSA_P384_SHA384)
      throw new SevError('ERR_SEV_FORMAT', `AUTH_KEY_ALGO ${auth.authKeyAlgo} is not ECDSA P-384 with SHA-384 (1)`);
    if (!verifyP384(snpPublicKeyPoint(auth.authorKey), auth.idKey, decodeSnpSignature(auth.idKeySignature))) {
      throw new SevError('ERR_SEV_SIGNATURE', 'the ID key signature does not verify with the author key');
    }
    authorKeyDigest = snpKeyDigest(auth.authorKey);
  }
  if (input.expectedLd && !constantTimeEqual(idBlock.ld, input.expectedLd)) {
    throw new SevError(
      'ERR_SEV_MEASUREMENT',
      `the ID block's launch digest ${idBlock.ld.toString('hex')} is not the expected ${Buffer.from(input.expectedLd).toString('hex')}`,
    );
  }
  if (input.expectedPolicy !== undefined && idBlock.policy !== input.expectedPolicy) {
    throw new SevError(
      'ERR_SEV_POLICY',
      `the ID block's policy 0x${idBlock.policy.toString(16)} is not the launch policy 0x${input.expectedPolicy.toString(16)}`,
    );
  }
  return { idBlock, idKeyDigest: snpKeyDigest(auth.idKey), ...(authorKeyDigest ? { authorKeyDigest } : {}) };
}
