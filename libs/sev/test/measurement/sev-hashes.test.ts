import fc from 'fast-check';
import { createHash } from 'node:crypto';
import { guidToBytesLe } from '../../src/guid';
import {
  PADDED_SEV_HASH_TABLE_SIZE,
  SEV_CMDLINE_ENTRY_GUID,
  SEV_HASH_TABLE_HEADER_GUID,
  SEV_INITRD_ENTRY_GUID,
  SEV_KERNEL_ENTRY_GUID,
  buildPaddedSevHashTable,
  cmdlineHash,
} from '../../src/measurement/sev-hashes';
import { SEVCTL_DIR, hex, measureFile } from './vectors';

const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest();
const EMPTY = new Uint8Array(0);

/** E3's table, VECTORS.md §E (sevctl measurement build with kernel, initrd and cmdline). */
const E3_TABLE =
  '06d63894224fc94cb479a793d411fd21a800d82dd09720bd944caa78e7714d36ab2a32003e8a0b8c83c8eb5a34c6d0b9db3f36ae619b384db601c643af6456106a43dffd31f7ba442f3ad74b9af141e29169781d320076fa1a19324945ce9b1ee17f211ca5b55cbb74d0368eecce53932a1fddc8e8cb3794e74dd2ab7f42b835d5b172d2045b3200af609b31eca2942fc46ed7209c7704771cfc2c91750ff4cb899be39b371b4e480000000000000000';

describe('PaddedSevHashTable against the derived vectors', () => {
  it('kernel=/dev/null initrd=/dev/null append="console=ttyS0 loglevel=7" (A4, A5, A20)', () => {
    const table = buildPaddedSevHashTable({ kernel: EMPTY, initrd: EMPTY, cmdline: 'console=ttyS0 loglevel=7' });
    expect(table).toEqual(measureFile('derived/hashes_table_kernel-devnull_initrd-devnull_append-console.bin'));
  });

  it('kernel=/dev/null, no initrd, no append (A17, A21): absent and empty inputs hash the same', () => {
    const expected = measureFile('derived/hashes_table_kernel-devnull_no-initrd_no-append.bin');
    expect(buildPaddedSevHashTable({ kernel: EMPTY })).toEqual(expected);
    expect(buildPaddedSevHashTable({ kernel: EMPTY, initrd: EMPTY, cmdline: '' })).toEqual(expected);
  });

  it('E3: sevctl fake kernel and initrd, given as bytes or as precomputed SHA-256', () => {
    const kernel = measureFile(`${SEVCTL_DIR}/measurement/vmlinuz-fake`);
    const initrd = measureFile(`${SEVCTL_DIR}/measurement/initrd-fake`);
    const cmdline = 'foo bar baz fake kernel=cmdline';
    expect(hex(buildPaddedSevHashTable({ kernel, initrd, cmdline }))).toBe(E3_TABLE);
    const prehashed = { kernel: { sha256: sha256(kernel) }, initrd: { sha256: sha256(initrd) } };
    expect(hex(buildPaddedSevHashTable({ ...prehashed, cmdline: Buffer.from(cmdline) }))).toBe(E3_TABLE);
  });

  it('hashes the cmdline with its NUL (spec §1.4 known values)', () => {
    expect(hex(cmdlineHash())).toBe('6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d');
    expect(hex(cmdlineHash('console=ttyS0 loglevel=7'))).toBe('321c8eec6a77bad179511397f913a083067ad8cb737bb260aacbfe8df70fc50a');
  });

  it('rejects NUL inside the cmdline and malformed precomputed hashes', () => {
    expect(() => cmdlineHash('a\0b')).toThrow(expect.objectContaining({ code: 'ERR_SEV_ARGUMENT' }));
    expect(() => buildPaddedSevHashTable({ kernel: EMPTY, cmdline: Buffer.from('x\0') })).toThrow(/NUL/);
    expect(() => buildPaddedSevHashTable({ kernel: { sha256: Buffer.alloc(31) } })).toThrow(expect.objectContaining({ code: 'ERR_SEV_LENGTH' }));
    expect(() => buildPaddedSevHashTable({ kernel: {} as { sha256: Uint8Array } })).toThrow(expect.objectContaining({ code: 'ERR_SEV_ARGUMENT' }));
  });
});

describe('PaddedSevHashTable structure (fast-check)', () => {
  it('for any cmdline, initrd and kernel: header, three 50-byte entries in order, zero padding', () => {
    const noNul = fc.string({ unit: 'binary', maxLength: 200 }).filter((s) => !s.includes('\0'));
    const bytes = fc.uint8Array({ maxLength: 64 });
    fc.assert(
      fc.property(noNul, fc.option(bytes), bytes, (cmdline, initrd, kernel) => {
        const t = buildPaddedSevHashTable({ kernel, initrd: initrd ?? undefined, cmdline });
        expect(t.length).toBe(PADDED_SEV_HASH_TABLE_SIZE);
        expect(t.subarray(0, 16)).toEqual(guidToBytesLe(SEV_HASH_TABLE_HEADER_GUID));
        expect(t.readUInt16LE(16)).toBe(168);
        const entries: [string, Buffer][] = [
          [SEV_CMDLINE_ENTRY_GUID, sha256(Buffer.concat([Buffer.from(cmdline, 'utf8'), Buffer.of(0)]))],
          [SEV_INITRD_ENTRY_GUID, sha256(initrd ?? EMPTY)],
          [SEV_KERNEL_ENTRY_GUID, sha256(kernel)],
        ];
        entries.forEach(([guid, hash], i) => {
          const o = 18 + 50 * i;
          expect(t.subarray(o, o + 16)).toEqual(guidToBytesLe(guid));
          expect(t.readUInt16LE(o + 16)).toBe(50);
          expect(t.subarray(o + 18, o + 50)).toEqual(hash);
        });
        expect(t.subarray(168)).toEqual(Buffer.alloc(8));
      }),
      { numRuns: 100 },
    );
  });
});
