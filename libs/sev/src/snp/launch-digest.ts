/**
 * Expected SEV-SNP launch digests (the attestation report's MEASUREMENT) of QEMU/KVM guests booted from OVMF, exactly
 * as sev-snp-measure computes them (../shared/specs/launch-digest.md §4.2–§4.6). Every page goes through the one
 * PAGE_INFO chain of page-info.ts; the firmware structures, the kernel-hashes table and the VMSAs are the SEV-ES ones
 * of ../measurement, so the three modes cannot drift apart.
 *
 *   snp:           firmware pages (NORMAL) → OVMF metadata sections in file order → [EC2: CPUID pages] → VMSAs
 *   snp:ovmf-hash: the digest after the firmware pages alone (a seed for `snp` when the firmware is large)
 *   snp:svsm:      OVMF pages → SVSM image pages → the SVSM image's metadata sections → SVSM VMSAs
 */
import { SevError } from '../errors';
import { asBuffer } from '../util/bytes';
import type { ProgressCallback } from '../measurement/digest';
import {
  parseOvmfFooterTable,
  parseOvmfSevMetadata,
  sectionTypeName,
  SectionType,
  sevEsResetEip,
  sevHashTableArea,
  svsmEntryPoint,
  type OvmfSevMetadataSection,
} from '../measurement/ovmf';
import { buildSnpKernelHashesPage, SNP_KERNEL_HASHES_PAGE_SIZE, type KernelHashesInput } from '../measurement/sev-hashes';
import { resolveVcpuSignature, type VcpuSpec } from '../measurement/vcpu-types';
import { buildSvsmVmsaPage, buildVmsaPair, MAX_VCPUS, vmsaPageSequence, type VmmType, type VmsaFpu } from '../measurement/vmsa';
import type { PageHashOptions } from './page-hashes';
import { SNP_LD_SIZE, SNP_PAGE_SIZE, SNP_VMSA_GPA, SnpLaunchDigest, SnpPageType, type SnpPageTypeValue } from './page-info';

/** Firmware and SVSM images are mapped so that they end at 4 GiB (QEMU `pc_system_flash_map` / `-bios`). */
export const FIRMWARE_END_GPA = 0x1_0000_0000;
/** sev-snp-measure's default `--guest-features`: SNPActive, what KVM sets with KVM_SEV_INIT2 (§1.6). */
export const DEFAULT_SNP_GUEST_FEATURES = 0x1n;

/** One step of the chain and the digest after it: for dumps and for finding where two tools diverge (VECTORS.md §G). */
export type SnpLaunchStep =
  | { kind: 'firmware'; gpa: number; pages: number; ld: Buffer }
  | { kind: 'firmware-seed'; ld: Buffer }
  | { kind: 'svsm'; gpa: number; pages: number; ld: Buffer }
  | { kind: 'section'; section: OvmfSevMetadataSection; pageType: number; pages: number; ld: Buffer }
  | { kind: 'vmsa'; vcpu: number; ld: Buffer };

export interface SnpLaunchDigestInput {
  /** The firmware image QEMU maps below 4 GiB (`-bios` or pflash unit 0), a multiple of 4 KiB. */
  firmware: Uint8Array;
  /**
   * `--snp-ovmf-hash`: the 48-byte digest after the firmware pages (snpOvmfHash), replacing step 1. The firmware is
   * still read for its metadata and reset block, so it must be the matching image (§6 item 12).
   */
  ovmfHash?: Uint8Array;
  /** Present when the guest boots with `-kernel` (kernel-hashes=on). */
  kernelHashes?: KernelHashesInput;
  vcpus: number;
  /** Required for QEMU; EC2 and GCE VMSAs carry a fixed RDX. */
  vcpu?: VcpuSpec;
  /** Default 'qemu'. */
  vmmType?: VmmType;
  /** VMSA sev_features (§4.5); default 0x1. */
  guestFeatures?: bigint | number;
  /** Default 'init2' (always for SNP on current hosts); 'legacy' zeroes MXCSR/FCW like older SNP host kernels. */
  fpu?: VmsaFpu;
  onProgress?: ProgressCallback;
  onStep?: (step: SnpLaunchStep) => void;
  /** Worker threads hashing the firmware pages (page-hashes.ts): 0 for none; default automatic. Same digest either way. */
  threads?: number;
}

