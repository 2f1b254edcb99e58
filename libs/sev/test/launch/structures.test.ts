import * as fc from 'fast-check';
import { SevError } from '../../src/errors';
import { encodeLaunchMeasurement, MEASUREMENT_SIZE, parseLaunchMeasurement } from '../../src/launch/measurement';
import { encodeSecretHeader, parseSecretHeader, SECRET_HEADER_SIZE } from '../../src/launch/secret-header';
import { encodeLaunchBlob, LAUNCH_BLOB_SIZE, parseLaunchBlob } from '../../src/launch/session-blob';
import { hex, readVectorJson, sevErrorCode } from '../session/fixtures';

const bytes = (n: number) => fc.uint8Array({ minLength: n, maxLength: n }).map((u) => Buffer.from(u));

describe('launch blob (128 bytes)', () => {
  it('has the spec §3.5 field offsets', () => {
    const w = readVectorJson('sev_crate_unit_vectors.json').session_wrap;
    const raw = hex(w.bincode_session_128_bytes_hex_DERIVED);
    const b = parseLaunchBlob(raw);
    expect(b.wrapTk.equals(raw.subarray(16, 48))).toBe(true);
    expect(b.wrapTk.toString('hex')).toBe(w.wrap_tk_hex);
    expect(b.wrapMac.toString('hex')).toBe(w.wrap_mac_hex);
    expect(b.policyMac.toString('hex')).toBe(w.policy_mac_hex);
    const marked = Buffer.from(Array.from({ length: 128 }, (_, i) => i));
    const m = parseLaunchBlob(marked);
    expect([m.nonce[0], m.wrapTk[0], m.wrapIv[0], m.wrapMac[0], m.policyMac[0], m.policyMac[31]]).toEqual([0, 16, 48, 64, 96, 127]);
  });

  it('round-trips encode/parse', () => {
    fc.assert(
      fc.property(bytes(LAUNCH_BLOB_SIZE), (raw) => {
        expect(encodeLaunchBlob(parseLaunchBlob(raw)).equals(raw)).toBe(true);
      }),
      { numRuns: 100 },
    );
    fc.assert(
      fc.property(bytes(16), bytes(32), bytes(16), bytes(32), bytes(32), (nonce, wrapTk, wrapIv, wrapMac, policyMac) => {
        const blob = { nonce, wrapTk, wrapIv, wrapMac, policyMac };
        expect(parseLaunchBlob(encodeLaunchBlob(blob))).toEqual(blob);
      }),
      { numRuns: 100 },
    );
  });

  it('refuses wrong sizes', () => {
    expect(sevErrorCode(() => parseLaunchBlob(Buffer.alloc(127)))).toBe('ERR_SEV_LENGTH');
    expect(sevErrorCode(() => parseLaunchBlob(Buffer.alloc(129)))).toBe('ERR_SEV_LENGTH');
    const ok = parseLaunchBlob(Buffer.alloc(128));
    expect(sevErrorCode(() => encodeLaunchBlob({ ...ok, wrapTk: Buffer.alloc(31) }))).toBe('ERR_SEV_LENGTH');
  });
});

describe('launch measurement (48 bytes)', () => {
  it('is measure then mnonce', () => {
    const raw = Buffer.from(Array.from({ length: 48 }, (_, i) => i));
    const m = parseLaunchMeasurement(raw);
    expect(m.measure.equals(raw.subarray(0, 32))).toBe(true);
    expect(m.mnonce.equals(raw.subarray(32))).toBe(true);
  });

  it('round-trips encode/parse', () => {
    fc.assert(
      fc.property(bytes(MEASUREMENT_SIZE), (raw) => {
        expect(encodeLaunchMeasurement(parseLaunchMeasurement(raw)).equals(raw)).toBe(true);
      }),
      { numRuns: 100 },
    );
  });

  it('parses only exactly 48 bytes', () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ maxLength: 100 }).filter((u) => u.length !== 48),
        (u) => {
          expect(sevErrorCode(() => parseLaunchMeasurement(u))).toBe('ERR_SEV_LENGTH');
        },
      ),
      { numRuns: 100 },
    );
    expect(sevErrorCode(() => encodeLaunchMeasurement({ measure: Buffer.alloc(32), mnonce: Buffer.alloc(15) }))).toBe('ERR_SEV_LENGTH');
  });
});

describe('LAUNCH_SECRET header (52 bytes)', () => {
  it('is flags (LE u32), iv, mac', () => {
    const raw = Buffer.from(Array.from({ length: 52 }, (_, i) => (i < 4 ? [1, 0, 0, 0][i]! : i)));
    const h = parseSecretHeader(raw);
    expect(h.flags).toBe(1);
    expect(h.iv.equals(raw.subarray(4, 20))).toBe(true);
    expect(h.mac.equals(raw.subarray(20, 52))).toBe(true);
  });

  it('round-trips encode/parse', () => {
    fc.assert(
      fc.property(fc.constantFrom(0, 1), bytes(16), bytes(32), (flags, iv, mac) => {
        const h = { flags, iv, mac };
        const enc = encodeSecretHeader(h);
        expect(enc).toHaveLength(SECRET_HEADER_SIZE);
        expect(parseSecretHeader(enc)).toEqual(h);
      }),
      { numRuns: 100 },
    );
  });

  it('refuses wrong sizes and reserved flag bits; random input throws only SevError', () => {
    expect(sevErrorCode(() => parseSecretHeader(Buffer.alloc(51)))).toBe('ERR_SEV_LENGTH');
    const reserved = Buffer.alloc(52);
    reserved.writeUInt32LE(0x80000000);
    expect(sevErrorCode(() => parseSecretHeader(reserved))).toBe('ERR_SEV_FORMAT');
    expect(sevErrorCode(() => encodeSecretHeader({ flags: 4, iv: Buffer.alloc(16), mac: Buffer.alloc(32) }))).toBe('ERR_SEV_FORMAT');
    expect(sevErrorCode(() => encodeSecretHeader({ flags: 0, iv: Buffer.alloc(12), mac: Buffer.alloc(32) }))).toBe('ERR_SEV_LENGTH');
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 60 }), (u) => {
        try {
          parseSecretHeader(u);
        } catch (e) {
          expect(e).toBeInstanceOf(SevError);
        }
      }),
      { numRuns: 200 },
    );
  });
});
