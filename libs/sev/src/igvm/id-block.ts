/**
 * The SNP_ID_BLOCK directive and the SNP_LAUNCH_FINISH blobs it stands for (../shared/specs/igvm.md §2.9, §4.5,
 * §4.6): `igvmmeasure sign` writes the directive from a signed ID block; QEMU's loader turns it back into ID_BLOCK
 * and ID_AUTH_INFO. Both directions live here so the simulated host and the signer cannot drift apart.
 */
import { encodeIdAuth, fromLeComponent, leComponent, SNP_CURVE_P384, SNP_PUBLIC_KEY_SIZE, SNP_SIGNATURE_SIZE } from '../snp/id-block-auth';
import { type CreatedIdBlock, encodeIdBlock, decodeIdBlock } from '../snp/id-block';
import { type IgvmPublicKey, type IgvmSignature, type IgvmSnpIdBlock } from './layout';

const ZERO_SIG: IgvmSignature = { rComp: Buffer.alloc(72), sComp: Buffer.alloc(72) };
const ZERO_KEY: IgvmPublicKey = { curve: 0, reserved: 0, qx: Buffer.alloc(72), qy: Buffer.alloc(72) };

function igvmKey(snpKey: Buffer): IgvmPublicKey {
  return { curve: snpKey.readUInt32LE(0), reserved: 0, qx: Buffer.from(snpKey.subarray(4, 76)), qy: Buffer.from(snpKey.subarray(76, 148)) };
}

/** The directive `igvmmeasure sign` appends (§4.5): family/image IDs and svn as in the ID block, both algorithms 1. */
export function idBlockDirective(mask: number, signed: CreatedIdBlock): IgvmSnpIdBlock {
  const block = decodeIdBlock(signed.idBlock);
  const author = signed.authorPublicKey && signed.idKeySignature;
  return {
    compatibilityMask: mask,
    authorKeyEnabled: author ? 1 : 0,
    reserved: Buffer.alloc(3),
    ld: block.ld,
    familyId: block.familyId,
    imageId: block.imageId,
    version: block.version,
    guestSvn: block.guestSvn,
    idKeyAlgorithm: 1,
    authorKeyAlgorithm: 1, // 1 even without an author key (§2.9)
    idKeySignature: { rComp: leComponent(signed.idBlockSignature.r), sComp: leComponent(signed.idBlockSignature.s) },
    idPublicKey: igvmKey(signed.idPublicKey),
    authorKeySignature: signed.idKeySignature ? { rComp: leComponent(signed.idKeySignature.r), sComp: leComponent(signed.idKeySignature.s) } : ZERO_SIG,
    authorPublicKey: signed.authorPublicKey ? igvmKey(signed.authorPublicKey) : ZERO_KEY,
  };
}

function snpSignature(s: IgvmSignature): Buffer {
  const b = Buffer.alloc(SNP_SIGNATURE_SIZE);
  s.rComp.copy(b, 0);
  s.sComp.copy(b, 72);
  return b;
}
function snpKey(k: IgvmPublicKey): Buffer {
  const b = Buffer.alloc(SNP_PUBLIC_KEY_SIZE);
  b.writeUInt32LE(k.curve >>> 0, 0); // the IGVM-only reserved word is dropped
  k.qx.copy(b, 4);
  k.qy.copy(b, 76);
  return b;
}

export interface IdBlockLaunchBlobs {
  idBlock: Buffer;
  idAuth: Buffer;
  /** AUTHOR_KEY_EN: QEMU sets it when the author key's first byte (its curve) is non-zero, ignoring author_key_enabled */
  authorKeyEnabled: boolean;
}

/** What QEMU passes to SNP_LAUNCH_FINISH for a directive (§4.6): VERSION forced to 1, POLICY from GUEST_POLICY. */
export function idBlockLaunchBlobs(d: IgvmSnpIdBlock, policy: bigint): IdBlockLaunchBlobs {
  return {
    idBlock: encodeIdBlock({ ld: d.ld, familyId: d.familyId, imageId: d.imageId, version: 1, guestSvn: d.guestSvn, policy }),
    idAuth: encodeIdAuth({
      idKeyAlgo: d.idKeyAlgorithm,
      authKeyAlgo: d.authorKeyAlgorithm,
      idBlockSignature: snpSignature(d.idKeySignature),
      idKey: snpKey(d.idPublicKey),
      idKeySignature: snpSignature(d.authorKeySignature),
      authorKey: snpKey(d.authorPublicKey),
    }),
    authorKeyEnabled: (d.authorPublicKey.curve & 0xff) !== 0,
  };
}

/** The signature components of a directive as big-endian integers (for reports and tests). */
export function directiveSignatures(d: IgvmSnpIdBlock): { id: { r: bigint; s: bigint }; author?: { r: bigint; s: bigint } } {
  const sig = (s: IgvmSignature) => ({ r: fromLeComponent(s.rComp), s: fromLeComponent(s.sComp) });
  return { id: sig(d.idKeySignature), ...(d.authorPublicKey.curve === SNP_CURVE_P384 ? { author: sig(d.authorKeySignature) } : {}) };
}
