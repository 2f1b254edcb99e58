import { expectLength } from '../util/bytes';

/**
 * LAUNCH_MEASURE output (SEV API "Measurement Buffer", virtee sev `launch::sev::Measurement`): the 32-byte
 * HMAC measure followed by the 16-byte nonce the firmware chose. QEMU/libvirt report it as base64.
 */
export const MEASUREMENT_SIZE = 48;
export const MEASUREMENT = { MEASURE: 0, MNONCE: 32 } as const;

export interface LaunchMeasurement {
  measure: Buffer; // 32
  mnonce: Buffer; // 16
}

/**
 * Strict where the crate is lax: simple-kbs reads the first 48 bytes and ignores the rest (and panics on fewer), so
 * a truncated or padded value from the host is refused here instead.
 */
export function parseLaunchMeasurement(bytes: Uint8Array): LaunchMeasurement {
  expectLength('launch measurement', bytes, MEASUREMENT_SIZE);
  return {
    measure: Buffer.from(bytes.subarray(MEASUREMENT.MEASURE, MEASUREMENT.MNONCE)),
    mnonce: Buffer.from(bytes.subarray(MEASUREMENT.MNONCE, MEASUREMENT_SIZE)),
  };
}

export function encodeLaunchMeasurement(m: LaunchMeasurement): Buffer {
  expectLength('measure', m.measure, 32);
  expectLength('mnonce', m.mnonce, 16);
  return Buffer.concat([m.measure, m.mnonce]);
}
