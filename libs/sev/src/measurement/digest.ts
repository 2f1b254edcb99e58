/**
 * Expected launch digest (GCTX.LD) of SEV and SEV-ES guests: SHA-256 over the data QEMU hands to LAUNCH_UPDATE_DATA /
 * LAUNCH_UPDATE_VMSA, in launch order (../shared/specs/launch-digest.md §2.1, §3):
 *
 *   SEV:    LD = SHA-256(firmware ‖ [PaddedSevHashTable])
 *   SEV-ES: LD = SHA-256(firmware ‖ [PaddedSevHashTable] ‖ VMSA_bsp ‖ VMSA_ap × (vcpus − 1))
 *
 * GPAs do not enter these digests, so the inputs are a list of byte strings (`launchMeasuredData`) that tools can
 * dump. SNP digests (../snp/launch-digest.ts) are a SHA-384 PAGE_INFO chain over (GPA, page type, contents); they
 * reuse ovmf.ts, sev-hashes.ts and vmsa.ts but not the concatenation below.
 */
import { createHash } from 'node:crypto';
import { SevError } from '../errors';
import { asBuffer } from '../util/bytes';
import { parseOvmfFooterTable, sevEsResetEip, sevHashTableArea } from './ovmf';
import { buildPaddedSevHashTable, type KernelHashesInput } from './sev-hashes';
import { resolveVcpuSignature, type VcpuSpec } from './vcpu-types';
import { buildVmsaPair, vmsaPageSequence, type VmmType, type VmsaFpu } from './vmsa';

export type LaunchMode = 'sev' | 'seves';

export type ProgressCallback = (doneBytes: number, totalBytes: number) => void;

export interface SevLaunchDigestInput {
  /** The firmware CODE image exactly as QEMU loads it (pflash unit 0 or `-bios`); VARS is never measured. */
  firmware: Uint8Array;
  /** Present when the guest boots with `-kernel` and `kernel-hashes=on`. */
  kernelHashes?: KernelHashesInput;
  /** Called as the data is hashed; firmware images can be tens of MiB. */
  onProgress?: ProgressCallback;
}

export interface SevEsLaunchDigestInput extends SevLaunchDigestInput {
  vcpus: number;
  /** The guest CPU model; required to build QEMU VMSAs, ignored for EC2 and GCE. */
  vcpu?: VcpuSpec;
  /** Default 'qemu'. */
  vmmType?: VmmType;
  /** Default 'legacy' (KVM_SEV_ES_INIT, QEMU >= 9.1 default); 'init2' matches current sev-snp-measure `seves`. */
  fpu?: VmsaFpu;
  /** VMSA sev_features, default 0 (e.g. 0x20 DebugSwap on Linux 6.6/6.7 hosts with `kvm_amd.debug_swap=1`). */
  sevFeatures?: bigint | number;
  /**
   * VMSA pages supplied by the user (libvirt `--vmsa-cpu0/1`, `sevctl vmsa build`) instead of built ones; each exactly
   * 4096 bytes, `ap` needed when vcpus > 1. Exclusive with vcpu, vmmType, fpu and sevFeatures.
   */
  vmsas?: { bsp: Uint8Array; ap?: Uint8Array };
}

export type LaunchDigestInput = ({ mode: 'sev' } & SevLaunchDigestInput) | ({ mode: 'seves' } & SevEsLaunchDigestInput);

export type MeasuredPiece = { kind: 'firmware'; data: Buffer } | { kind: 'kernel-hashes'; data: Buffer } | { kind: 'vmsa'; vcpu: number; data: Buffer };

const CHUNK = 1 << 20;

function sevPieces(input: SevLaunchDigestInput): MeasuredPiece[] {
  if (!(input.firmware instanceof Uint8Array)) throw new SevError('ERR_SEV_ARGUMENT', 'firmware must be bytes');
  const firmware = asBuffer(input.firmware);
  const pieces: MeasuredPiece[] = [{ kind: 'firmware', data: firmware }];
  if (input.kernelHashes !== undefined) {
    // Throws when QEMU would refuse the kernel: no SEV_HASH_TABLE_RV entry, base 0 or an area too small.
    sevHashTableArea(parseOvmfFooterTable(firmware));
    pieces.push({ kind: 'kernel-hashes', data: buildPaddedSevHashTable(input.kernelHashes) });
  }
  return pieces;
}

function sevEsVmsaPages(input: SevEsLaunchDigestInput): Buffer[] {
  if (input.vmsas !== undefined) {
    const conflicting = (['vcpu', 'vmmType', 'fpu', 'sevFeatures'] as const).filter((k) => input[k] !== undefined);
    if (conflicting.length > 0) {
      throw new SevError('ERR_SEV_ARGUMENT', `user-supplied VMSAs exclude ${conflicting.join(', ')}`);
    }
    return vmsaPageSequence(input.vmsas, input.vcpus);
  }
  const vmmType = input.vmmType ?? 'qemu';
  let vcpuSig: number | undefined;
  if (vmmType === 'qemu') {
    if (input.vcpu === undefined) {
      throw new SevError('ERR_SEV_ARGUMENT', 'SEV-ES with QEMU needs the guest vCPU model (sig, type or family/model/stepping)');
    }
    vcpuSig = resolveVcpuSignature(input.vcpu);
  }
  // Needed even for one vCPU, as in sev-snp-measure: a firmware without the block cannot start SEV-ES APs at all.
  const apResetEip = sevEsResetEip(parseOvmfFooterTable(input.firmware));
  const pair = buildVmsaPair({
    apResetEip,
    vmmType,
    vcpuSig,
    sevFeatures: input.sevFeatures ?? 0,
    fpu: input.fpu ?? 'legacy',
  });
  return vmsaPageSequence(pair, input.vcpus);
}

/** The byte strings the launch digest covers, in order: for dumps and for comparing against another tool's pieces. */
export function launchMeasuredData(input: LaunchDigestInput): MeasuredPiece[] {
  switch (input.mode) {
    case 'sev':
      return sevPieces(input);
    case 'seves': {
      const pieces = sevPieces(input);
      sevEsVmsaPages(input).forEach((data, vcpu) => pieces.push({ kind: 'vmsa', vcpu, data }));
      return pieces;
    }
    default: {
      const mode: unknown = (input as { mode: unknown }).mode;
      throw new SevError('ERR_SEV_ARGUMENT', `unknown launch mode ${JSON.stringify(mode)}`);
    }
  }
}

function sha256Pieces(pieces: readonly MeasuredPiece[], onProgress?: ProgressCallback): Buffer {
  const total = pieces.reduce((n, p) => n + p.data.length, 0);
  const hash = createHash('sha256');
  let done = 0;
  for (const { data } of pieces) {
    for (let o = 0; o < data.length; o += CHUNK) {
      const chunk = data.subarray(o, o + CHUNK);
      hash.update(chunk);
      done += chunk.length;
      onProgress?.(done, total);
    }
  }
  return hash.digest();
}

/** 32-byte digest for 'sev' and 'seves' (SNP: snpLaunchDigest). */
export function launchDigest(input: LaunchDigestInput): Buffer {
  return sha256Pieces(launchMeasuredData(input), input.onProgress);
}

export function sevLaunchDigest(input: SevLaunchDigestInput): Buffer {
  return launchDigest({ ...input, mode: 'sev' });
}

export function sevEsLaunchDigest(input: SevEsLaunchDigestInput): Buffer {
  return launchDigest({ ...input, mode: 'seves' });
}
