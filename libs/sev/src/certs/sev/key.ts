import type { KeyObject } from 'node:crypto';
import { SevError } from '../../errors';
import type { SevEcKey, SevRsaKey } from './certificate';
import { Curve } from './layout';

const CURVE_IDS: Record<string, number> = { 'P-256': Curve.P256, 'P-384': Curve.P384 };

/** The pubkey fields of a SEV certificate for a node public key (P-256 / P-384 EC, RSA-2048 / RSA-4096). */
export function sevKeyFromPublicKey(publicKey: KeyObject): SevEcKey | SevRsaKey {
  const jwk = publicKey.export({ format: 'jwk' });
  if (jwk.kty === 'EC') {
    const curve = CURVE_IDS[jwk.crv ?? ''];
    if (curve === undefined) throw new SevError('ERR_SEV_ARGUMENT', `SEV certificates hold P-256 or P-384 keys, not ${jwk.crv}`);
    return { kind: 'ec', curve, x: Buffer.from(jwk.x!, 'base64url'), y: Buffer.from(jwk.y!, 'base64url') };
  }
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
