import {
  launchDigest,
  launchMeasuredData,
  QEMU_CPU_SIGNATURES,
  type LaunchDigestInput,
  type MeasuredPiece,
  type VcpuSpec,
  type VmmType,
  type VmsaFpu,
} from '@kb/sev';
import { CliError, type Io } from '../cli';
import { fileSize, parseUint, readInput, sha256File, withSev } from './common';
import { Progress } from './progress';

/**
 * One launch configuration (what sev-snp-measure's flags describe) and the digest computation shared by `measure`
 * and `policy from-configs`. All byte-level work is @kb/sev's launchMeasuredData / launchDigest.
 */
export type Mode = 'sev' | 'seves';

export interface LaunchConfig {
  mode: Mode;
  ovmf: string;
  kernel?: string;
  initrd?: string;
  append?: string;
  /** seves only */
  vcpus?: number;
  vcpu?: VcpuSpec;
  vmmType: VmmType;
  fpu: VmsaFpu;
  sevFeatures: number;
}

export const MODES = ['sev', 'seves'] as const;
export const VMM_TYPES: Readonly<Record<string, VmmType>> = { qemu: 'qemu', ec2: 'ec2', gce: 'gce' };
export const FPU_FLAVOURS = ['legacy', 'init2'] as const;
export const VCPU_TYPES = Object.keys(QEMU_CPU_SIGNATURES);

export function parseMode(s: string, what = '--mode'): Mode {
  if ((MODES as readonly string[]).includes(s)) return s as Mode;
  if (s.startsWith('snp')) {
    throw new CliError(`${what} ${s}: SEV-SNP is not supported here (this broker serves SEV and SEV-ES); use sev-snp-measure for SNP digests`, 2);
  }
  throw new CliError(`${what} must be one of ${MODES.join(', ')}, got ${JSON.stringify(s)}`, 2);
}

export function parseVmmType(s: string, what = '--vmm-type'): VmmType {
  const t = VMM_TYPES[s.toLowerCase()];
  if (t === undefined) throw new CliError(`unknown VMM type '${s}' for ${what}: use QEMU, ec2 or gce`, 2);
  return t;
}

export function parseFpu(s: string, what = '--vmsa-fpu'): VmsaFpu {
  if ((FPU_FLAVOURS as readonly string[]).includes(s)) return s as VmsaFpu;
  throw new CliError(`${what} must be legacy (KVM_SEV_ES_INIT: QEMU >= 9.1 default, libvirt, sevctl) or init2 (KVM_SEV_INIT2, current sev-snp-measure), got ${JSON.stringify(s)}`, 2);
}

export function parseVcpuType(s: string, what = '--vcpu-type'): VcpuSpec {
  if (!VCPU_TYPES.includes(s)) throw new CliError(`${what}: unknown vCPU type '${s}'; known: ${VCPU_TYPES.join(', ')}`, 2);
  return { type: s };
}

/**
 * The guest CPU from sev-snp-measure's three forms. Exactly one form may be given: sev-snp-measure silently lets the
 * family triplet win over --vcpu-sig and --vcpu-sig over --vcpu-type, which turns a typo into a wrong digest.
 */
export function vcpuFromFlags(f: { type?: string; sig?: string; family?: string; model?: string; stepping?: string }): VcpuSpec | undefined {
  const triplet = [f.family, f.model, f.stepping];
  const hasTriplet = triplet.some((x) => x !== undefined);
  const forms = [f.type !== undefined, f.sig !== undefined, hasTriplet].filter(Boolean).length;
  if (forms > 1) throw new CliError('give the vCPU as exactly one of --vcpu-type, --vcpu-sig, or --vcpu-family/--vcpu-model/--vcpu-stepping', 2);
  if (f.type !== undefined) return parseVcpuType(f.type);
  if (f.sig !== undefined) return { sig: parseUint(f.sig, '--vcpu-sig', 0xffffffff) };
  if (hasTriplet) {
    if (triplet.some((x) => x === undefined)) throw new CliError('--vcpu-family, --vcpu-model and --vcpu-stepping go together', 2);
    return {
      family: parseUint(f.family!, '--vcpu-family', 0xf + 0xff),
      model: parseUint(f.model!, '--vcpu-model', 0xff),
      stepping: parseUint(f.stepping!, '--vcpu-stepping', 0xf),
    };
  }
  return undefined;
}

