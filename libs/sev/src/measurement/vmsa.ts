/**
 * The VMSA page: the initial vCPU register state (`struct sev_es_save_area`, AMD APM vol. 2 table B-4) that KVM
 * encrypts and measures for every vCPU of an SEV-ES or SNP guest (for SNP, sev_features = guest_features, §4.5).
 * sev-snp-measure `vmsa.py`, sev crate `measurement/vmsa.rs`, libvirt `virt-qemu-sev-validate`. Values and pitfalls:
 * ../shared/specs/launch-digest.md §1.5, §1.6, §6.
 *
 * Only the fields below are ever non-zero in a reset-state VMSA; every other byte of the 4096-byte page is zero.
 */
import { SevError } from '../errors';
import { expectLength } from '../util/bytes';

export const VMSA_PAGE_SIZE = 4096;
/** The BSP starts at the architectural reset vector; APs start at the firmware's SEV-ES reset block address. */
export const BSP_RESET_EIP = 0xfffffff0;
/** KVM_MAX_VCPUS at its largest (CONFIG_KVM_MAX_NR_VCPUS); also keeps a typo from hashing gigabytes of AP pages. */
export const MAX_VCPUS = 4096;

/** `struct vmcb_seg`: u16 selector, u16 attrib, u32 limit, u64 base. */
export const VMCB_SEG = { SELECTOR: 0, ATTRIB: 2, LIMIT: 4, BASE: 8, SIZE: 16 } as const;

const SEGMENTS = ['es', 'cs', 'ss', 'ds', 'fs', 'gs', 'gdtr', 'ldtr', 'idtr', 'tr'] as const;
const U64_FIELDS = ['efer', 'cr4', 'cr0', 'dr7', 'dr6', 'rflags', 'rip', 'g_pat', 'rdx', 'sev_features', 'xcr0'] as const;
type SegmentName = (typeof SEGMENTS)[number];
type U64Name = (typeof U64_FIELDS)[number];

/** Offsets in the save area, named as in the APM / Linux `struct sev_es_save_area`. */
export const SEV_ES_SAVE_AREA = {
  es: 0x000,
  cs: 0x010,
  ss: 0x020,
  ds: 0x030,
  fs: 0x040,
  gs: 0x050,
  gdtr: 0x060,
  ldtr: 0x070,
  idtr: 0x080,
  tr: 0x090,
  efer: 0x0d0,
  cr4: 0x148,
  cr0: 0x158,
  dr7: 0x160,
  dr6: 0x168,
  rflags: 0x170,
  rip: 0x178,
  g_pat: 0x268,
  rdx: 0x310,
  sev_features: 0x3b0,
  xcr0: 0x3e8,
  mxcsr: 0x408, // u32
  x87_fcw: 0x410, // u16
} as const satisfies Record<SegmentName | U64Name | 'mxcsr' | 'x87_fcw', number>;

export interface VmcbSegment {
  selector: number;
  attrib: number;
  limit: number;
  base: bigint;
}

export type VmsaState = Record<SegmentName, VmcbSegment> & Record<U64Name, bigint> & { mxcsr: number; x87_fcw: number };

export type VmmType = 'qemu' | 'ec2' | 'gce';

/**
 * 'legacy': mxcsr = x87_fcw = 0, what KVM measures after KVM_SEV_ES_INIT (QEMU >= 9.1 default `legacy-vm-type=auto`,
 * older QEMU and kernels, libvirt and sevctl). 'init2': mxcsr = 0x1F80, x87_fcw = 0x37F, what KVM measures after
 * KVM_SEV_INIT2 (SNP always; SEV-ES only with `legacy-vm-type=off`), and what current sev-snp-measure `seves` assumes.
 */
export type VmsaFpu = 'legacy' | 'init2';

