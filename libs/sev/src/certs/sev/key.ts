import { createPublicKey, type KeyObject } from 'node:crypto';
import { SevError } from '../../errors';
import type { SevEcKey, SevRsaKey } from './certificate';
import { Curve } from './layout';

/** By OpenSSL curve name: the SEV curve id and the coordinate size. */
const EC_CURVES: Record<string, { curve: number; size: number }> = {
  prime256v1: { curve: Curve.P256, size: 32 },
  secp384r1: { curve: Curve.P384, size: 48 },
};

/** The pubkey fields of a SEV certificate for a node public key (P-256 / P-384 EC, RSA-2048 / RSA-4096). */
export function sevKeyFromPublicKey(publicKey: KeyObject): SevEcKey | SevRsaKey {
  if (publicKey.asymmetricKeyType === 'ec') return ecKeyFromSpki(publicKey);
  const jwk = publicKey.export({ format: 'jwk' });
  if (jwk.kty === 'RSA') {
    const modulus = Buffer.from(jwk.n!, 'base64url');
    const modulusBits = modulus.length * 8;
    if (modulusBits !== 2048 && modulusBits !== 4096) {
      throw new SevError('ERR_SEV_ARGUMENT', `SEV certificates hold RSA-2048 or RSA-4096 keys, not ${modulusBits} bits`);
    }
    return { kind: 'rsa', modulusBits, exponent: Buffer.from(jwk.e!, 'base64url'), modulus };
  }
  throw new SevError('ERR_SEV_ARGUMENT', `SEV certificates hold EC or RSA keys, not ${String(jwk.kty)}`);
}

/**
 * EC coordinates from the SPKI DER (which ends in the uncompressed point) rather than a JWK export: on Node 20 a JWK
 * export of a freshly generated key can deadlock its thread (it allocates while holding the key's lock, and a garbage
 * collection it triggers may finalize the generating job, which takes the same lock).
 */
function ecKeyFromSpki(publicKey: KeyObject): SevEcKey {
  const namedCurve = publicKey.asymmetricKeyDetails?.namedCurve;
  const ec = EC_CURVES[namedCurve ?? ''];
  if (ec === undefined) throw new SevError('ERR_SEV_ARGUMENT', `SEV certificates hold P-256 or P-384 keys, not ${namedCurve}`);
  const der = (publicKey.type === 'private' ? createPublicKey(publicKey) : publicKey).export({ format: 'der', type: 'spki' });
  const point = der.subarray(der.length - (1 + 2 * ec.size));
  if (point[0] !== 0x04) throw new SevError('ERR_SEV_ARGUMENT', 'EC public key is not encoded as an uncompressed point');
  return { kind: 'ec', curve: ec.curve, x: Buffer.from(point.subarray(1, 1 + ec.size)), y: Buffer.from(point.subarray(1 + ec.size)) };
}
