import type { KeyObject } from 'node:crypto';
import { parseSevCertificate } from '../certs/sev/certificate';
import { parseLaunchBlob } from '../launch/session-blob';
import { sharedSecret } from './ecdh';
import { type SessionKeys, unwrapSession } from './wrap';

export interface OpenLaunchBlobInput {
  launchBlob: Uint8Array;
  godhCert: Uint8Array;
  pdhPrivateKey: KeyObject;
  policy: number;
}

/** The Secure Processor's side of LAUNCH_START, for the simulator: recover TEK/TIK from what the owner sent. */
export function openLaunchBlob(input: OpenLaunchBlobInput): SessionKeys {
  const blob = parseLaunchBlob(input.launchBlob);
  const godh = parseSevCertificate(input.godhCert);
  return unwrapSession(sharedSecret(input.pdhPrivateKey, godh, 'GODH certificate'), blob, input.policy);
}
