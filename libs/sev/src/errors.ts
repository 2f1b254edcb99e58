/**
 * Every failure in libs/sev is a SevError with a stable code, so callers (the broker, the CLI) can map failures to
 * exit codes or gRPC statuses without parsing messages.
 */
export type SevErrorCode =
  | 'ERR_SEV_LENGTH' // input has the wrong size
  | 'ERR_SEV_FORMAT' // a field holds a value the layout does not allow (version, usage, algorithm, curve...)
  | 'ERR_SEV_SIGNATURE' // a signature did not verify
  | 'ERR_SEV_CHAIN' // certificates do not form a valid chain (order, ids, usages)
  | 'ERR_SEV_UNTRUSTED_ROOT' // the chain is valid but its ARK/ASK is not a pinned or explicitly trusted root
  | 'ERR_SEV_POLICY' // a guest policy the encoding cannot represent
  | 'ERR_SEV_RANGE' // a number outside the range the firmware encodes (e.g. API version > 255)
  | 'ERR_SEV_MEASUREMENT' // a launch measurement did not verify
  | 'ERR_SEV_MAC' // a wrap, policy or packet MAC did not verify
  | 'ERR_SEV_FIRMWARE' // firmware image lacks a structure the operation needs (footer table, reset block, hashes area)
  | 'ERR_SEV_SECRET_TABLE' // a secret table is malformed or too large
  | 'ERR_SEV_ARGUMENT' // invalid argument combination
  | 'ERR_SEV_KEY' // a private or public key of the wrong type or curve (e.g. an SNP ID key that is not ECDSA P-384)
  | 'ERR_SEV_WORKER' // a worker thread hashing pages for a digest threw or exited mid-job (no digest is returned)
  // IGVM files (../shared/specs/igvm.md §2.10): each code is one class of defect; IgvmError.variant names igvm 0.4.0's error
  | 'ERR_IGVM_HEADER' // fixed header: magic, version, sizes, offsets, architecture, page size
  | 'ERR_IGVM_CHECKSUM' // CRC-32 over the fixed and variable headers does not match
  | 'ERR_IGVM_STRUCTURE' // variable header framing: truncated, unknown or misplaced type, wrong length
  | 'ERR_IGVM_FIELD' // a structure field holds a value the format forbids (reserved bits, alignment, data type)
  | 'ERR_IGVM_DATA' // a structure's file data is out of range or malformed (VMSA tail, native context)
  | 'ERR_IGVM_PLATFORM' // platform headers and compatibility masks (none, duplicate, unknown, multi-bit)
  | 'ERR_IGVM_INCONSISTENT' // structures contradict each other (parameter areas, relocation regions)
  | 'ERR_IGVM_MEASURE' // the file cannot be measured for the chosen platform (--check-kvm rules, 2 MiB data pages)
  | 'ERR_IGVM_ID_BLOCK'; // an ID block does not match the measured launch digest, or cannot be made

export class SevError extends Error {
  override readonly name = 'SevError';
  constructor(
    readonly code: SevErrorCode,
    message: string,
  ) {
    super(message);
  }
}

export function isSevError(e: unknown, code?: SevErrorCode): e is SevError {
  return e instanceof SevError && (code === undefined || e.code === code);
}
