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