export function describeVcpu(v: VcpuSpec | undefined): string {
  if (v === undefined) return '-';
  if ('type' in v) return v.type;
  if ('sig' in v) return `sig 0x${v.sig.toString(16)}`;
  return `family ${v.family} model ${v.model} stepping ${v.stepping}`;
}

/** Checks a configuration the way sev-snp-measure's CLI does (exit 2), before any file is read. */
export function checkConfig(c: LaunchConfig, where = ''): void {
  const at = where ? `${where}: ` : '';
  if (c.initrd !== undefined && c.kernel === undefined) throw new CliError(`${at}--kernel required when using --initrd`, 2);
  if (c.append && c.kernel === undefined) throw new CliError(`${at}--kernel required when using --append`, 2);
  if (c.mode === 'seves') {
    if (c.vcpus === undefined) throw new CliError(`${at}missing --vcpus N in guest mode 'seves'`, 2);
    if (c.vmmType === 'qemu' && c.vcpu === undefined) {
      throw new CliError(`${at}missing --vcpu-type or --vcpu-sig or --vcpu-family in guest mode 'seves'`, 2);
    }
  }
}

/** Inputs read once per path: `policy from-configs` computes many digests over the same files. */
export class InputCache {
  private readonly files = new Map<string, Buffer>();
  private readonly hashes = new Map<string, Buffer>();

  constructor(readonly io: Io) {}

  firmware(path: string): Buffer {
    let b = this.files.get(path);
    if (!b) this.files.set(path, (b = readInput(this.io, path, 'the firmware')));
    return b;
  }

  sha256(path: string, what: string, onBytes?: (n: number) => void): Buffer {
    let h = this.hashes.get(path);
    if (!h) this.hashes.set(path, (h = sha256File(this.io, path, what, onBytes).sha256));
    return h;
  }
}

export interface ComputedLaunch {
  digest: Buffer;
  pieces: MeasuredPiece[];
}

export function digestInput(c: LaunchConfig, cache: InputCache, progress?: Progress): LaunchDigestInput {
  let done = 0;
  const phase = (n: number) => progress?.update(done + n);
  const firmware = cache.firmware(c.ovmf);
  let kernelHashes: LaunchDigestInput['kernelHashes'];
  if (c.kernel !== undefined) {
    const kernel = { sha256: cache.sha256(c.kernel, 'the kernel', phase) };
    done += fileSize(cache.io, c.kernel);
    const initrd = c.initrd === undefined ? undefined : { sha256: cache.sha256(c.initrd, 'the initrd', phase) };
    if (c.initrd !== undefined) done += fileSize(cache.io, c.initrd);
    kernelHashes = { kernel, initrd, cmdline: c.append ?? '' };
  }
  const onProgress = progress ? (n: number) => progress.update(done + n) : undefined;
  if (c.mode === 'sev') return { mode: 'sev', firmware, kernelHashes, onProgress };
  return {
    mode: 'seves',
    firmware,
    kernelHashes,
    onProgress,
    vcpus: c.vcpus!,
    vcpu: c.vmmType === 'qemu' ? c.vcpu : undefined,
    vmmType: c.vmmType,
    fpu: c.fpu,
    sevFeatures: c.sevFeatures,
  };
}

/** The measured pieces and the digest; firmware problems (no hashes table, no reset block...) exit 1. */
export function computeLaunch(c: LaunchConfig, cache: InputCache, progress?: Progress): ComputedLaunch {
  return withSev(() => {
    const input = digestInput(c, cache, progress);
    const pieces = launchMeasuredData(input);
    return { pieces, digest: launchDigest(input) };
  });
}

/** Total bytes hashed for a configuration, for the progress denominator. */
export function totalBytes(io: Io, c: LaunchConfig, vmsaPages: number): number {
  const files = [c.ovmf, c.kernel, c.initrd].filter((p): p is string => p !== undefined).reduce((n, p) => n + fileSize(io, p), 0);
  return files + (c.kernel !== undefined ? 176 : 0) + vmsaPages * 4096;
}