export interface VmsaParams {
  /** Reset address: CS.base = eip & 0xFFFF0000, RIP = eip & 0xFFFF. */
  eip: number;
  vmmType: VmmType;
  /** CPUID(1).EAX of the guest model; required for QEMU, ignored for EC2 and GCE which use a fixed RDX. */
  vcpuSig?: number;
  sevFeatures: bigint | number;
  /** Applies to QEMU only: EC2 and GCE VMSAs never carry FPU reset state in the reference tool. */
  fpu: VmsaFpu;
}

const DEFAULT_G_PAT = 0x0007040600070406n; // PAT MSR power-on value, APM vol. 2 §A.3
const GCE_G_PAT = 0x00070106n;
const EC2_GCE_RDX = 0x600n;
const INIT2_MXCSR = 0x1f80;
const INIT2_X87_FCW = 0x037f;

function rangeCheck(name: string, value: bigint | number, bits: number): bigint {
  const ok = typeof value === 'bigint' || Number.isSafeInteger(value);
  const v = ok ? BigInt(value) : -1n;
  if (v < 0n || v >> BigInt(bits) !== 0n) {
    throw new SevError('ERR_SEV_RANGE', `VMSA ${name} must be a u${bits}, got ${String(value)}`);
  }
  return v;
}

function seg(selector: number, attrib: number, limit: number, base: bigint): VmcbSegment {
  return { selector, attrib, limit, base };
}

/** The reset-state registers KVM and the VMM leave in a VMSA (sev-snp-measure `VMSA.build_save_area`). */
export function initialVmsaState(p: VmsaParams): VmsaState {
  const eip = Number(rangeCheck('reset EIP', p.eip, 32));
  const sevFeatures = rangeCheck('sev_features', p.sevFeatures, 64);
  const isBsp = eip === BSP_RESET_EIP;
  let rdx: bigint;
  if (p.vmmType === 'qemu') {
    if (p.vcpuSig === undefined) throw new SevError('ERR_SEV_ARGUMENT', 'a QEMU VMSA needs the vCPU signature');
    rdx = rangeCheck('vCPU signature', p.vcpuSig, 32);
  } else if (p.vmmType === 'ec2' || p.vmmType === 'gce') {
    rdx = EC2_GCE_RDX;
  } else {
    throw new SevError('ERR_SEV_ARGUMENT', `unknown VMM type ${JSON.stringify(p.vmmType)}`);
  }
  if (p.fpu !== 'legacy' && p.fpu !== 'init2') {
    throw new SevError('ERR_SEV_ARGUMENT', `unknown VMSA FPU flavour ${JSON.stringify(p.fpu)}`);
  }
  const ec2 = p.vmmType === 'ec2';
  const fpu = p.vmmType === 'qemu' && p.fpu === 'init2';
  const data = (attrib: number) => seg(0, attrib, 0xffff, 0n);
  return {
    es: data(0x93),
    // EC2 starts the BSP with a non-accessed code segment.
    cs: seg(0xf000, ec2 && isBsp ? 0x9a : 0x9b, 0xffff, BigInt((eip & 0xffff0000) >>> 0)),
    ss: data(ec2 ? 0x92 : 0x93),
    ds: data(0x93),
    fs: data(0x93),
    gs: data(0x93),
    gdtr: data(0),
    ldtr: data(0x82),
    idtr: data(0),
    tr: data(ec2 ? 0x83 : 0x8b),
    efer: 0x1000n, // EFER.SVME, set by KVM
    cr4: 0x40n, // CR4.MCE, set by KVM
    cr0: 0x10n,
    dr7: 0x400n,
    dr6: 0xffff0ff0n,
    rflags: 0x2n,
    rip: BigInt(eip & 0xffff),
    g_pat: p.vmmType === 'gce' ? GCE_G_PAT : DEFAULT_G_PAT,
    rdx,
    sev_features: sevFeatures,
    xcr0: 0x1n,
    mxcsr: fpu ? INIT2_MXCSR : 0,
    x87_fcw: fpu ? INIT2_X87_FCW : 0,
  };
}