export interface SnpSvsmLaunchDigestInput {
  /** OVMF CODE as loaded behind the SVSM (e.g. OVMF_CODE.fd). */
  firmware: Uint8Array;
  /** The Coconut-SVSM image (svsm.bin). */
  svsm: Uint8Array;
  /** Size of OVMF_VARS in bytes, which sits between the SVSM and OVMF; only its size matters. */
  varsSize: number;
  vcpus: number;
  vcpu: VcpuSpec;
  /** Default 'init2' (sev-snp-measure's VMSA_SVSM, quirk included); 'legacy' zeroes MXCSR. */
  fpu?: VmsaFpu;
  onProgress?: ProgressCallback;
  onStep?: (step: SnpLaunchStep) => void;
  /** Worker threads hashing the OVMF and SVSM pages (page-hashes.ts): 0 for none; default automatic. Same digest either way. */
  threads?: number;
}

function firmwareError(message: string): SevError {
  return new SevError('ERR_SEV_FIRMWARE', message);
}

function bytesOf(what: string, b: unknown): Buffer {
  if (!(b instanceof Uint8Array)) throw new SevError('ERR_SEV_ARGUMENT', `${what} must be bytes`);
  return asBuffer(b);
}

/** Where an image of `length` bytes starts when it ends at `end`; the image must be whole pages (gctx asserts it). */
function imageGpa(what: string, length: number, end: number): number {
  if (length === 0 || length % SNP_PAGE_SIZE !== 0) {
    throw firmwareError(`${what} is ${length} bytes; SNP measures whole 4 KiB pages, so it must be a non-zero multiple of 4096`);
  }
  const gpa = end - length;
  if (gpa < 0) throw firmwareError(`${what} (${length} bytes) does not fit below 0x${end.toString(16)}`);
  return gpa;
}

/** NORMAL pages of a whole image (§4.1), page hashes on the worker pool when it pays off; progress over its bytes. */
function measureImage(ld: SnpLaunchDigest, gpa: number, data: Buffer, threads: number | undefined, progress?: (done: number) => void): void {
  ld.updateNormalRange(BigInt(gpa), data, { threads, onPages: progress && ((pages) => progress(pages * SNP_PAGE_SIZE)) });
}

function pagesOf(section: OvmfSevMetadataSection): number {
  if (section.size % SNP_PAGE_SIZE !== 0 || section.gpa % SNP_PAGE_SIZE !== 0) {
    throw firmwareError(
      `SEV metadata section ${sectionTypeName(section.type)} at 0x${section.gpa.toString(16)}+0x${section.size.toString(16)} is not whole 4 KiB pages`,
    );
  }
  return section.size / SNP_PAGE_SIZE;
}

function measureRange(ld: SnpLaunchDigest, type: SnpPageTypeValue, section: OvmfSevMetadataSection): number {
  const pages = pagesOf(section);
  for (let i = 0; i < pages; i++) ld.update(type, BigInt(section.gpa + i * SNP_PAGE_SIZE));
  return pages;
}

function checkKernelHashesSection(s: OvmfSevMetadataSection): void {
  pagesOf(s);
  // sev-snp-measure asserts this: QEMU writes exactly one page there.
  if (s.size !== SNP_KERNEL_HASHES_PAGE_SIZE) {
    throw firmwareError(`SNP_KERNEL_HASHES section is 0x${s.size.toString(16)} bytes; a kernel boot needs exactly one 4 KiB page`);
  }
}

