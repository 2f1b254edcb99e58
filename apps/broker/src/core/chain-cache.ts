import { createHash } from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import { cekId, decodeChain, dhPublicKey, isSevError, verifyChain, type ExtraRoot, type SevCertificate, type SevError } from '@kb/sev';

export interface TrustedPlatform {
  pdh: SevCertificate;
  /** the PDH as a key, checked to be a P-384 ECDH key once per chain */
  pdhKey: KeyObject;
  chipId: string;
  generation: string;
  trustedBy: 'amd' | 'extra';
  chainSha256: Buffer;
  /** the raw OCA certificate (the attestation service matches it against a VM's cloud-certs) */
  oca: Buffer;
}

/** A refused chain: malformed (not a PDH‖PEK‖OCA‖CEK‖ASK‖ARK layout at all) or well-formed but not trusted. */
export class ChainRefused extends Error {
  constructor(
    readonly malformed: boolean,
    readonly reason: SevError,
  ) {
    super(reason.message);
  }
}

/**
 * Chain verification results by chain hash. Hosts send the same chain for every launch; verifying it costs three
 * RSA and four ECDSA checks, which would dominate GetBundle. Only the verdict on public certificates is cached —
 * never per-launch keys. Refusals are cached too, so a host repeating a bad chain costs nothing extra.
 */
export class ChainCache {
  private readonly entries = new Map<string, TrustedPlatform | ChainRefused>();

  constructor(
    private readonly extraRoots: readonly ExtraRoot[],
    private readonly capacity = 1024,
  ) {}

  verify(chain: Buffer): TrustedPlatform {
    const chainSha256 = createHash('sha256').update(chain).digest();
    const key = chainSha256.toString('hex');
    let hit = this.entries.get(key);
    if (hit) {
      this.entries.delete(key); // refresh recency
    } else {
      hit = this.check(chain, chainSha256);
      if (this.entries.size >= this.capacity) this.entries.delete(this.entries.keys().next().value as string);
    }
    this.entries.set(key, hit);
    if (hit instanceof ChainRefused) throw hit;
    return hit;
  }

  private check(chain: Buffer, chainSha256: Buffer): TrustedPlatform | ChainRefused {
    try {
      decodeChain(chain); // layout errors (sizes, order, usages) are the caller's input, not a trust decision
    } catch (e) {
      if (isSevError(e)) return new ChainRefused(true, e);
      throw e;
    }
    try {
      const v = verifyChain(chain, { extraRoots: this.extraRoots });
      return {
        pdh: v.pdh,
        pdhKey: dhPublicKey(v.pdh, 'PDH certificate'),
        chipId: cekId(v.chain),
        generation: v.generation,
        trustedBy: v.trustedBy,
        chainSha256,
        oca: Buffer.from(v.chain.oca.raw),
      };
    } catch (e) {
      if (isSevError(e)) return new ChainRefused(false, e);
      throw e;
    }
  }
}
