/**
 * The crypto floor both benchmarks compare against: node:crypto P-384 key generation + ECDH against one PDH, the
 * work of a GetBundle. Two ways node offers it; the benchmarks report the faster one.
 */
import { createECDH, diffieHellman, generateKeyPairSync, type KeyObject } from 'node:crypto';
import * as os from 'node:os';

export interface EcdhFloorCandidate {
  id: 'ecdh-keyobject' | 'ecdh-createecdh';
  method: string;
  fn: () => unknown;
}

export function ecdhFloorCandidates(pdhKey: KeyObject): EcdhFloorCandidate[] {
  // The PDH here is imported, not freshly generated, so its JWK export is safe (see apps/broker/src/keybroker/ecdh-worker.js).
  const jwk = pdhKey.export({ format: 'jwk' });
  const pdhPoint = Buffer.concat([Buffer.of(4), Buffer.from(jwk.x!, 'base64url'), Buffer.from(jwk.y!, 'base64url')]);
  if (pdhPoint.length !== 97) throw new Error('the PDH is not a P-384 key');
  return [
    {
      id: 'ecdh-keyobject',
      method: 'generateKeyPairSync + diffieHellman',
      fn: () => diffieHellman({ privateKey: generateKeyPairSync('ec', { namedCurve: 'P-384' }).privateKey, publicKey: pdhKey }),
    },
    {
      id: 'ecdh-createecdh',
      method: 'createECDH.generateKeys + computeSecret',
      fn: () => {
        const e = createECDH('secp384r1');
        e.generateKeys();
        return e.computeSecret(pdhPoint);
      },
    },
  ];
}

/** What a benchmark report says about the machine it ran on. */
export function machineInfo(): { cpu: string; cores: number; node: string; platform: string; date: string } {
  return {
    cpu: os.cpus()[0]?.model ?? 'unknown',
    cores: os.cpus().length,
    node: process.version,
    platform: `${os.platform()} ${os.release()} ${os.arch()}`,
    date: new Date().toISOString(),
  };
}
