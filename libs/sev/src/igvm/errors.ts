import { SevError, type SevErrorCode } from '../errors';

/**
 * igvm 0.4.0's error variants (../shared/specs/igvm.md §2.10 table), kept on every IGVM error so a refusal can be
 * traced to the reference parser's (and to shared/vectors/igvm/MANIFEST.md §5); the SevError code is the stable class.
 */
export type IgvmErrorVariant =
  | 'InvalidFixedHeader'
  | 'UnsupportedPageSize'
  | 'PlatformArchUnsupported'
  | 'InvalidChecksum'
  | 'InvalidBinaryVariableHeaderSection'
  | 'InvalidVariableHeaderType'
  | 'InvalidVariableHeaderSize'
  | 'InvalidCompatibilityMask'
  | 'InvalidVtl'
  | 'InvalidPlatformType'
  | 'InvalidPlatformVersion'
  | 'InvalidSharedGpaBoundary'
  | 'MultiplePlatformHeadersWithSameIsolation'
  | 'NoPlatformHeaders'
  | 'ReservedNotZero'
  | 'UnalignedAddress'
  | 'UnalignedSize'
  | 'InvalidPageDataType'
  | 'InvalidDataSize'
  | 'InvalidVmsa'
  | 'InvalidContext'
  | 'InvalidVpContextPlatformType'
  | 'UnsupportedVpContext'
  | 'InvalidParameterAreaIndex'
  | 'ParameterInsertInsidePageTableRegion'
  | 'RelocationRegionsOverlap'
  | 'MultiplePageTableRelocationHeaders'
  | 'NoMatchingVpContext'
  | 'InvalidRelocationRegion'
  // igvmmeasure's own errors (§3.1, §3.6, §4)
  | 'PlatformNotInFile'
  | 'InvalidVmsaCount'
  | 'InvalidVmsaGpa'
  | 'InvalidVmsaCr0'
  | 'InvalidVmsaOrder'
  | 'LargePageWithData'
  | 'IdBlockMismatch'
  | 'NoGuestPolicy'
  | 'NoIdBlock'
  | 'MultipleIdBlocks'
  | 'SigningUnsupportedPlatform';

const CODE: Record<IgvmErrorVariant, SevErrorCode> = {
  InvalidFixedHeader: 'ERR_IGVM_HEADER',
  UnsupportedPageSize: 'ERR_IGVM_HEADER',
  PlatformArchUnsupported: 'ERR_IGVM_PLATFORM',
  InvalidChecksum: 'ERR_IGVM_CHECKSUM',
  InvalidBinaryVariableHeaderSection: 'ERR_IGVM_STRUCTURE',
  InvalidVariableHeaderType: 'ERR_IGVM_STRUCTURE',
  InvalidVariableHeaderSize: 'ERR_IGVM_STRUCTURE',
  InvalidCompatibilityMask: 'ERR_IGVM_PLATFORM',
  InvalidVtl: 'ERR_IGVM_FIELD',
  InvalidPlatformType: 'ERR_IGVM_PLATFORM',
  InvalidPlatformVersion: 'ERR_IGVM_PLATFORM',
  InvalidSharedGpaBoundary: 'ERR_IGVM_PLATFORM',
  MultiplePlatformHeadersWithSameIsolation: 'ERR_IGVM_PLATFORM',
  NoPlatformHeaders: 'ERR_IGVM_PLATFORM',
  ReservedNotZero: 'ERR_IGVM_FIELD',
  UnalignedAddress: 'ERR_IGVM_FIELD',
  UnalignedSize: 'ERR_IGVM_FIELD',
  InvalidPageDataType: 'ERR_IGVM_FIELD',
  InvalidDataSize: 'ERR_IGVM_DATA',
  InvalidVmsa: 'ERR_IGVM_DATA',
  InvalidContext: 'ERR_IGVM_DATA',
  InvalidVpContextPlatformType: 'ERR_IGVM_PLATFORM',
  UnsupportedVpContext: 'ERR_IGVM_DATA',
  InvalidParameterAreaIndex: 'ERR_IGVM_INCONSISTENT',
  ParameterInsertInsidePageTableRegion: 'ERR_IGVM_INCONSISTENT',
  RelocationRegionsOverlap: 'ERR_IGVM_INCONSISTENT',
  MultiplePageTableRelocationHeaders: 'ERR_IGVM_INCONSISTENT',
  NoMatchingVpContext: 'ERR_IGVM_INCONSISTENT',
  InvalidRelocationRegion: 'ERR_IGVM_FIELD',
  PlatformNotInFile: 'ERR_IGVM_MEASURE',
  InvalidVmsaCount: 'ERR_IGVM_MEASURE',
  InvalidVmsaGpa: 'ERR_IGVM_MEASURE',
  InvalidVmsaCr0: 'ERR_IGVM_MEASURE',
  InvalidVmsaOrder: 'ERR_IGVM_MEASURE',
  LargePageWithData: 'ERR_IGVM_MEASURE',
  IdBlockMismatch: 'ERR_IGVM_ID_BLOCK',
  NoGuestPolicy: 'ERR_IGVM_ID_BLOCK',
  NoIdBlock: 'ERR_IGVM_ID_BLOCK',
  MultipleIdBlocks: 'ERR_IGVM_ID_BLOCK',
  SigningUnsupportedPlatform: 'ERR_IGVM_ID_BLOCK',
};

export class IgvmError extends SevError {
  constructor(
    readonly variant: IgvmErrorVariant,
    message: string,
  ) {
    super(CODE[variant], message);
  }
}

export function isIgvmError(e: unknown, variant?: IgvmErrorVariant): e is IgvmError {
  return e instanceof IgvmError && (variant === undefined || e.variant === variant);
}
