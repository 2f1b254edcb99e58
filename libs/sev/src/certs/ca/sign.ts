import type { KeyObject } from 'node:crypto';
import { SevError } from '../../errors';
import { rsaPssSignLe } from '../crypto';
import { caHash, encodeCaCertificate, parseCaCertificate, type CaCertificate, type CaCertificateFields } from './certificate';
import { CA_MODULUS_BITS, caSignedBodySize, type CaModulusBits } from './layout';

export type UnsignedCaCertificate = Omit<CaCertificateFields, 'signature'>;

/** The key fields of a CA certificate for an RSA-2048 or RSA-4096 public key. */
export function caKeyFromPublicKey(publicKey: KeyObject): Pick<CaCertificate, 'modulusBits' | 'exponent' | 'modulus'> {
  const jwk = publicKey.export({ format: 'jwk' });
  if (jwk.kty !== 'RSA') throw new SevError('ERR_SEV_ARGUMENT', `AMD CA certificates hold RSA keys, not ${String(jwk.kty)}`);
  const modulus = Buffer.from(jwk.n!, 'base64url');
  const modulusBits = modulus.length * 8;
  if (!(CA_MODULUS_BITS as readonly number[]).includes(modulusBits)) {
    throw new SevError('ERR_SEV_ARGUMENT', `AMD CA certificates hold RSA-2048 or RSA-4096 keys, not ${modulusBits} bits`);
  }
  return { modulusBits: modulusBits as CaModulusBits, exponent: Buffer.from(jwk.e!, 'base64url'), modulus };
}

/**
 * Sign a CA certificate the way AMD does: RSA-PSS with the hash the subject's key size implies, salt = digest length.
 * Set `certifyingId` to the signer's key_id (to `keyId` for a self-signed ARK) or the result will not verify.
 */
export function signCaCertificate(fields: UnsignedCaCertificate, signerPrivateKey: KeyObject): CaCertificate {
  if (signerPrivateKey.type !== 'private' || signerPrivateKey.asymmetricKeyType !== 'rsa') {
    throw new SevError('ERR_SEV_ARGUMENT', 'AMD CA certificates are signed with a private RSA key');
  }
  const unsigned = encodeCaCertificate({ ...fields, signature: Buffer.alloc(0) });
  const body = unsigned.subarray(0, caSignedBodySize(fields.modulusBits));
  const signature = rsaPssSignLe(signerPrivateKey, caHash(fields.modulusBits), body);
  return parseCaCertificate(encodeCaCertificate({ ...fields, signature }));
}
