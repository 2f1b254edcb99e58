import { diffieHellman, generateKeyPairSync } from 'node:crypto';
import { EcdhPool } from '../src/keybroker/ecdh-pool';

describe('EcdhPool (P-384 agreement on worker threads)', () => {
  const pdh = generateKeyPairSync('ec', { namedCurve: 'P-384' });

  it('returns Z that the PDH owner derives too, with a fresh GODH key every time', async () => {
    const pool = new EcdhPool(2);
    try {
      const results = await Promise.all(Array.from({ length: 20 }, () => pool.agree(pdh.publicKey)));
      for (const r of results) {
        expect(r.z).toHaveLength(48);
        expect(diffieHellman({ privateKey: pdh.privateKey, publicKey: r.godhPublicKey }).equals(r.z)).toBe(true);
        expect(r.godhPublicKey.asymmetricKeyDetails?.namedCurve).toBe('secp384r1');
      }
      const spkis = new Set(results.map((r) => r.godhPublicKey.export({ format: 'der', type: 'spki' }).toString('hex')));
      expect(spkis.size).toBe(results.length);
    } finally {
      await pool.close();
    }
  });

  it('answers an unusable peer key with an error, keeps serving, and refuses work once closed', async () => {
    const pool = new EcdhPool(1);
    const p256 = generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey;
    await expect(pool.agree(p256)).rejects.toThrow(/ECDH worker/);
    await expect(pool.agree(pdh.publicKey)).resolves.toHaveProperty('z');
    await pool.close();
    await expect(pool.agree(pdh.publicKey)).rejects.toThrow(/closed/);
  });
});
