import { createHmac } from 'node:crypto';
import * as fc from 'fast-check';
import { kdf } from '../../src/session/kdf';
import { hmacSha256 } from '../../src/session/mac';
import { hex, readVectorJson, sevErrorCode } from './fixtures';

const v = readVectorJson('sev_crate_unit_vectors.json');

describe('session KDF (SP 800-108 counter mode, LE counter and length)', () => {
  it('matches the sev crate derive vector', () => {
    const d = v.kdf_derive;
    expect(kdf(hex(d.key_hex), d.label, hex(d.context_hex), d.size).toString('hex')).toBe(d.expected_hex);
  });

  it('matches an independent block-by-block construction for any size', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 48 }), fc.uint8Array({ maxLength: 32 }), fc.integer({ min: 1, max: 100 }), (key, ctx, size) => {
        const blocks: Buffer[] = [];
        for (let i = 1; i <= Math.ceil(size / 32); i++) {
          const counter = Buffer.alloc(4);
          counter.writeUInt32LE(i);
          const bits = Buffer.alloc(4);
          bits.writeUInt32LE(size * 8);
          blocks.push(createHmac('sha256', key).update(counter).update('lbl\0').update(ctx).update(bits).digest());
        }
        expect(kdf(key, 'lbl', ctx, size).equals(Buffer.concat(blocks).subarray(0, size))).toBe(true);
      }),
      { numRuns: 100 },
    );
  });

  it('uses a little-endian counter (a big-endian one gives a different key)', () => {
    const be = createHmac('sha256', Buffer.alloc(16))
      .update(Buffer.from([0, 0, 0, 1]))
      .update('sev-master-secret\0')
      .update(Buffer.alloc(16))
      .update(Buffer.from([0, 0, 0, 0x80]))
      .digest()
      .subarray(0, 16);
    expect(be.toString('hex')).not.toBe(v.kdf_derive.expected_hex);
  });

  it.each([0, -1, 1.5, 2 ** 29])('refuses output size %p with ERR_SEV_RANGE', (size) => {
    expect(sevErrorCode(() => kdf(Buffer.alloc(16), 'x', Buffer.alloc(0), size))).toBe('ERR_SEV_RANGE');
  });
});

describe('session MAC', () => {
  it('matches the sev crate mac vector', () => {
    expect(hmacSha256(hex(v.mac.key_hex), hex(v.mac.data_hex)).toString('hex')).toBe(v.mac.expected_hex);
  });

  it('MACs the concatenation of its parts', () => {
    const key = Buffer.alloc(16, 7);
    expect(hmacSha256(key, Buffer.from('ab'), Buffer.from('c')).equals(hmacSha256(key, Buffer.from('abc')))).toBe(true);
  });
});
