/**
 * The launch digest the broker expects for a registered VM (issue #15): GCTX.LD = SHA-256(firmware ‖ kernel-hashes
 * table ‖ VMSAs), computed with libs/sev (../shared/specs/launch-digest.md §2.1, §3) from
 *   - the firmware image the host says it loaded, looked up by SHA-256 in the catalogue (the owner must have listed
 *     that hash; the bytes are needed, a hash alone cannot be extended);
 *   - the kernel-hashes table built from the registered kernel/initrd/cmdline hashes (direct kernel boot);
 *   - for SEV-ES, `cpu-count` VMSAs carrying the vCPU signature the host claimed at /launch, if the owner allows it.
 * The host's claims only choose which digest to compute; the measurement (an HMAC under the session's TIK) proves it.
 *
 * Every input is public, so digests are cached by their inputs: a VM relaunched on the same firmware costs a map
 * lookup, not a read of the image from the database and a hash of it. A firmware deleted from the catalogue only
 * stops new computations; a digest computed from it proves the same image.
 */
import { createHash } from 'node:crypto';
import { isSevError, launchDigest, PolicyFlag } from '@kb/sev';
import { denied } from '../errors';
import type { Registration } from './registration';

export interface DigestInputs {
  reg: Registration;
  firmwareSha256: string;
  /** the catalogue's image for firmwareSha256, undefined if it has none: read only when the digest is not cached */
  firmware: () => Promise<Buffer | undefined>;
  /** the vCPU signature claimed at /launch (SEV-ES), or null */
  cpuSignature: number | null;
}

const CACHE_SIZE = 256;

export class DigestCache {
  private readonly entries = new Map<string, Buffer>();

  /** Computed digest(s) plus the registration's explicit `launch-digests`; a refusal if there is nothing to prove. */
  async expected(i: DigestInputs): Promise<Buffer[]> {
    const explicit = (i.reg.launchDigests ?? []).map((h) => Buffer.from(h, 'hex'));
    const { reg, firmwareSha256, cpuSignature } = i;
    const es = (reg.policy & PolicyFlag.ES) !== 0;
    const kh = reg.kernelHashes;
    const key = [
      firmwareSha256,
      es ? 'es' : 'sev',
      kh ? `${kh.kernel}/${kh.initrd ?? ''}/${kh.cmdline ?? ''}` : '-',
      es ? `${reg.cpuCount}/${cpuSignature}/${reg.vmsaFpu ?? 'legacy'}` : '',
    ].join('|');
    const hit = this.entries.get(key);
    if (hit) {
      this.entries.delete(key);
      this.entries.set(key, hit);
      return [hit, ...explicit];
    }
    const firmware = await i.firmware();
    if (!firmware) {
      if (explicit.length > 0) return explicit;
      throw denied(`firmware ${firmwareSha256} is not in the firmware catalogue (kbctl firmware add), and the registration lists no launch-digests`);
    }
    return [this.computed(key, reg, firmware, cpuSignature), ...explicit];
  }

  private computed(key: string, reg: Registration, firmware: Buffer, cpuSignature: number | null): Buffer {
    const es = (reg.policy & PolicyFlag.ES) !== 0;
    const kh = reg.kernelHashes;
    const kernelHashes = kh && {
      kernel: { sha256: Buffer.from(kh.kernel, 'hex') },
      // QEMU hashes an empty initrd and the lone NUL of an empty command line when they are absent
      initrd: kh.initrd ? { sha256: Buffer.from(kh.initrd, 'hex') } : new Uint8Array(0),
      cmdline: kh.cmdline ? { sha256: Buffer.from(kh.cmdline, 'hex') } : '',
    };
    let digest: Buffer;
    try {
      digest = es
        ? launchDigest({ mode: 'seves', firmware, kernelHashes, vcpus: reg.cpuCount, vcpu: { sig: cpuSignature ?? 0 }, fpu: reg.vmsaFpu ?? 'legacy' })
        : launchDigest({ mode: 'sev', firmware, kernelHashes });
    } catch (e) {
      // e.g. a firmware without the SEV hash table for a kernel-hashes registration: that launch cannot be measured
      if (isSevError(e)) throw denied(`cannot compute the expected launch digest: ${e.message}`);
      throw e;
    }
    if (this.entries.size >= CACHE_SIZE) this.entries.delete(this.entries.keys().next().value as string);
    this.entries.set(key, digest);
    return digest;
  }
}

export function sha256Hex(b: Uint8Array): string {
  return createHash('sha256').update(b).digest('hex');
}
