import { expectLength } from '../util/bytes';

/**
 * The LAUNCH_START session buffer (SEV API "Session Buffer", virtee sev `launch::sev::Session`, sev-tool
 * `sev_session_buf`). simple-kbs sends it as bincode, which for these fixed arrays is exactly these 128 raw bytes.
 */
export const LAUNCH_BLOB_SIZE = 128;
export const LAUNCH_BLOB = {
  NONCE: 0,
  WRAP_TK: 16,
  WRAP_IV: 48,
  WRAP_MAC: 64,
  POLICY_MAC: 96,
} as const;

export interface LaunchBlob {
  nonce: Buffer; // 16
  /** TEK ‖ TIK encrypted with the KEK. */
  wrapTk: Buffer; // 32
  wrapIv: Buffer; // 16
  wrapMac: Buffer; // 32
  policyMac: Buffer; // 32
}

const FIELDS: [keyof LaunchBlob, number, number][] = [
  ['nonce', LAUNCH_BLOB.NONCE, 16],
  ['wrapTk', LAUNCH_BLOB.WRAP_TK, 32],
  ['wrapIv', LAUNCH_BLOB.WRAP_IV, 16],
  ['wrapMac', LAUNCH_BLOB.WRAP_MAC, 32],
  ['policyMac', LAUNCH_BLOB.POLICY_MAC, 32],
];

export function encodeLaunchBlob(blob: LaunchBlob): Buffer {
  const out = Buffer.alloc(LAUNCH_BLOB_SIZE);
  for (const [name, off, size] of FIELDS) {
    expectLength(`launch blob ${name}`, blob[name], size);
    out.set(blob[name], off);
  }
  return out;
}

export function parseLaunchBlob(bytes: Uint8Array): LaunchBlob {
  expectLength('launch blob', bytes, LAUNCH_BLOB_SIZE);
  const blob = {} as LaunchBlob;
  for (const [name, off, size] of FIELDS) blob[name] = Buffer.from(bytes.subarray(off, off + size));
  return blob;
}
