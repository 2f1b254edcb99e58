import * as fc from 'fast-check';
import { SevError } from '../../src/errors';
import { parseSecretHeader } from '../../src/launch/secret-header';
import { buildSecretTable, parseSecretTable } from '../../src/secret/table';
import { openSecret, packageSecret } from '../../src/session/secret';
import { b64, readSevctlFile, readVectorJson, sevErrorCode } from './fixtures';

const sb = readVectorJson('sevctl_cli_vectors.json').secret_build;
const keys = {
  tek: readSevctlFile(sb.tek_file),
  tik: readSevctlFile(sb.tik_file),
  measure: b64(sb.launch_measure_blob_b64).subarray(0, 32),
};

describe('packageSecret: sevctl `secret build` golden outputs', () => {
  it.each([0, 1])('case %i is byte-exact (header and payload)', (i) => {
    const c = sb.cases[i];
    const entries = (c.secrets as [string, string][]).map(([guid, file]) => ({ guid, data: readSevctlFile(file) }));
    const table = buildSecretTable(entries);
    const packet = packageSecret({ ...keys, data: table, iv: b64(sb.iv_b64) });
    expect(packet.header.toString('base64')).toBe(c.expected_header_b64);
    expect(packet.data.toString('base64')).toBe(c.expected_payload_b64);

    // and the other direction: the sevctl packet opens to a table holding exactly the secret files
    const plain = openSecret({ ...keys, header: b64(c.expected_header_b64), data: b64(c.expected_payload_b64) });
    expect(parseSecretTable(plain)).toEqual(entries);
  });
});

describe('packageSecret / openSecret', () => {
  const data = Buffer.from('a secret table or any other payload');
  const packet = packageSecret({ ...keys, data });

  it('round-trips with a random IV and flags 0', () => {
    expect(packet.header).toHaveLength(52);
    expect(packet.data).toHaveLength(data.length);
    expect(packet.data.equals(data)).toBe(false);
    expect(parseSecretHeader(packet.header).flags).toBe(0);
    expect(openSecret({ ...keys, ...packet }).equals(data)).toBe(true);
    const again = packageSecret({ ...keys, data });
    expect(parseSecretHeader(again.header).iv.equals(parseSecretHeader(packet.header).iv)).toBe(false);
  });

  it('carries the COMPRESSED flag under the MAC and refuses reserved flag bits', () => {
    const p = packageSecret({ ...keys, data, flags: 1 });
    expect(parseSecretHeader(p.header).flags).toBe(1);
    expect(openSecret({ ...keys, ...p }).equals(data)).toBe(true);
    expect(sevErrorCode(() => packageSecret({ ...keys, data, flags: 2 }))).toBe('ERR_SEV_FORMAT');
    expect(sevErrorCode(() => packageSecret({ ...keys, data, flags: -1 }))).toBe('ERR_SEV_RANGE');
  });

  it('rejects a bit flip in the header, the data or the measure with ERR_SEV_MAC', () => {
    // flag bit 0 (COMPRESSED) is MAC'd; flag bits 1–31 are reserved and refused before the MAC
    for (let bit = 0; bit < 52 * 8; bit++) {
      const header = Buffer.from(packet.header);
      header[bit >> 3]! ^= 1 << (bit & 7);
      const expected = bit >= 1 && bit < 32 ? 'ERR_SEV_FORMAT' : 'ERR_SEV_MAC';
      expect(sevErrorCode(() => openSecret({ ...keys, header, data: packet.data }))).toBe(expected);
    }
    for (let bit = 0; bit < data.length * 8; bit++) {
      const d = Buffer.from(packet.data);
      d[bit >> 3]! ^= 1 << (bit & 7);
      expect(sevErrorCode(() => openSecret({ ...keys, header: packet.header, data: d }))).toBe('ERR_SEV_MAC');
    }
    for (let bit = 0; bit < 32 * 8; bit++) {
      const measure = Buffer.from(keys.measure);
      measure[bit >> 3]! ^= 1 << (bit & 7);
      expect(sevErrorCode(() => openSecret({ ...keys, measure, ...packet }))).toBe('ERR_SEV_MAC');
    }
    expect(sevErrorCode(() => openSecret({ ...keys, header: packet.header, data: packet.data.subarray(1) }))).toBe('ERR_SEV_MAC');
    expect(sevErrorCode(() => openSecret({ ...keys, tik: Buffer.alloc(16), ...packet }))).toBe('ERR_SEV_MAC');
  });

  it('checks key, measure and IV sizes', () => {
    expect(sevErrorCode(() => packageSecret({ ...keys, tek: Buffer.alloc(32), data }))).toBe('ERR_SEV_LENGTH');
    expect(sevErrorCode(() => packageSecret({ ...keys, tik: Buffer.alloc(15), data }))).toBe('ERR_SEV_LENGTH');
    expect(sevErrorCode(() => packageSecret({ ...keys, measure: b64(sb.launch_measure_blob_b64), data }))).toBe('ERR_SEV_LENGTH');
    expect(sevErrorCode(() => packageSecret({ ...keys, data, iv: Buffer.alloc(12) }))).toBe('ERR_SEV_LENGTH');
  });

  it('round-trips any payload and throws only SevError for garbage', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), (d) => {
        const p = packageSecret({ ...keys, data: d });
        expect(openSecret({ ...keys, ...p }).equals(Buffer.from(d))).toBe(true);
      }),
      { numRuns: 100 },
    );
    fc.assert(
      fc.property(
        fc.oneof(fc.uint8Array({ minLength: 52, maxLength: 52 }), fc.uint8Array({ maxLength: 80 })),
        fc.uint8Array({ maxLength: 100 }),
        fc.oneof(fc.constant(keys.tik), fc.uint8Array({ maxLength: 20 })),
        (header, d, tik) => {
          expect(() => openSecret({ ...keys, tik, header, data: d })).toThrow(SevError);
        },
      ),
      { numRuns: 200 },
    );
  });
});