export function encodeVmsa(state: VmsaState): Buffer {
  const page = Buffer.alloc(VMSA_PAGE_SIZE);
  for (const name of SEGMENTS) {
    const s = state[name];
    const o = SEV_ES_SAVE_AREA[name];
    page.writeUInt16LE(Number(rangeCheck(`${name}.selector`, s.selector, 16)), o + VMCB_SEG.SELECTOR);
    page.writeUInt16LE(Number(rangeCheck(`${name}.attrib`, s.attrib, 16)), o + VMCB_SEG.ATTRIB);
    page.writeUInt32LE(Number(rangeCheck(`${name}.limit`, s.limit, 32)), o + VMCB_SEG.LIMIT);
    page.writeBigUInt64LE(rangeCheck(`${name}.base`, s.base, 64), o + VMCB_SEG.BASE);
  }
  for (const name of U64_FIELDS) page.writeBigUInt64LE(rangeCheck(name, state[name], 64), SEV_ES_SAVE_AREA[name]);
  page.writeUInt32LE(Number(rangeCheck('mxcsr', state.mxcsr, 32)), SEV_ES_SAVE_AREA.mxcsr);
  page.writeUInt16LE(Number(rangeCheck('x87_fcw', state.x87_fcw, 16)), SEV_ES_SAVE_AREA.x87_fcw);
  return page;
}

export function buildVmsaPage(p: VmsaParams): Buffer {
  return encodeVmsa(initialVmsaState(p));
}

/** The two distinct pages of a launch: vCPU 0 (BSP) and the page every other vCPU (AP) uses. */
export interface VmsaPair {
  bsp: Buffer;
  ap: Buffer;
}

export interface VmsaPairParams extends Omit<VmsaParams, 'eip'> {
  /** From the firmware's SEV-ES reset block (ovmf.ts `sevEsResetEip`). */
  apResetEip: number;
}

export function buildVmsaPair(p: VmsaPairParams): VmsaPair {
  const { apResetEip, ...rest } = p;
  return { bsp: buildVmsaPage({ ...rest, eip: BSP_RESET_EIP }), ap: buildVmsaPage({ ...rest, eip: apResetEip }) };
}

/**
 * The VMSA of a Coconut-SVSM guest launched by QEMU before IGVM (`snp:svsm`, ../shared/specs/launch-digest.md §4.6;
 * sev-snp-measure `VMSA_SVSM`): every vCPU starts in the SVSM's 32-bit flat protected mode at its entry point, with
 * sev_features = SNPActive.
 *
 * FPU: 'init2' reproduces sev-snp-measure exactly, including its quirk (mxcsr 0x1F80 but x87_fcw 0: the tool passes
 * `fcw=`, which ctypes ignores), which is baked into its vectors A24/A25; 'legacy' zeroes both, as in the older
 * hardware-derived SVSM vectors.
 */
export interface SvsmVmsaParams {
  /** SVSM load address + its SVSM_INFO offset (ovmf.ts `svsmEntryPoint`); the whole value becomes RIP. */
  entryPoint: number;
  vcpuSig: number;
  fpu: VmsaFpu;
}

export const SVSM_SEV_FEATURES = 0x1n; // SNPActive, fixed by sev-snp-measure

export function svsmVmsaState(p: SvsmVmsaParams): VmsaState {
  if (p.fpu !== 'legacy' && p.fpu !== 'init2') {
    throw new SevError('ERR_SEV_ARGUMENT', `unknown VMSA FPU flavour ${JSON.stringify(p.fpu)}`);
  }
  const flat = (selector: number, attrib: number) => seg(selector, attrib, 0xffffffff, 0n);
  const real = (attrib: number) => seg(0, attrib, 0xffff, 0n);
  return {
    es: flat(0x10, 0xc93),
    cs: flat(0x08, 0xc9b),
    ss: flat(0x10, 0xc93),
    ds: flat(0x10, 0xc93),
    fs: flat(0x10, 0xc93),
    gs: real(0x93),
    gdtr: real(0),
    ldtr: real(0x82),
    idtr: real(0),
    tr: real(0x8b),
    efer: 0x1000n,
    cr4: 0x40n,
    cr0: 0x11n, // PE set: the SVSM starts in protected mode
    dr7: 0x400n,
    dr6: 0xffff0ff0n,
    rflags: 0x2n,
    rip: rangeCheck('SVSM entry point', p.entryPoint, 64),
    g_pat: DEFAULT_G_PAT,
    rdx: rangeCheck('vCPU signature', p.vcpuSig, 32),
    sev_features: SVSM_SEV_FEATURES,
    xcr0: 0x1n,
    mxcsr: p.fpu === 'init2' ? INIT2_MXCSR : 0,
    x87_fcw: 0,
  };
}

