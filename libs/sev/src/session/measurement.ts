import { SevError } from '../errors';
import { parseLaunchMeasurement } from '../launch/measurement';
import { assertPolicyRange } from '../launch/policy';
import { constantTimeEqual, expectLength, u32le } from '../util/bytes';
import { hmacSha256 } from './mac';

/** SEV API LAUNCH_MEASURE: the measurement MAC input starts with this context byte. */
const MEASURE_CONTEXT = 0x04;

export interface MeasurementParams {
  tik: Uint8Array;
  apiMajor: number;
  apiMinor: number;
  build: number;
  policy: number;
  /** The expected launch digest (SHA-256 of the measured memory), 32 bytes. */
  digest: Uint8Array;
}

/**
 * The firmware encodes the version as single bytes. simple-kbs casts its u32 inputs with `as u8`, so a host claiming
 * API major real+256 passed the policy's minimum-version check and still verified; refusing keeps both views equal.
 */
function firmwareByte(name: string, v: number): number {
  if (!Number.isInteger(v) || v < 0 || v > 0xff) {
    throw new SevError('ERR_SEV_RANGE', `${name} must be an integer 0..255, got ${v}`);
  }
  return v;
}

/**
 * HMAC-SHA256(TIK, 0x04 ‖ major ‖ minor ‖ build ‖ policy ‖ digest ‖ mnonce): the 32-byte MEASURE.
 * The policy goes in as the firmware MACs it (raw LE u32, like sevctl and virt-qemu-sev-validate); for every policy
 * a broker session accepts this equals the crate's policyBytes, and guest-owner tools can check any policy.
 */
export function computeMeasurement(p: MeasurementParams & { mnonce: Uint8Array }): Buffer {
  assertPolicyRange(p.policy);
  expectLength('TIK', p.tik, 16);
  expectLength('launch digest', p.digest, 32);
  expectLength('measurement nonce', p.mnonce, 16);
  const header = Buffer.from([MEASURE_CONTEXT, firmwareByte('API major', p.apiMajor), firmwareByte('API minor', p.apiMinor), firmwareByte('build', p.build)]);
  return hmacSha256(p.tik, header, u32le(p.policy), p.digest, p.mnonce);
}

/**
 * Check the 48-byte LAUNCH_MEASURE value against the expected launch parameters and return the verified MEASURE
 * (the LAUNCH_SECRET MAC covers it). A mismatch cannot say which input differs, so the error does not try.
 */
export function verifyMeasurement(p: MeasurementParams & { measurement: Uint8Array }): Buffer {
  const { measure, mnonce } = parseLaunchMeasurement(p.measurement);
  const expected = computeMeasurement({ ...p, mnonce });
  if (!constantTimeEqual(expected, measure)) {
    throw new SevError('ERR_SEV_MEASUREMENT', 'launch measurement does not match the expected launch parameters');
  }
  return measure;
}
