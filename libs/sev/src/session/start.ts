import { randomBytes, type KeyObject } from 'node:crypto';
import type { SevCertificate } from '../certs/sev/certificate';
import { assertRepresentablePolicy } from '../launch/policy';
import { sharedSecret, sharedSecretOfOwnKey } from './ecdh';
import { generateGodhKeyPair, godhCertificate, type P384Point } from './godh';
import { wrapSession } from './wrap';
import { expectLength } from '../util/bytes';

export interface StartSessionInput {
  /** The platform PDH; verifying the chain that certifies it is the caller's job. */
  pdh: SevCertificate;
  policy: number;
  /** The following are random per session; inject them only for known-answer tests. */
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
  if (input.godhKey) return sessionFromAgreement({ ...input, z: sharedSecret(input.godhKey, input.pdh, 'PDH certificate'), godhPublicKey: input.godhKey });
  const own = generateGodhKeyPair();
  return sessionFromAgreement({ ...input, z: sharedSecretOfOwnKey(own.privateKey, input.pdh, 'PDH certificate'), godhPublicKey: own.point });
}

export interface AgreedSessionInput extends Omit<StartSessionInput, 'pdh' | 'godhKey'> {
  /** Z from a P-384 ECDH of a fresh GODH key with the verified PDH (48 bytes) */
  z: Uint8Array;
  /** that GODH key (its public half goes into the GODH certificate), or its public point */
  godhPublicKey: KeyObject | P384Point;
}

/**
 * startSession after the key agreement, for a caller that runs the ECDH elsewhere (e.g. on a worker thread) —
 * everything after Z is cheap. The caller owns the rule that the GODH key is fresh and Z is then dropped.
 */
export function sessionFromAgreement(input: AgreedSessionInput): StartedSession {
  assertRepresentablePolicy(input.policy);
  expectLength('ECDH shared secret', input.z, 48);
  const tek = Buffer.from(input.tek ?? randomBytes(16));
  const tik = Buffer.from(input.tik ?? randomBytes(16));
  const launchBlob = wrapSession({
    z: input.z,
    nonce: input.nonce ?? randomBytes(16),
    wrapIv: input.wrapIv ?? randomBytes(16),
    tek,
    tik,
    policy: input.policy,
  });
  return { godhCert: godhCertificate(input.godhPublicKey), launchBlob, tek, tik, policy: input.policy };
}
