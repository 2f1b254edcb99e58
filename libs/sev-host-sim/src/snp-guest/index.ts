export { SimulatedSnpGuest, type SnpGuestImage, type SnpGuestOptions } from './guest';
export {
  KbsClient,
  KBS_PROTOCOL_VERSION,
  SUPPORTED_HASH_ALGORITHMS,
  sampleEvidenceProvider,
  decodeToken,
  type EvidenceProvider,
  type KbsClientOptions,
  type KbsToken,
} from './kbs-client';
export { TeeKeyPair, protectedAad, type JweFlattened, type TeeCurve } from './tee-key';
export {
  canonicalJson,
  runtimeDataDigest,
  snpReportData,
  selectedHash,
  KbsProtocolError,
  type KbsHashAlgorithm,
  type KbsClientErrorCode,
  type RuntimeData,
} from './binding';
export { snpEvidenceJson, type SnpCertTableEntry, type SnpCertType } from './evidence';
