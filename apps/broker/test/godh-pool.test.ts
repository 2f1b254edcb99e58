import { createPublicKey } from 'node:crypto';
import { GodhKeyPool } from '../src/keybroker/godh-pool';

const fingerprint = (k: ReturnType<GodhKeyPool['take']>) => createPublicKey(k).export({ format: 'der', type: 'spki' }).toString('hex');

describe('GodhKeyPool', () => {
  it('hands out P-384 private keys, each once, from the pool or freshly made when it is empty', async () => {
    const pool = new GodhKeyPool(4);
    const first = pool.take(); // the pool is still empty on the first tick: generated on demand
    await new Promise((r) => setTimeout(r, 200)); // idle time fills the pool
    const keys = [first, ...Array.from({ length: 12 }, () => pool.take())];
    pool.close();
    for (const k of keys) {
      expect(k.type).toBe('private');
      expect(k.asymmetricKeyDetails?.namedCurve).toBe('secp384r1');
    }
    expect(new Set(keys.map(fingerprint)).size).toBe(keys.length);
  });

  it('stops filling once closed', async () => {
    const pool = new GodhKeyPool(4);
    pool.close();
    await new Promise((r) => setTimeout(r, 50));
    expect((pool as unknown as { keys: unknown[] }).keys).toHaveLength(0);
  });
});
