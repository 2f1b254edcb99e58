/**
 * Firmware status codes (SEV API "Status Codes") the simulated Secure Processor answers with, so callers see the
 * same failure a real PSP would report through QEMU/libvirt.
 */
export type FirmwareStatus =
  | 'INVALID_PLATFORM_STATE'
  | 'INVALID_GUEST_STATE'
  | 'INVALID_GUEST' // unknown handle
  | 'INVALID_LENGTH'
  | 'POLICY_FAILURE'
  | 'BAD_SIGNATURE' // a MAC did not verify (LAUNCH_START wrap/policy MAC, LAUNCH_SECRET header MAC)
  | 'BAD_MEASUREMENT'
  | 'INVALID_CERTIFICATE'
  | 'INVALID_PARAM';

export class FirmwareError extends Error {
  override readonly name = 'FirmwareError';
  constructor(
    readonly status: FirmwareStatus,
    message: string,
  ) {
    super(`${status}: ${message}`);
  }
}
