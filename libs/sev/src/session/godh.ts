import { createPublicKey, generateKeyPairSync, type KeyObject } from 'node:crypto';
import { emptySignatureSlot, encodeSevCertificate, type SevEcKey } from '../certs/sev/certificate';
import { sevKeyFromPublicKey } from '../certs/sev/key';
import { Curve } from '../certs/sev/layout';
import { expectLength } from '../util/bytes';
import { Algo, Usage } from '../certs/sev/usage';
import { SevError } from '../errors';
import { assertP384Key } from './ecdh';

/** A fresh guest-owner Diffie-Hellman key (the crate's `Certificate::generate(Usage::PDH)` uses P-384). */
export function generateGodhKey(): KeyObject {
  return generateKeyPairSync('ec', { namedCurve: 'P-384' }).privateKey;
}

/**
 * A fresh GODH key with its public point taken from the generation's own SPKI encoding. Why not generateGodhKey and
 * then read the key: on Node 20, inspecting a just-generated key (asymmetricKeyDetails, export) can deadlock its
 * thread when the allocation it makes while holding the key's lock runs the garbage collection of the generation job,
 * which takes the same lock (seen in bench:sev's loops; apps/broker/src/keybroker/ecdh-worker.js avoids it the same way).
 */
export function generateGodhKeyPair(): { privateKey: KeyObject; point: P384Point } {
  // Node's types have no overload for a public encoding without a private one: the key stays a KeyObject.
  const generate = generateKeyPairSync as unknown as (type: 'ec', options: object) => { privateKey: KeyObject; publicKey: Buffer };
  const { privateKey, publicKey: spki } = generate('ec', { namedCurve: 'P-384', publicKeyEncoding: { type: 'spki', format: 'der' } });
  const point = spki.subarray(spki.length - 97); // SPKI of a P-384 key ends in the uncompressed point 04 ‖ X ‖ Y
  if (point[0] !== 0x04) throw new SevError('ERR_SEV_KEY', 'unexpected SPKI encoding of a generated P-384 key');
  return { privateKey, point: { x: Buffer.from(point.subarray(1, 49)), y: Buffer.from(point.subarray(49)) } };
}

/**
 * A P-384 public point as big-endian coordinates (48 bytes each, as in JWK): how a GODH public key crosses a thread
 * boundary without the cost of a DER export and re-import. Whoever passes one vouches that it is the public half of
 * the key that made Z (it is not re-validated here).
 */
export interface P384Point {
  x: Uint8Array;
  y: Uint8Array;
}

/**
 * The GODH certificate exactly as the sev crate writes it: usage PDH, ECDH_SHA256, API version 0.0, both signature
 * slots INV/empty. It stays unsigned because the firmware never checks the GODH signature.
 */
export function godhCertificate(key: KeyObject | P384Point): Buffer {
  return encodeSevCertificate({
    apiMajor: 0,
    apiMinor: 0,
    usage: Usage.PDH,
    algo: Algo.ECDH_SHA256,
    key: godhSevKey(key),
    sigs: [emptySignatureSlot(), emptySignatureSlot()],
  });
}

function godhSevKey(key: KeyObject | P384Point): SevEcKey {
  if ('x' in key && 'y' in key) {
    expectLength('GODH x coordinate', key.x, 48);
    expectLength('GODH y coordinate', key.y, 48);
    return { kind: 'ec', curve: Curve.P384, x: Buffer.from(key.x), y: Buffer.from(key.y) };
  }
  const pub = key.type === 'private' ? createPublicKey(key) : key;
  assertP384Key(pub, 'public', 'GODH key');
  return sevKeyFromPublicKey(pub) as SevEcKey;
}
