import {
  launchDigest,
  launchMeasuredData,
  QEMU_CPU_SIGNATURES,
  snpLaunchDigest,
  snpSvsmLaunchDigest,
  snpSvsmVmsaPages,
  snpVmsaPages,
  type LaunchDigestInput,
  type SnpLaunchDigestInput,
  type SnpSvsmLaunchDigestInput,
  type VcpuSpec,
  type VmmType,
  type VmsaFpu,
} from '@kb/sev';
import { CliError, type Io } from '../cli';
import { fileSize, parseUint, readInput, sha256File, withSev } from './common';
import { Progress } from './progress';

/**
 * One launch configuration (what sev-snp-measure's flags describe) and the digest computation shared by `measure`
 * and `policy from-configs`. All byte-level work is @kb/sev's (launchDigest for sev/seves, snpLaunchDigest and
 * snpSvsmLaunchDigest for the SNP modes).
 */
export type Mode = 'sev' | 'seves' | 'snp' | 'snp:svsm';

export interface LaunchConfig {
  mode: Mode;
  ovmf: string;
  kernel?: string;
  initrd?: string;
  append?: string;
  /** seves and the SNP modes */
  vcpus?: number;
  vcpu?: VcpuSpec;
  vmmType: VmmType;
  fpu: VmsaFpu;
  /** seves VMSA sev_features */
  sevFeatures: number;
  /** snp VMSA sev_features (--guest-features, default 0x1) */
  guestFeatures?: number;
  /** snp: --snp-ovmf-hash, 48 bytes */
  snpOvmfHash?: Buffer;
  /** snp:svsm: the SVSM image and the OVMF_VARS size */
  svsm?: string;
  varsSize?: number;
}

/** `snp:ovmf-hash` is not a launch: measure handles it alone. */
export const MODES = ['sev', 'seves', 'snp', 'snp:ovmf-hash', 'snp:svsm'] as const;
export const SNP_MODES: readonly Mode[] = ['snp', 'snp:svsm'];
export const isSnp = (m: Mode): boolean => SNP_MODES.includes(m);
export const VMM_TYPES: Readonly<Record<string, VmmType>> = { qemu: 'qemu', ec2: 'ec2', gce: 'gce' };
export const FPU_FLAVOURS = ['legacy', 'init2'] as const;
export const VCPU_TYPES = Object.keys(QEMU_CPU_SIGNATURES);

export function parseMode(s: string, what = '--mode'): Mode | 'snp:ovmf-hash' {
  if ((MODES as readonly string[]).includes(s)) return s as Mode | 'snp:ovmf-hash';
  throw new CliError(`${what} must be one of ${MODES.join(', ')}, got ${JSON.stringify(s)}`, 2);
}

export function parseVmmType(s: string, what = '--vmm-type'): VmmType {
  const t = VMM_TYPES[s.toLowerCase()];
  if (t === undefined) throw new CliError(`unknown VMM type '${s}' for ${what}: use QEMU, ec2 or gce`, 2);
  return t;
}

export function parseFpu(s: string, what = '--vmsa-fpu'): VmsaFpu {
  if ((FPU_FLAVOURS as readonly string[]).includes(s)) return s as VmsaFpu;
  throw new CliError(
    `${what} must be legacy (KVM_SEV_ES_INIT: QEMU >= 9.1 default, libvirt, sevctl) or init2 (KVM_SEV_INIT2, current sev-snp-measure), got ${JSON.stringify(s)}`,
    2,
  );
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
  if (c.mode !== 'sev') {
    if (c.vcpus === undefined) throw new CliError(`${at}missing --vcpus N in guest mode '${c.mode}'`, 2);
    if (c.vmmType === 'qemu' && c.vcpu === undefined) {
      throw new CliError(`${at}missing --vcpu-type or --vcpu-sig or --vcpu-family in guest mode '${c.mode}'`, 2);
    }
  }
  if (c.mode === 'snp:svsm') {
    if (c.svsm === undefined) throw new CliError(`${at}snp:svsm mode requires --svsm`, 2);
    if (c.varsSize === undefined) throw new CliError(`${at}snp:svsm mode requires --vars-size or --vars-file`, 2);
    // sev-snp-measure ignores these in snp:svsm; refusing them keeps a user from believing they were measured.
    if (c.kernel !== undefined) throw new CliError(`${at}--kernel is not measured in snp:svsm mode (the SVSM flow has no kernel hashes)`, 2);
    if (c.vmmType !== 'qemu') throw new CliError(`${at}snp:svsm mode is only defined for the QEMU VMM`, 2);
  } else if (c.svsm !== undefined || c.varsSize !== undefined) {
    throw new CliError(`${at}--svsm, --vars-size and --vars-file belong to mode snp:svsm`, 2);
  }
  if (c.snpOvmfHash !== undefined && c.mode !== 'snp') throw new CliError(`${at}--snp-ovmf-hash only works with mode snp`, 2);
}

