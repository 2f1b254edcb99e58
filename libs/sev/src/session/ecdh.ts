import { diffieHellman, type KeyObject } from 'node:crypto';
import { type SevCertificate, sevPublicKey } from '../certs/sev/certificate';
import { Curve } from '../certs/sev/layout';
import { Algo, Usage } from '../certs/sev/usage';
import { SevError } from '../errors';

const P384_BYTES = 48;

/** The GODH is always P-384, so both ends of the session ECDH must be P-384 keys. */
export function assertP384Key(key: KeyObject, type: 'private' | 'public', what: string): void {
  if (key.type !== type || key.asymmetricKeyType !== 'ec' || key.asymmetricKeyDetails?.namedCurve !== 'secp384r1') {
    throw new SevError('ERR_SEV_ARGUMENT', `${what} must be a P-384 ${type} key`);
  }
}

/**
 * Only a Diffie-Hellman certificate (usage PDH, ECDH algorithm, curve P-384) may take part in the key exchange: the
 * platform PDH on the guest-owner side, the GODH on the Secure Processor side.
 */
export function dhPublicKey(cert: SevCertificate, what: string): KeyObject {
  if (cert.usage !== Usage.PDH) {
    throw new SevError('ERR_SEV_FORMAT', `${what} has usage 0x${cert.usage.toString(16)}, expected PDH (0x1003)`);
  }
  if (cert.algo !== Algo.ECDH_SHA256 && cert.algo !== Algo.ECDH_SHA384) {
    throw new SevError('ERR_SEV_FORMAT', `${what} has algorithm 0x${cert.algo.toString(16)}, expected ECDH`);
  }
  if (cert.key.kind !== 'ec' || cert.key.curve !== Curve.P384) {
    throw new SevError('ERR_SEV_FORMAT', `${what} is not a P-384 key`);
  }
  return sevPublicKey(cert);
}

/**
 * Z = x-coordinate of the ECDH product as OpenSSL returns it: 48 bytes big-endian, zero-padded, not reversed
 * (sev crate `PrivateKey::derive`, sev-tool `calculate_shared_secret`).
 */
export function sharedSecret(privateKey: KeyObject, peer: SevCertificate, what: string): Buffer {
  assertP384Key(privateKey, 'private', 'ECDH private key');
  return sharedSecretOfOwnKey(privateKey, peer, what);
}

/** sharedSecret with a P-384 key the caller just generated itself, which is not inspected (see godh.ts generateGodhKeyPair). */
export function sharedSecretOfOwnKey(privateKey: KeyObject, peer: SevCertificate, what: string): Buffer {
  const z = diffieHellman({ privateKey, publicKey: dhPublicKey(peer, what) });
  if (z.length !== P384_BYTES) throw new SevError('ERR_SEV_LENGTH', `ECDH secret is ${z.length} bytes, expected 48`);
  return z;
}