/** The refusals of measureMetadata, run before any hashing so that a bad image fails fast. */
function checkMetadata(sections: OvmfSevMetadataSection[], withKernel: boolean): void {
  for (const s of sections) {
    if (withKernel && s.type === SectionType.SNP_KERNEL_HASHES) checkKernelHashesSection(s);
    else pagesOf(s);
  }
}

interface MetadataContext {
  sections: OvmfSevMetadataSection[];
  vmmType: VmmType;
  /** The kernel-hashes page to measure for SNP_KERNEL_HASHES, when a kernel is given. */
  kernelHashesPage?: Buffer;
  onStep?: (step: SnpLaunchStep) => void;
}

/** §4.2 steps 2 and 3 (sev-snp-measure `snp_update_metadata_pages`). */
function measureMetadata(ld: SnpLaunchDigest, c: MetadataContext): void {
  const step = (section: OvmfSevMetadataSection, pageType: number, pages: number) => c.onStep?.({ kind: 'section', section, pageType, pages, ld: ld.digest() });
  for (const s of c.sections) {
    switch (s.type) {
      case SectionType.SNP_SEC_MEM: {
        // GCE validates SEC_MEM itself: the pages enter the digest as UNMEASURED (sev-snp-measure, GCE only).
        const type = c.vmmType === 'gce' ? SnpPageType.UNMEASURED : SnpPageType.ZERO;
        step(s, type, measureRange(ld, type, s));
        break;
      }
      case SectionType.SNP_SECRETS:
        // One page whatever the size (§6 item 6).
        pagesOf(s);
        ld.update(SnpPageType.SECRETS, BigInt(s.gpa));
        step(s, SnpPageType.SECRETS, 1);
        break;
      case SectionType.CPUID:
        pagesOf(s);
        // EC2 measures the CPUID page after every other section (step 3).
        if (c.vmmType !== 'ec2') {
          ld.update(SnpPageType.CPUID, BigInt(s.gpa));
          step(s, SnpPageType.CPUID, 1);
        }
        break;
      case SectionType.SVSM_CAA:
        step(s, SnpPageType.ZERO, measureRange(ld, SnpPageType.ZERO, s));
        break;
      case SectionType.SNP_KERNEL_HASHES:
        if (c.kernelHashesPage === undefined) {
          step(s, SnpPageType.ZERO, measureRange(ld, SnpPageType.ZERO, s));
        } else {
          checkKernelHashesSection(s);
          ld.update(SnpPageType.NORMAL, BigInt(s.gpa), c.kernelHashesPage);
          step(s, SnpPageType.NORMAL, 1);
        }
        break;
      default:
        // parseOvmfSevMetadata already refuses unknown types; kept so a new type cannot be skipped silently.
        throw firmwareError(`SEV metadata section of unknown type ${String((s as OvmfSevMetadataSection).type)}`);
    }
  }
  if (c.vmmType === 'ec2') {
    for (const s of c.sections) {
      if (s.type !== SectionType.CPUID) continue;
      ld.update(SnpPageType.CPUID, BigInt(s.gpa));
      step(s, SnpPageType.CPUID, 1);
    }
  }
}

/** The same rule as vmsaPageSequence, checked first so that nothing is hashed for a bad count. */
function checkVcpus(vcpus: number): void {
  if (!Number.isSafeInteger(vcpus) || vcpus < 1 || vcpus > MAX_VCPUS) {
    throw new SevError('ERR_SEV_RANGE', `vCPU count must be an integer in 1..${MAX_VCPUS}, got ${vcpus}`);
  }
}

/** `snp:ovmf-hash`: the launch digest after the firmware pages (§4.3; sev-snp-measure `calc_snp_ovmf_hash`). */
export function snpOvmfHash(firmware: Uint8Array, onProgress?: ProgressCallback, opts: PageHashOptions = {}): Buffer {
  const fw = bytesOf('firmware', firmware);
  const gpa = imageGpa('the firmware', fw.length, FIRMWARE_END_GPA);
  const ld = new SnpLaunchDigest();
  measureImage(ld, gpa, fw, opts.threads, onProgress && ((done) => onProgress(done, fw.length)));
  return ld.digest();
}

