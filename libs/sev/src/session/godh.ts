import { createPublicKey, generateKeyPairSync, type KeyObject } from 'node:crypto';
import { emptySignatureSlot, encodeSevCertificate } from '../certs/sev/certificate';
import { sevKeyFromPublicKey } from '../certs/sev/key';
import { Algo, Usage } from '../certs/sev/usage';
import { assertP384Key } from './ecdh';

/** A fresh guest-owner Diffie-Hellman key (the crate's `Certificate::generate(Usage::PDH)` uses P-384). */
export function generateGodhKey(): KeyObject {
  return generateKeyPairSync('ec', { namedCurve: 'P-384' }).privateKey;
}

/**
 * The GODH certificate exactly as the sev crate writes it: usage PDH, ECDH_SHA256, API version 0.0, both signature
 * slots INV/empty. It stays unsigned because the firmware never checks the GODH signature.
 */
export function godhCertificate(key: KeyObject): Buffer {
  const pub = key.type === 'private' ? createPublicKey(key) : key;
  assertP384Key(pub, 'public', 'GODH key');
  return encodeSevCertificate({
    apiMajor: 0,
    apiMinor: 0,
    usage: Usage.PDH,
    algo: Algo.ECDH_SHA256,
    key: sevKeyFromPublicKey(pub),
    sigs: [emptySignatureSlot(), emptySignatureSlot()],
  });
}
