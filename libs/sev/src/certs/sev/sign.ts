import type { KeyObject } from 'node:crypto';
import { SevError } from '../../errors';
import { ecdsaSignSlot, rsaPssSignLe } from '../crypto';
import { encodeSevCertificate, parseSevCertificate, type SevCertificate, type SevCertificateFields } from './certificate';
import { SEV_CERT } from './layout';
import { SIGNATURE_ALGOS } from './signature';
import { algoHash, algoKind, usageName } from './usage';

/** Who signs: the usage and algorithm written into the slot, and the matching private key. */
export interface SevSigner {
  usage: number;
  algo: number;
  privateKey: KeyObject;
}

/**
 * Sign a SEV certificate into one of its two slots, as the firmware (ECDSA P-384 with SHA-256) or AMD (RSA-PSS, for a
 * CEK signed by the ASK) do. The other slot is kept as given. Returns the certificate re-parsed from its final bytes.
 */
export function signSevCertificate(subject: SevCertificateFields, slot: 0 | 1, signer: SevSigner): SevCertificate {
  const kind = algoKind(signer.algo);
  const hash = algoHash(signer.algo);
  if (!SIGNATURE_ALGOS.includes(signer.algo) || kind === undefined || hash === undefined) {
    throw new SevError('ERR_SEV_ARGUMENT', `algorithm 0x${signer.algo.toString(16)} cannot sign`);
  }
  if (signer.privateKey.type !== 'private' || signer.privateKey.asymmetricKeyType !== kind) {
    throw new SevError('ERR_SEV_ARGUMENT', `a ${usageName(signer.usage)} signature with algorithm 0x${signer.algo.toString(16)} needs a private ${kind} key`);
  }
  if (slot !== 0 && slot !== 1) throw new SevError('ERR_SEV_ARGUMENT', `a SEV certificate has signature slots 0 and 1, not ${String(slot)}`);
  const body = encodeSevCertificate(subject).subarray(0, SEV_CERT.BODY_END);
  const sig = kind === 'ec' ? ecdsaSignSlot(signer.privateKey, hash, body) : rsaPssSignLe(signer.privateKey, hash, body);
  const sigs: SevCertificateFields['sigs'] = [subject.sigs[0], subject.sigs[1]];
  sigs[slot] = { usage: signer.usage, algo: signer.algo, sig };
  return parseSevCertificate(encodeSevCertificate({ ...subject, sigs }));
}
