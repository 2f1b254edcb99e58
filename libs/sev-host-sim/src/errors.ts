import type { FirmwareError, FirmwareStatus } from '@kb/sev-sim';

/**
 * What can go wrong on the simulated host, by class, so callers (the QMP server, sim-qemu, launchvm's simulated
 * backend) map failures to QMP errors or exit codes without parsing messages.
 */
export type HostSimErrorCode =
  | 'BAD_CONFIG' // the launch inputs are unusable (QEMU refuses to start)
  | 'LAUNCH_FAILED' // the Secure Processor refused LAUNCH_START / UPDATE / MEASURE
  | 'INVALID_STATE' // the command does not fit the guest's current state
  | 'BAD_ARGUMENT' // a command argument is malformed
  | 'INJECT_FAILED'; // LAUNCH_SECRET refused by the Secure Processor

export class HostSimError extends Error {
  override readonly name = 'HostSimError';
  constructor(
    readonly code: HostSimErrorCode,
    message: string,
    /** the firmware status, when the Secure Processor refused */
    readonly firmware?: FirmwareStatus,
  ) {
    super(message);
  }
}

export function isHostSimError(e: unknown, code?: HostSimErrorCode): e is HostSimError {
  return e instanceof HostSimError && (code === undefined || e.code === code);
}

/**
 * SEV API status codes and the texts QEMU prints for them (`sev_fw_errlist`), so messages read like a real host's:
 * "LAUNCH_START ret=-1 fw_error=10 'Bad signature'".
 */
const FIRMWARE_CODES: Record<FirmwareStatus, [number, string]> = {
  INVALID_PLATFORM_STATE: [1, 'Platform state is invalid'],
  INVALID_GUEST_STATE: [2, 'Guest state is invalid'],
  INVALID_LENGTH: [4, 'Buffer too small'],
  INVALID_CERTIFICATE: [6, 'Certificate is invalid'],
  POLICY_FAILURE: [7, 'Request is not allowed by guest policy'],
  BAD_SIGNATURE: [10, 'Bad signature'],
  BAD_MEASUREMENT: [11, 'Bad measurement'],
  INVALID_GUEST: [16, 'Guest handle is invalid'],
  INVALID_PARAM: [22, 'Invalid parameter'],
};

export function firmwareErrorText(e: FirmwareError): string {
  const [code, text] = FIRMWARE_CODES[e.status];
  return `ret=-1 fw_error=${code} '${text}'`;
}
