import { createHash } from 'node:crypto';
import { cekId, isSevError, verifyChain, type ExtraRoot, type SevCertificate, type SevError } from '@kb/sev';

export interface TrustedPlatform {
  pdh: SevCertificate;
  chipId: string;
  generation: string;
  trustedBy: 'amd' | 'extra';
  chainSha256: Buffer;
}

/**
 * Chain verification results by chain hash. Hosts send the same chain for every launch; verifying it costs three
 * RSA and four ECDSA checks, which would dominate GetBundle. Only the verdict on public certificates is cached —
 * never per-launch keys. Failures are cached too, so a host repeating a bad chain costs nothing extra.
 */
export class ChainCache {
  private readonly entries = new Map<string, TrustedPlatform | SevError>();

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
      try {
        const v = verifyChain(chain, { extraRoots: this.extraRoots });
        hit = { pdh: v.pdh, chipId: cekId(v.chain), generation: v.generation, trustedBy: v.trustedBy, chainSha256 };
      } catch (e) {
        if (!isSevError(e)) throw e;
        hit = e;
      }
      if (this.entries.size >= this.capacity) this.entries.delete(this.entries.keys().next().value as string);
    }
    this.entries.set(key, hit);
    if (hit instanceof Error) throw hit;
    return hit;
  }
}