/** Inputs read once per path: `policy from-configs` computes many digests over the same files. */
export class InputCache {
  private readonly files = new Map<string, Buffer>();
  private readonly hashes = new Map<string, Buffer>();

  constructor(readonly io: Io) {}

  firmware(path: string, what = 'the firmware'): Buffer {
    let b = this.files.get(path);
    if (!b) this.files.set(path, (b = readInput(this.io, path, what)));
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
  /** The measured VMSA pages in vCPU order (none for sev). */
  vmsas: Buffer[];
}

function kernelHashes(c: LaunchConfig, cache: InputCache, progress?: Progress): { hashes: LaunchDigestInput['kernelHashes']; done: number } {
  let done = 0;
  const phase = (n: number) => progress?.update(done + n);
  if (c.kernel === undefined) return { hashes: undefined, done };
  const kernel = { sha256: cache.sha256(c.kernel, 'the kernel', phase) };
  done += fileSize(cache.io, c.kernel);
  const initrd = c.initrd === undefined ? undefined : { sha256: cache.sha256(c.initrd, 'the initrd', phase) };
  if (c.initrd !== undefined) done += fileSize(cache.io, c.initrd);
  return { hashes: { kernel, initrd, cmdline: c.append ?? '' }, done };
}

export function digestInput(c: LaunchConfig & { mode: 'sev' | 'seves' }, cache: InputCache, progress?: Progress): LaunchDigestInput {
  const firmware = cache.firmware(c.ovmf);
  const { hashes, done } = kernelHashes(c, cache, progress);
  const onProgress = progress ? (n: number) => progress.update(done + n) : undefined;
  if (c.mode === 'sev') return { mode: 'sev', firmware, kernelHashes: hashes, onProgress };
  return {
    mode: 'seves',
    firmware,
    kernelHashes: hashes,
    onProgress,
    vcpus: c.vcpus!,
    vcpu: c.vmmType === 'qemu' ? c.vcpu : undefined,
    vmmType: c.vmmType,
    fpu: c.fpu,
    sevFeatures: c.sevFeatures,
  };
}

export function snpInput(c: LaunchConfig, cache: InputCache, progress?: Progress): SnpLaunchDigestInput {
  const firmware = cache.firmware(c.ovmf);
  const { hashes, done } = kernelHashes(c, cache, progress);
  return {
    firmware,
    ovmfHash: c.snpOvmfHash,
    kernelHashes: hashes,
    vcpus: c.vcpus!,
    vcpu: c.vmmType === 'qemu' ? c.vcpu : undefined,
    vmmType: c.vmmType,
    guestFeatures: c.guestFeatures,
    fpu: c.fpu,
    onProgress: progress ? (n: number) => progress.update(done + n) : undefined,
  };
}

export function svsmInput(c: LaunchConfig, cache: InputCache, progress?: Progress): SnpSvsmLaunchDigestInput {
  return {
    firmware: cache.firmware(c.ovmf),
    svsm: cache.firmware(c.svsm!, 'the SVSM image'),
    varsSize: c.varsSize!,
    vcpus: c.vcpus!,
    vcpu: c.vcpu!,
    fpu: c.fpu,
    onProgress: progress ? (n: number) => progress.update(n) : undefined,
  };
}

/** The digest and the VMSA pages; firmware problems (no hashes table, no reset block...) exit 1. */
export function computeLaunch(c: LaunchConfig, cache: InputCache, progress?: Progress): ComputedLaunch {
  return withSev(() => {
    if (c.mode === 'snp') {
      const input = snpInput(c, cache, progress);
      return { digest: snpLaunchDigest(input), vmsas: snpVmsaPages(input) };
    }
    if (c.mode === 'snp:svsm') {
      const input = svsmInput(c, cache, progress);
      return { digest: snpSvsmLaunchDigest(input), vmsas: snpSvsmVmsaPages(input) };
    }
    const input = digestInput(c as LaunchConfig & { mode: 'sev' | 'seves' }, cache, progress);
    const vmsas = launchMeasuredData(input).flatMap((p) => (p.kind === 'vmsa' ? [p.data] : []));
    return { vmsas, digest: launchDigest(input) };
  });
}

/** Total bytes hashed for a configuration, for the progress denominator. */
export function totalBytes(io: Io, c: LaunchConfig, vmsaPages: number): number {
  const seeded = c.snpOvmfHash !== undefined;
  const files = [seeded ? undefined : c.ovmf, c.kernel, c.initrd, c.svsm].filter((p): p is string => p !== undefined).reduce((n, p) => n + fileSize(io, p), 0);
  return files + (c.kernel !== undefined && !isSnp(c.mode) ? 176 : 0) + vmsaPages * 4096;
}