export function buildSvsmVmsaPage(p: SvsmVmsaParams): Buffer {
  return encodeVmsa(svsmVmsaState(p));
}

/**
 * The pages in launch order: BSP, then the AP page for every further vCPU (the same Buffer repeated, not copied).
 * `ap` may be omitted for one vCPU, as libvirt allows.
 */
export function vmsaPageSequence(vmsas: { bsp: Uint8Array; ap?: Uint8Array }, vcpus: number): Buffer[] {
  if (!Number.isSafeInteger(vcpus) || vcpus < 1 || vcpus > MAX_VCPUS) {
    throw new SevError('ERR_SEV_RANGE', `vCPU count must be an integer in 1..${MAX_VCPUS}, got ${vcpus}`);
  }
  expectLength('BSP VMSA', vmsas.bsp, VMSA_PAGE_SIZE);
  const bsp = Buffer.from(vmsas.bsp);
  if (vcpus === 1) return [bsp];
  if (vmsas.ap === undefined) throw new SevError('ERR_SEV_ARGUMENT', `${vcpus} vCPUs need an AP VMSA page`);
  expectLength('AP VMSA', vmsas.ap, VMSA_PAGE_SIZE);
  const ap = Buffer.from(vmsas.ap);
  return [bsp, ...Array.from({ length: vcpus - 1 }, () => ap)];
}

export interface VmsaDescription {
  state: VmsaState;
  /** Offsets of non-zero bytes outside the fields above: state this module does not model (e.g. GPRs, FPU regs). */
  otherNonZeroOffsets: number[];
}

/** Decodes a VMSA page for dumps and for explaining a digest mismatch field by field. */
export function describeVmsa(page: Uint8Array): VmsaDescription {
  expectLength('VMSA page', page, VMSA_PAGE_SIZE);
  const b = Buffer.from(page);
  const covered = new Uint8Array(VMSA_PAGE_SIZE);
  const mark = (o: number, n: number) => covered.fill(1, o, o + n);
  const state = {} as VmsaState;
  for (const name of SEGMENTS) {
    const o = SEV_ES_SAVE_AREA[name];
    state[name] = seg(
      b.readUInt16LE(o + VMCB_SEG.SELECTOR),
      b.readUInt16LE(o + VMCB_SEG.ATTRIB),
      b.readUInt32LE(o + VMCB_SEG.LIMIT),
      b.readBigUInt64LE(o + VMCB_SEG.BASE),
    );
    mark(o, VMCB_SEG.SIZE);
  }
  for (const name of U64_FIELDS) {
    state[name] = b.readBigUInt64LE(SEV_ES_SAVE_AREA[name]);
    mark(SEV_ES_SAVE_AREA[name], 8);
  }
  state.mxcsr = b.readUInt32LE(SEV_ES_SAVE_AREA.mxcsr);
  mark(SEV_ES_SAVE_AREA.mxcsr, 4);
  state.x87_fcw = b.readUInt16LE(SEV_ES_SAVE_AREA.x87_fcw);
  mark(SEV_ES_SAVE_AREA.x87_fcw, 2);
  const otherNonZeroOffsets: number[] = [];
  for (let i = 0; i < VMSA_PAGE_SIZE; i++) if (b[i] !== 0 && covered[i] === 0) otherNonZeroOffsets.push(i);
  return { state, otherNonZeroOffsets };
}