/** The VMSA pages of an `snp` launch in order (BSP, then APs), e.g. for `--dump-vmsa`. */
export function snpVmsaPages(input: SnpLaunchDigestInput): Buffer[] {
  const fw = bytesOf('firmware', input.firmware);
  const vmmType = input.vmmType ?? 'qemu';
  let vcpuSig: number | undefined;
  if (vmmType === 'qemu') {
    if (input.vcpu === undefined) {
      throw new SevError('ERR_SEV_ARGUMENT', 'SNP with QEMU needs the guest vCPU model (sig, type or family/model/stepping)');
    }
    vcpuSig = resolveVcpuSignature(input.vcpu);
  }
  const pair = buildVmsaPair({
    apResetEip: sevEsResetEip(parseOvmfFooterTable(fw)),
    vmmType,
    vcpuSig,
    sevFeatures: input.guestFeatures ?? DEFAULT_SNP_GUEST_FEATURES,
    fpu: input.fpu ?? 'init2',
  });
  return vmsaPageSequence(pair, input.vcpus);
}

/** `snp` (§4.2; sev-snp-measure `snp_calc_launch_digest`): the 48-byte MEASUREMENT of the attestation report. */
export function snpLaunchDigest(input: SnpLaunchDigestInput): Buffer {
  const fw = bytesOf('firmware', input.firmware);
  const vmmType = input.vmmType ?? 'qemu';
  checkVcpus(input.vcpus);
  // Everything that can be refused is checked before the (possibly long) hashing starts.
  const table = parseOvmfFooterTable(fw);
  const sections = parseOvmfSevMetadata(fw, table);
  // With a seed the firmware pages are not measured here, so (as in sev-snp-measure) their layout is not checked.
  const gpa = input.ovmfHash === undefined ? imageGpa('the firmware', fw.length, FIRMWARE_END_GPA) : 0;
  let kernelHashesPage: Buffer | undefined;
  if (input.kernelHashes !== undefined) {
    if (!sections.some((s) => s.type === SectionType.SNP_KERNEL_HASHES)) {
      // sev-snp-measure's words, so users searching for its message find this one.
      throw firmwareError(
        "Kernel specified but OVMF metadata doesn't include SNP_KERNEL_HASHES section: this firmware cannot measure a -kernel boot under SNP",
      );
    }
    kernelHashesPage = buildSnpKernelHashesPage(input.kernelHashes, sevHashTableArea(table).base & (SNP_PAGE_SIZE - 1));
  }
  checkMetadata(sections, kernelHashesPage !== undefined);
  const vmsas = snpVmsaPages({ ...input, firmware: fw });

  let ld: SnpLaunchDigest;
  const progressTotal = (input.ovmfHash === undefined ? fw.length : 0) + vmsas.length * SNP_PAGE_SIZE;
  if (input.ovmfHash !== undefined) {
    const seed = bytesOf('the OVMF hash', input.ovmfHash);
    if (seed.length !== SNP_LD_SIZE) throw new SevError('ERR_SEV_LENGTH', `the OVMF hash must be ${SNP_LD_SIZE} bytes (96 hex digits), got ${seed.length}`);
    ld = new SnpLaunchDigest(seed);
    input.onStep?.({ kind: 'firmware-seed', ld: ld.digest() });
  } else {
    ld = new SnpLaunchDigest();
    measureImage(ld, gpa, fw, input.threads, input.onProgress && ((done) => input.onProgress!(done, progressTotal)));
    input.onStep?.({ kind: 'firmware', gpa, pages: fw.length / SNP_PAGE_SIZE, ld: ld.digest() });
  }
  measureMetadata(ld, { sections, vmmType, kernelHashesPage, onStep: input.onStep });
  measureVmsas(ld, vmsas, progressTotal - vmsas.length * SNP_PAGE_SIZE, progressTotal, input);
  return ld.digest();
}

