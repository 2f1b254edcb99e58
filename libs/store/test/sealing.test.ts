import { createDecipheriv, hkdfSync, randomBytes } from 'node:crypto';
import fc from 'fast-check';
import { isStoreError } from '../src/errors';
import { Sealer, type RowBinding } from '../src/sealing';

const at: RowBinding = { table: 'secrets', column: 'value_enc', rowId: 'default/key/key_id1' };

describe('Sealer', () => {
  const master = randomBytes(32);
  const sealer = new Sealer(master);

  it('round-trips any plaintext for any row', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 512 }), fc.string({ minLength: 1 }), (bytes, rowId) => {
        const plain = Buffer.from(bytes);
        const binding = { ...at, rowId };
        const sealed = sealer.seal(plain, binding);
        expect(sealed.length).toBe(1 + 12 + plain.length + 16);
        expect(sealer.open(sealed, binding).equals(plain)).toBe(true);
      }),
      { numRuns: 150 },
    );
  });

  it('uses a fresh IV for every seal', () => {
    const plain = Buffer.from('same secret');
    const a = sealer.seal(plain, at);
    const b = sealer.seal(plain, at);
    expect(a.subarray(1, 13).equals(b.subarray(1, 13))).toBe(false);
    expect(a.equals(b)).toBe(false);
  });

  it('pins the on-disk format: 0x01 | IV | AES-256-GCM(HKDF subkey, AAD = kb-store/v1, table, column, row id) | tag', () => {
    // Re-derived here from the documented constants, so a change to the format (which would strand every existing
    // database) fails this test.
    const plain = Buffer.from('format check');
    const sealed = sealer.seal(plain, at);
    expect(sealed[0]).toBe(0x01);
    const key = Buffer.from(hkdfSync('sha256', master, Buffer.alloc(0), 'kb-store/v1/aes-256-gcm', 32));
    const d = createDecipheriv('aes-256-gcm', key, sealed.subarray(1, 13));
    d.setAAD(Buffer.from('kb-store/v1\0secrets\0value_enc\0default/key/key_id1'));
    d.setAuthTag(sealed.subarray(sealed.length - 16));
    expect(Buffer.concat([d.update(sealed.subarray(13, sealed.length - 16)), d.final()]).equals(plain)).toBe(true);
  });

  it.each<[string, Partial<RowBinding>]>([
    ['another row', { rowId: 'default/key/key_id2' }],
    ['another column', { column: 'bytes_enc' }],
    ['another table', { table: 'resources' }],
  ])('refuses a ciphertext moved to %s', (_name, change) => {
    const sealed = sealer.seal(Buffer.from('bound'), at);
    expect(() => sealer.open(sealed, { ...at, ...change })).toThrow(expect.objectContaining({ code: 'ERR_STORE_DECRYPT' }));
  });

  it('refuses any single flipped bit', () => {
    const sealed = sealer.seal(Buffer.from('tamper me'), at);
    fc.assert(
      fc.property(fc.integer({ min: 0, max: sealed.length * 8 - 1 }), (bit) => {
        const copy = Buffer.from(sealed);
        copy[bit >> 3]! ^= 1 << (bit & 7);
        let error: unknown;
        try {
          sealer.open(copy, at);
        } catch (e) {
          error = e;
        }
        expect(isStoreError(error, 'ERR_STORE_DECRYPT')).toBe(true);
      }),
      { numRuns: 200 },
    );
  });

  it('refuses truncated input and values sealed under another master key', () => {
    const sealed = sealer.seal(Buffer.from('x'), at);
    expect(() => sealer.open(sealed.subarray(0, 28), at)).toThrow(expect.objectContaining({ code: 'ERR_STORE_DECRYPT' }));
    expect(() => new Sealer(randomBytes(32)).open(sealed, at)).toThrow(expect.objectContaining({ code: 'ERR_STORE_DECRYPT' }));
  });

  it('key check: matches only the same master key, and does not reveal the sealing subkey', () => {
    const check = sealer.keyCheck();
    expect(new Sealer(Buffer.from(master)).matchesKeyCheck(check)).toBe(true);
    expect(new Sealer(randomBytes(32)).matchesKeyCheck(check)).toBe(false);
    expect(sealer.matchesKeyCheck(check.subarray(1))).toBe(false);
    const sealingKey = Buffer.from(hkdfSync('sha256', master, Buffer.alloc(0), 'kb-store/v1/aes-256-gcm', 32));
    expect(check.equals(sealingKey)).toBe(false);
    expect(check.equals(master)).toBe(false);
  });

  it.each([0, 16, 31, 33, 64])('rejects a %i-byte master key', (n) => {
    expect(() => new Sealer(randomBytes(n))).toThrow(expect.objectContaining({ code: 'ERR_STORE_MASTER_KEY' }));
  });
});
