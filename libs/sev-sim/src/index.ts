/**
 * @kb/sev-sim — a simulated AMD Secure Processor for tests, demos and the simulated SEV host. It follows the
 * firmware's side of the launch flow byte for byte, but its root of trust is synthetic: never an AMD root.
 */
export { FirmwareError, type FirmwareStatus } from './errors';
export {
  createPlatform,
  loadPlatform,
  savePlatform,
  platformChain,
  platformRoot,
  encodeRootFile,
  DEFAULT_FIRMWARE,
  type CreatePlatformOptions,
  type FirmwareVersion,
  type SimulatedPlatform,
} from './platform';
export { SimulatedSecureProcessor, type GuestState, type LaunchStartInput } from './firmware';
export {
  SimulatedSnpFirmware,
  type SnpGuestLaunch,
  type SnpGuestState,
  type SnpLaunchStartInput,
  type SnpLaunchUpdateInput,
  type SnpLaunchFinishInput,
} from './snp/firmware';
export { launchIgvm, type IgvmLaunchOptions } from './snp/igvm-host';
// SEV-SNP attestation on the simulated SP: synthetic ARK/ASK/VCEK (never AMD's) and MSG_REPORT_REQ (issue #17)
export { loadSnpCa, syntheticSnpRoots, syntheticSnpCrl, SimulatedSnpChip, type SyntheticSnpCa, type SnpCaMember, type SnpTcbValues } from './snp/authority';
export {
  SimulatedSnpAttestation,
  sealGuestMessage,
  openGuestMessage,
  GuestMessageType,
  type GuestMessage,
  encodeReportRequest,
  decodeReportResponse,
  ReportStatus,
  SNP_REPORT_VERSION,
  MSG_REPORT_REQ_SIZE,
} from './snp/guest-request';
