import * as fc from 'fast-check';
import { SevError } from '../../src/errors';
import { buildSecretTable, parseSecretTable, SECRET_TABLE_GUID, SECRET_TABLE_MAX_SIZE } from '../../src/secret/table';
import { sevErrorCode } from '../session/fixtures';

const GUID = '736869e5-84f0-4973-92ec-06879ce3da0b';
/** 1e74f542-71dd-4d66-963e-ef4287ff173b in the EFI mixed-endian layout, written out by hand. */
const TABLE_GUID_LE = Buffer.from('42f5741edd71664d963eef4287ff173b', 'hex');

const guidArb = fc.uuid().map((g) => g.toLowerCase());
const entryArb = fc.record({ guid: guidArb, data: fc.uint8Array({ maxLength: 200 }).map((u) => Buffer.from(u)) });

describe('secret table', () => {
  it('matches the simple-kbs golden: 11-byte secret → total 51, entry 31, 13 bytes of padding', () => {
    const t = buildSecretTable([{ guid: GUID, data: Buffer.from('hello world') }]);
    expect(t).toHaveLength(64);
    expect(t.subarray(0, 16).equals(TABLE_GUID_LE)).toBe(true);
    expect(t.readUInt32LE(16)).toBe(51);
    expect(t.subarray(20, 36).equals(Buffer.from('e5696873f084734992ec06879ce3da0b', 'hex'))).toBe(true);
    expect(t.readUInt32LE(36)).toBe(31);
    expect(t.subarray(40, 51).toString()).toBe('hello world');
    expect(t.subarray(51).equals(Buffer.alloc(13))).toBe(true);
    expect(SECRET_TABLE_GUID).toBe('1e74f542-71dd-4d66-963e-ef4287ff173b');
  });

  it('writes no padding when the total is already a multiple of 16', () => {
    const t = buildSecretTable([{ guid: GUID, data: Buffer.alloc(8, 1) }]); // 20 + 28 = 48
    expect(t).toHaveLength(48);
    expect(t.readUInt32LE(16)).toBe(48);
    expect(buildSecretTable([])).toHaveLength(32);
  });

  it('round-trips random entries', () => {
    fc.assert(
      fc.property(fc.uniqueArray(entryArb, { maxLength: 12, selector: (e) => e.guid }), (entries) => {
        expect(parseSecretTable(buildSecretTable(entries))).toEqual(entries);
      }),
      { numRuns: 200 },
    );
  });

  it('accepts upper-case GUIDs and treats them as the same GUID for duplicates', () => {
    const t = buildSecretTable([{ guid: GUID.toUpperCase(), data: Buffer.from('x') }]);
    expect(parseSecretTable(t)).toEqual([{ guid: GUID, data: Buffer.from('x') }]);
    const dup = [
      { guid: GUID, data: Buffer.from('a') },
      { guid: GUID.toUpperCase(), data: Buffer.from('b') },
    ];
    expect(sevErrorCode(() => buildSecretTable(dup))).toBe('ERR_SEV_SECRET_TABLE');
  });

  it('refuses tables larger than the 4096-byte secret page', () => {
    const max = SECRET_TABLE_MAX_SIZE - 40; // one entry filling the page exactly
    expect(buildSecretTable([{ guid: GUID, data: Buffer.alloc(max) }])).toHaveLength(4096);
    expect(sevErrorCode(() => buildSecretTable([{ guid: GUID, data: Buffer.alloc(max + 1) }]))).toBe('ERR_SEV_SECRET_TABLE');
    expect(sevErrorCode(() => parseSecretTable(Buffer.alloc(4112)))).toBe('ERR_SEV_SECRET_TABLE');
  });

  it('refuses the nil GUID and malformed GUID strings', () => {
    expect(sevErrorCode(() => buildSecretTable([{ guid: '00000000-0000-0000-0000-000000000000', data: Buffer.from('x') }]))).toBe('ERR_SEV_SECRET_TABLE');
    expect(sevErrorCode(() => buildSecretTable([{ guid: 'not-a-guid', data: Buffer.from('x') }]))).toBe('ERR_SEV_FORMAT');
  });

  describe('parse is strict', () => {
    const good = buildSecretTable([
      { guid: GUID, data: Buffer.from('hello world') },
      { guid: '736869e5-aaaa-4973-92ec-06879ce3da0b', data: Buffer.from('second') },
    ]); // total 20 + 31 + 26 = 77, padded to 80
    const mutate = (f: (b: Buffer) => void) => {
      const b = Buffer.from(good);
      f(b);
      return b;
    };
    it.each<[string, Buffer, RegExp]>([
      ['wrong header GUID', mutate((b) => (b[0]! ^= 1)), /header GUID/],
      ['total length below the header size', mutate((b) => b.writeUInt32LE(19, 16)), /total length 19 out of range/],
      ['total length beyond the buffer', mutate((b) => b.writeUInt32LE(81, 16)), /total length 81 out of range/],
      ['total length not matching the padded size', mutate((b) => b.writeUInt32LE(60, 16)), /padded to 16/],
      ['non-zero padding', mutate((b) => (b[79] = 1)), /non-zero padding/],
      ['missing padding', good.subarray(0, 77), /padded to 16/],
      ['extra padding', Buffer.concat([good, Buffer.alloc(16)]), /padded to 16/],
      ['entry length below 20', mutate((b) => b.writeUInt32LE(19, 36)), /entry length 19 at offset 20/],
      ['entry length beyond the table', mutate((b) => b.writeUInt32LE(58, 36)), /entry length 58 at offset 20/],
      ['truncated entry header', mutate((b) => b.writeUInt32LE(47, 36)), /truncated entry header at offset 67/],
      ['duplicate GUID', mutate((b) => b.copy(b, 51, 20, 36)), /duplicate GUID/],
      ['nil GUID', mutate((b) => b.fill(0, 51, 67)), /nil GUID at offset 51/],
      ['shorter than a header', Buffer.alloc(10), /shorter than the header/],
    ])('refuses %s', (_why, bytes, message) => {
      expect(sevErrorCode(() => parseSecretTable(bytes))).toBe('ERR_SEV_SECRET_TABLE');
      expect(() => parseSecretTable(bytes)).toThrow(message);
    });

    it('accepts the unmodified table', () => {
      expect(parseSecretTable(good).map((e) => e.data.toString())).toEqual(['hello world', 'second']);
    });

    it('throws only SevError on random bytes, with or without a valid header', () => {
      fc.assert(
        fc.property(fc.uint8Array({ maxLength: 300 }), fc.boolean(), (u, withHeader) => {
          const b = Buffer.from(u);
          if (withHeader && b.length >= 20) {
            TABLE_GUID_LE.copy(b);
            b.writeUInt32LE(Math.min(b.length, b.readUInt32LE(16) % 320), 16);
          }
          try {
            parseSecretTable(b);
          } catch (e) {
            expect(e).toBeInstanceOf(SevError);
          }
        }),
        { numRuns: 200 },
      );
    });
  });
});

describe("libvirt's padding", () => {
  it('accepts the whole extra zero block libvirt adds to an already aligned table, and nothing else extra', () => {
    const guid = '736869e5-84f0-4973-92ec-06879ce3da0b';
    const table = buildSecretTable([{ guid, data: Buffer.alloc(24, 7) }]); // 20 + 44 = 64 bytes: aligned, no padding
    expect(table).toHaveLength(64);
    const libvirt = Buffer.concat([table, Buffer.alloc(16)]);
    expect(parseSecretTable(libvirt)).toEqual([{ guid, data: Buffer.alloc(24, 7) }]);
    expect(() => parseSecretTable(Buffer.concat([table, Buffer.alloc(32)]))).toThrow(expect.objectContaining({ code: 'ERR_SEV_SECRET_TABLE' }));
    const dirty = Buffer.from(libvirt);
    dirty[70] = 1;
    expect(() => parseSecretTable(dirty)).toThrow(expect.objectContaining({ code: 'ERR_SEV_SECRET_TABLE' }));
  });
});