function measureVmsas(
  ld: SnpLaunchDigest,
  vmsas: Buffer[],
  doneBefore: number,
  total: number,
  o: { onProgress?: ProgressCallback; onStep?: (step: SnpLaunchStep) => void },
): void {
  vmsas.forEach((page, vcpu) => {
    // KVM measures them at SNP_LAUNCH_FINISH, all at its one fixed VMSA GPA.
    ld.update(SnpPageType.VMSA, SNP_VMSA_GPA, page);
    o.onStep?.({ kind: 'vmsa', vcpu, ld: ld.digest() });
  });
  o.onProgress?.(doneBefore + vmsas.length * SNP_PAGE_SIZE, total);
}

/** The SVSM VMSA pages of an `snp:svsm` launch (all vCPUs share one page), e.g. for `--dump-vmsa`. */
export function snpSvsmVmsaPages(input: SnpSvsmLaunchDigestInput): Buffer[] {
  const { svsmGpa, svsmTable } = svsmLayout(input);
  const page = buildSvsmVmsaPage({
    entryPoint: svsmEntryPoint(svsmTable, svsmGpa),
    vcpuSig: resolveVcpuSignature(input.vcpu),
    fpu: input.fpu ?? 'init2',
  });
  return vmsaPageSequence({ bsp: page, ap: page }, input.vcpus);
}

function svsmLayout(input: SnpSvsmLaunchDigestInput) {
  const fw = bytesOf('firmware', input.firmware);
  const svsm = bytesOf('SVSM image', input.svsm);
  if (input.vcpu === undefined) throw new SevError('ERR_SEV_ARGUMENT', 'snp:svsm needs the guest vCPU model (sig, type or family/model/stepping)');
  const v = input.varsSize;
  if (!Number.isSafeInteger(v) || v <= 0 || v % SNP_PAGE_SIZE !== 0) {
    throw new SevError('ERR_SEV_ARGUMENT', `the OVMF_VARS size must be a positive multiple of 4096 bytes, got ${String(v)}`);
  }
  const fwGpa = imageGpa('the firmware', fw.length, FIRMWARE_END_GPA);
  const svsmGpa = imageGpa('the SVSM image', svsm.length, fwGpa - v);
  return { fw, svsm, fwGpa, svsmGpa, svsmTable: parseOvmfFooterTable(svsm) };
}

/** `snp:svsm` (§4.6; sev-snp-measure `svsm_calc_launch_digest`, the pre-IGVM Coconut-SVSM QEMU flow). */
export function snpSvsmLaunchDigest(input: SnpSvsmLaunchDigestInput): Buffer {
  checkVcpus(input.vcpus);
  const { fw, svsm, fwGpa, svsmGpa } = svsmLayout(input);
  // The OVMF's own metadata is not processed: the SVSM validates OVMF's memory itself.
  const sections = parseOvmfSevMetadata(svsm, parseOvmfFooterTable(svsm));
  checkMetadata(sections, false);
  const vmsas = snpSvsmVmsaPages(input);
  const total = fw.length + svsm.length + vmsas.length * SNP_PAGE_SIZE;
  const ld = new SnpLaunchDigest();
  measureImage(ld, fwGpa, fw, input.threads, input.onProgress && ((done) => input.onProgress!(done, total)));
  input.onStep?.({ kind: 'firmware', gpa: fwGpa, pages: fw.length / SNP_PAGE_SIZE, ld: ld.digest() });
  measureImage(ld, svsmGpa, svsm, input.threads, input.onProgress && ((done) => input.onProgress!(fw.length + done, total)));
  input.onStep?.({ kind: 'svsm', gpa: svsmGpa, pages: svsm.length / SNP_PAGE_SIZE, ld: ld.digest() });
  measureMetadata(ld, { sections, vmmType: 'qemu', onStep: input.onStep });
  measureVmsas(ld, vmsas, fw.length + svsm.length, total, input);
  return ld.digest();
}
