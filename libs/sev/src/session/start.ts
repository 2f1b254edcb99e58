import { randomBytes, type KeyObject } from 'node:crypto';
import type { SevCertificate } from '../certs/sev/certificate';
import { assertRepresentablePolicy } from '../launch/policy';
import { sharedSecret } from './ecdh';
import { generateGodhKey, godhCertificate } from './godh';
import { wrapSession } from './wrap';

export interface StartSessionInput {
  /** The platform PDH; verifying the chain that certifies it is the caller's job. */
  pdh: SevCertificate;
  policy: number;
  /**
   * The following are random per session; inject them only for known-answer tests — except `godhKey`, which a
   * caller may generate ahead of time (never reusing one).
   */
  tek?: Uint8Array;
  tik?: Uint8Array;
  nonce?: Uint8Array;
  wrapIv?: Uint8Array;
  godhKey?: KeyObject;
}

export interface StartedSession {
  /** The 2084-byte GODH certificate (BundleResponse.GuestOwnerPublicKey). */
  godhCert: Buffer;
  /** The 128-byte launch blob (BundleResponse.LaunchBlob). */
  launchBlob: Buffer;
  tek: Buffer;
  tik: Buffer;
  policy: number;
}

/**
 * The guest owner's half of LAUNCH_START (sev crate `Session::try_from(Policy)` + `start_pdh`): fresh TEK/TIK,
 * an ephemeral GODH key agreed with the PDH, and the wrapped keys. The GODH private key and Z are not returned,
 * so they are dropped with this call.
 */
export function startSession(input: StartSessionInput): StartedSession {
  assertRepresentablePolicy(input.policy); // before spending an ECDH on a session that could never launch
  const godhKey = input.godhKey ?? generateGodhKey();
  const z = sharedSecret(godhKey, input.pdh, 'PDH certificate');
  const tek = Buffer.from(input.tek ?? randomBytes(16));
  const tik = Buffer.from(input.tik ?? randomBytes(16));
  const launchBlob = wrapSession({
    z,
    nonce: input.nonce ?? randomBytes(16),
    wrapIv: input.wrapIv ?? randomBytes(16),
    tek,
    tik,
    policy: input.policy,
  });
  return { godhCert: godhCertificate(godhKey), launchBlob, tek, tik, policy: input.policy };
}
