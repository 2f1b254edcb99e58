/**
 * IGVM file layout: constants and the structure model (../shared/specs/igvm.md §2). The model holds what a file
 * *means* (headers in order, their data as bytes), never file offsets: the writer recomputes those (§2.12), so
 * parse → write → parse is the identity on this model.
 */

export const IGVM_MAGIC = 0x4d564749; // "IGVM" little-endian
export const FIXED_HEADER_V1_SIZE = 24;
export const FIXED_HEADER_V2_SIZE = 32;
export const IGVM_PAGE_SIZE = 4096;
export const PAGES_PER_2MB = 512;

/** Variable header types (§2.4). */
export const VhType = {
  SUPPORTED_PLATFORM: 0x001,
  GUEST_POLICY: 0x101,
  RELOCATABLE_REGION: 0x102,
  PAGE_TABLE_RELOCATION_REGION: 0x103,
  PARAMETER_AREA: 0x301,
  PAGE_DATA: 0x302,
  PARAMETER_INSERT: 0x303,
  VP_CONTEXT: 0x304,
  REQUIRED_MEMORY: 0x305,
  VP_COUNT_PARAMETER: 0x307,
  SRAT: 0x308,
  MADT: 0x309,
  MMIO_RANGES: 0x30a,
  SNP_ID_BLOCK: 0x30b,
  MEMORY_MAP: 0x30c,
  ERROR_RANGE: 0x30d,
  COMMAND_LINE: 0x30e,
  SLIT: 0x30f,
  PPTT: 0x310,
  VBS_MEASUREMENT: 0x311,
  DEVICE_TREE: 0x312,
  ENVIRONMENT_INFO_PARAMETER: 0x313,
} as const;

/** The parameter-usage directives (IGVM_VHS_PARAMETER: u32 area index, u32 byte offset). */
export const PARAMETER_USAGE_TYPES: readonly number[] = [
  VhType.VP_COUNT_PARAMETER,
  VhType.SRAT,
  VhType.MADT,
  VhType.MMIO_RANGES,
  VhType.MEMORY_MAP,
  VhType.COMMAND_LINE,
  VhType.SLIT,
  VhType.PPTT,
  VhType.DEVICE_TREE,
  VhType.ENVIRONMENT_INFO_PARAMETER,
];

/** Body sizes igvm 0.4.0 requires exactly (§2.3: longer, "extensible" bodies are refused). */
export const BODY_SIZE: ReadonlyMap<number, number> = new Map([
  [VhType.SUPPORTED_PLATFORM, 16],
  [VhType.GUEST_POLICY, 16],
  [VhType.RELOCATABLE_REGION, 48],
  [VhType.PAGE_TABLE_RELOCATION_REGION, 32],
  [VhType.PARAMETER_AREA, 16],
  [VhType.PAGE_DATA, 24],
  [VhType.PARAMETER_INSERT, 16],
  [VhType.VP_CONTEXT, 20],
  [VhType.REQUIRED_MEMORY, 24],
  [VhType.SNP_ID_BLOCK, 696],
  [VhType.ERROR_RANGE, 16],
  [VhType.VBS_MEASUREMENT, 864],
  ...PARAMETER_USAGE_TYPES.map((t) => [t, 8] as [number, number]),
]);

/** The three sections and their type ranges (§1, §2.4). */
export type Section = 'platform' | 'initialization' | 'directive';
export function sectionOf(type: number): Section | undefined {
  if (type >= 0x001 && type <= 0x100) return 'platform';
  if (type >= 0x101 && type <= 0x200) return 'initialization';
  if (type >= 0x301 && type <= 0x400) return 'directive';
  return undefined;
}

/** SUPPORTED_PLATFORM platform_type values (§2.5). SEV and SEV_ES are igvm_defs' "unstable" types, compiled into 0.4.0. */
export const PlatformType = { NATIVE: 0, VSM_ISOLATION: 1, SEV_SNP: 2, TDX: 3, SEV: 4, SEV_ES: 5 } as const;
export type PlatformTypeValue = (typeof PlatformType)[keyof typeof PlatformType];

export const PageDataFlag = { IS_2MB_PAGE: 0x1, UNMEASURED: 0x2, SHARED: 0x4 } as const;
export const PageDataType = { NORMAL: 0, SECRETS: 1, CPUID_DATA: 2, CPUID_XF: 3 } as const;

