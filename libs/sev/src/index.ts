/**
 * @kb/sev — the SEV / SEV-ES crypto core, byte-compatible with the Rust `sev` crate (as simple-kbs uses it), sevctl,
 * sev-snp-measure and libvirt's virt-qemu-sev-validate. Folders mirror the crate: certs/ (AMD CA and SEV certificate
 * layouts, chain verification, pinned roots), launch/ (firmware structures), session/ (the guest owner's
 * computations), secret/ (the OVMF secret table), measurement/ (expected launch digests).
 */
export { SevError, isSevError, type SevErrorCode } from './errors';
export { guidToBytesLe, guidFromBytesLe, isGuid } from './guid';
export { constantTimeEqual } from './util/bytes';

// certificates
export { Usage, Algo, usageName, type UsageValue, type AlgoValue } from './certs/sev/usage';
export { SEV_CERT_SIZE, Curve } from './certs/sev/layout';
export {
  parseSevCertificate,
  encodeSevCertificate,
  sevPublicKey,
  emptySignatureSlot,
  type SevCertificate,
  type SevCertificateFields,
  type SevEcKey,
  type SevRsaKey,
  type SevSignatureSlot,
} from './certs/sev/certificate';
export { sevKeyFromPublicKey } from './certs/sev/key';
export { signSevCertificate, type SevSigner } from './certs/sev/sign';
export { parseCaCertificate, encodeCaCertificate, type CaCertificate, type CaCertificateFields } from './certs/ca/certificate';
export { signCaCertificate, caKeyFromPublicKey, type UnsignedCaCertificate } from './certs/ca/sign';
export { verifyCaCertificate, verifySevCertificate } from './certs/verify';
export { AMD_GENERATIONS, builtinCaCertificates, type AmdGeneration } from './certs/builtin/roots';
export { decodeCaChain, decodeChain, decodePlatformChain, encodeChain, PLATFORM_CHAIN_SIZE, type FullChain, type PlatformChain } from './certs/chain/chain';
export { verifyChain, type ExtraRoot, type VerifyChainOptions, type VerifiedChain } from './certs/chain/verify';
export { builtinGeneration, withBuiltinCa } from './certs/chain/generation';
export { cekId } from './certs/chain/identity';

// firmware structures
export { PolicyFlag, policyBytes, assertPolicyRange, assertRepresentablePolicy, describePolicy, type PolicyFlagName } from './launch/policy';
export { LAUNCH_BLOB_SIZE, encodeLaunchBlob, parseLaunchBlob, type LaunchBlob } from './launch/session-blob';
export { MEASUREMENT_SIZE, encodeLaunchMeasurement, parseLaunchMeasurement, type LaunchMeasurement } from './launch/measurement';
export { SECRET_HEADER_SIZE, encodeSecretHeader, parseSecretHeader, type LaunchSecretHeader } from './launch/secret-header';

// the guest owner's side of a launch
export { kdf } from './session/kdf';
export { hmacSha256 } from './session/mac';
export { aes128Ctr } from './session/aes-ctr';
export { generateGodhKey, godhCertificate, type P384Point } from './session/godh';
export { dhPublicKey } from './session/ecdh';
export { wrapSession, unwrapSession, deriveWrapKeys, type SessionKeys, type WrapKeys } from './session/wrap';
export { startSession, sessionFromAgreement, type AgreedSessionInput, type StartSessionInput, type StartedSession } from './session/start';
export { openLaunchBlob, type OpenLaunchBlobInput } from './session/open';
export { computeMeasurement, verifyMeasurement, type MeasurementParams } from './session/measurement';
export { packageSecret, openSecret, type SecretPacket } from './session/secret';
export { SECRET_TABLE_GUID, SECRET_TABLE_MAX_SIZE, buildSecretTable, parseSecretTable, type SecretTableEntry } from './secret/table';

// expected launch digests
export * from './measurement/ovmf';
export * from './measurement/sev-hashes';
export * from './measurement/vcpu-types';
export * from './measurement/vmsa';
export * from './measurement/digest';

// SEV-SNP launch digests (QEMU/OVMF guests, sev-snp-measure compatible)
export * from './snp/page-info';
export * from './snp/launch-digest';
// The page hashes of those digests on a pool of worker threads (launch-digest.md §4.1 CONTENTS), used by default
export {
  pageHashes,
  warmPageHashPool,
  shutdownPageHashPool,
  sharedPageBuffer,
  PAGE_HASH_CHUNK_PAGES,
  PAGE_HASH_MIN_PAGES,
  PAGE_HASH_COLD_MIN_PAGES,
  type PageHashes,
  type PageHashOptions,
  type PageInput,
} from './snp/page-hashes';
// SEV-SNP ID blocks (igvm.md §4–§5) and IGVM files as igvmmeasure reads, measures and signs them (igvm.md §2–§4)
export {
  ID_BLOCK_SIZE,
  SNP_DEFAULT_ID_POLICY,
  encodeIdBlock,
  decodeIdBlock,
  createIdBlock,
  verifyIdBlock,
  loadSnpSigningKey,
  type IdBlock,
  type CreateIdBlockInput,
  type CreatedIdBlock,
  type VerifyIdBlockInput,
  type VerifiedIdBlock,
} from './snp/id-block';
export { ID_AUTH_SIZE, encodeIdAuth, decodeIdAuth, snpPublicKey, snpKeyDigest, type IdAuthInfo } from './snp/id-block-auth';
export { signP384Deterministic, verifyP384, type P384Signature } from './snp/id-block-ecdsa';
export { IgvmError, isIgvmError, type IgvmErrorVariant } from './igvm/errors';
export {
  PlatformType as IgvmPlatformType,
  PageDataType as IgvmPageDataType,
  PageDataFlag as IgvmPageDataFlag,
  type IgvmFile,
  type IgvmPlatform,
  type IgvmInitialization,
  type IgvmDirective,
  type IgvmSnpIdBlock,
} from './igvm/layout';
export { parseIgvm } from './igvm/parser';
export { writeIgvm } from './igvm/writer';
export { crc32 as igvmCrc32 } from './igvm/checksum';
export {
  measureIgvm,
  checkIdBlock as checkIgvmIdBlock,
  platformMask as igvmPlatformMask,
  IGVM_PLATFORMS,
  type IgvmPlatformName,
  type IgvmMeasureOptions,
  type IgvmMeasurement,
  type MeasuredRange,
} from './igvm/measure';
export { signIgvm, snpGuestPolicy as igvmSnpGuestPolicy, type SignIgvmOptions, type SignedIgvm } from './igvm/sign';
export { idBlockDirective, idBlockLaunchBlobs, type IdBlockLaunchBlobs } from './igvm/id-block';
export { packOvmfSnpGuest, type OvmfSnpGuest } from './igvm/ovmf-pack';
export { verifyIgvmIdBlock, type VerifiedIgvmIdBlock } from './igvm/verify';
// SEV-SNP attestation reports: parse and verify (../shared/specs/snp-attestation.md)
export { SnpError, isSnpError, SNP_ERROR_STEP, type SnpErrorCode } from './snp/attestation/errors';
export { SNP_GENERATIONS, SNP_PRODUCT_NAME, generationFromCpuid, type SnpGeneration } from './snp/attestation/generation';
export { decodeTcb, formatTcb, type SnpTcb } from './snp/attestation/tcb';
export {
  SNP_REPORT_SIZE,
  SNP_SIGNED_SIZE,
  ReportOffset,
  SigningKey,
  parseSnpReport,
  formatFirmware,
  decodeHexReport,
  type SnpReport,
  type SnpFirmwareVersion,
} from './snp/attestation/report';
export { reportSignatureP1363, verifyReportSignature } from './snp/attestation/signature';
export { isPem, pemBlocks } from './snp/attestation/pem';
export { parseSnpCertificate, type SnpCertificate } from './snp/attestation/certificate';
export { AmdOid, vekExtensions, decodeHwId, type VekExtensions } from './snp/attestation/extensions';
export { pinnedSnpRoots, pinnedSnpRootCertificates, snpRootSet, type SnpRoots, type SnpRootSet } from './snp/attestation/roots';
export { PSS_ALGORITHM_IDENTIFIERS, verifySnpChain, vekKindOf, type VekKind, type VerifiedChain as VerifiedSnpChain } from './snp/attestation/chain';
export { parseSnpCrl, checkRevocation, type SnpCrl, type SnpCrlMode } from './snp/attestation/crl';
export {
  SNP_CHECKS,
  verifySnpReport,
  assertSnpReport,
  describeSnpReport,
  type SnpCheck,
  type SnpCheckId,
  type SnpCheckStatus,
  type SnpEvidenceCertificates,
  type SnpVerification,
  type VerifySnpReportOptions,
} from './snp/attestation/verify';
export { snpReportFromJson, parseSnpEvidenceJson } from './snp/attestation/evidence-json';