/** sizeof(SevVmsa) in igvm 0.4.0: the rest of a VP context page must be zero (§2.8). */
export const SEV_VMSA_SIZE = 0x670;
/** sizeof(IgvmNativeVpContextX64): 18 u64 registers, IDTR/GDTR, code and data selectors, gs_base, cr0/3/4, efer. */
export const NATIVE_VP_CONTEXT_SIZE = 0xe0;
/** The VMSA register igvmmeasure's --check-kvm reads (§2.8, §3.6). */
export const VMSA_CR0_OFFSET = 0x158;

export interface IgvmPlatform {
  compatibilityMask: number;
  highestVtl: number;
  platformType: number;
  platformVersion: number;
  sharedGpaBoundary: bigint;
}

export type IgvmInitialization =
  | { kind: 'guest_policy'; policy: bigint; compatibilityMask: number }
  | {
      kind: 'relocatable_region';
      compatibilityMask: number;
      vpIndex: number;
      vtl: number;
      flags: number;
      relocationAlignment: bigint;
      regionGpa: bigint;
      regionSize: bigint;
      minimumGpa: bigint;
      maximumGpa: bigint;
    }
  | { kind: 'page_table_relocation'; compatibilityMask: number; vpIndex: number; vtl: number; gpa: bigint; size: bigint; usedSize: bigint };

/** An ECDSA P-384 signature as IGVM stores it: r and s little-endian, each zero-padded to 72 bytes. */
export interface IgvmSignature {
  rComp: Buffer; // 72
  sComp: Buffer; // 72
}
/** IGVM_VHS_SNP_ID_BLOCK_PUBLIC_KEY (152 bytes): curve, an IGVM-only reserved word, qx, qy (72 bytes each, LE). */
export interface IgvmPublicKey {
  curve: number;
  reserved: number;
  qx: Buffer;
  qy: Buffer;
}
export interface IgvmSnpIdBlock {
  compatibilityMask: number;
  authorKeyEnabled: number;
  reserved: Buffer; // 3
  ld: Buffer; // 48
  familyId: Buffer; // 16
  imageId: Buffer; // 16
  version: number;
  guestSvn: number;
  idKeyAlgorithm: number;
  authorKeyAlgorithm: number;
  idKeySignature: IgvmSignature;
  idPublicKey: IgvmPublicKey;
  authorKeySignature: IgvmSignature;
  authorPublicKey: IgvmPublicKey;
}

export type IgvmDirective =
  | { kind: 'page_data'; gpa: bigint; compatibilityMask: number; flags: number; dataType: number; data?: Buffer }
  | { kind: 'parameter_area'; numberOfBytes: bigint; parameterAreaIndex: number; initialData?: Buffer }
  | { kind: 'parameter_usage'; type: number; parameterAreaIndex: number; byteOffset: number }
  | { kind: 'parameter_insert'; gpa: bigint; compatibilityMask: number; parameterAreaIndex: number }
  /** `form` follows from the platform whose mask equals the directive's (§2.8): snp for SEV_SNP/SEV_ES, native for NATIVE/SEV. */
  | { kind: 'vp_context'; form: 'snp' | 'native'; gpa: bigint; compatibilityMask: number; vpIndex: number; reserved: number; data: Buffer }
  | { kind: 'required_memory'; gpa: bigint; compatibilityMask: number; numberOfBytes: number; flags: number }
  | ({ kind: 'snp_id_block' } & IgvmSnpIdBlock)
  | { kind: 'error_range'; gpa: bigint; compatibilityMask: number; sizeBytes: number }
  | { kind: 'vbs_measurement'; body: Buffer };

export interface IgvmFile {
  /** 1 or 2; `igvmmeasure sign` always writes 1 */
  formatVersion: 1 | 2;
  /** v2 only: 0 x64, 1 AArch64 */
  architecture?: number;
  platforms: IgvmPlatform[];
  initializations: IgvmInitialization[];
  directives: IgvmDirective[];
}

export function hex(n: number | bigint, width = 0): string {
  return '0x' + n.toString(16).toUpperCase().padStart(width, '0');
}
