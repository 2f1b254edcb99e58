import * as fc from 'fast-check';
import { assertRepresentablePolicy, describePolicy, PolicyFlag, policyBytes } from '../../src/launch/policy';
import { sevErrorCode } from '../session/fixtures';

const le32 = (n: number) => {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n);
  return b;
};

describe('guest policy', () => {
  it('uses the AMD flag bit values', () => {
    expect(PolicyFlag).toEqual({ NODBG: 0x1, NOKS: 0x2, ES: 0x4, NOSEND: 0x8, DOMAIN: 0x10, SEV: 0x20 });
  });

  it.each([0x0, 0x1, 0x3, 0x5, 0x7, 0x33])('accepts %d with bytes equal to LE32', (p) => {
    expect(policyBytes(p).equals(le32(p))).toBe(true);
  });

  it('gives LE32 bytes for every flags-only policy', () => {
    for (let p = 0; p <= 0x3f; p++) expect(policyBytes(p).equals(le32(p))).toBe(true);
  });

  it.each([0x40, 0x8000, 0x10000, 0x01000000, 0x80000000, 0xffffffff])('refuses %d with ERR_SEV_POLICY', (p) => {
    expect(sevErrorCode(() => policyBytes(p))).toBe('ERR_SEV_POLICY');
  });

  it('explains why an unrepresentable policy is refused', () => {
    expect(() => assertRepresentablePolicy(0x10000)).toThrow(/LAUNCH_START would fail/);
  });

  it('refuses values that are not a u32 with ERR_SEV_RANGE', () => {
    for (const p of [-1, 1.5, 2 ** 32, Number.NaN]) expect(sevErrorCode(() => policyBytes(p))).toBe('ERR_SEV_RANGE');
  });

  it('accepts exactly the policies whose crate encoding equals LE32', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 0xffffffff }), (p) => {
        // the crate's lossy encoding, computed independently
        const crate = Buffer.from([p & 0x3f, 0, (p >>> 20) & 0xf, (p >>> 16) & 0xf]);
        const representable = crate.equals(le32(p));
        if (representable) expect(policyBytes(p).equals(crate)).toBe(true);
        else expect(sevErrorCode(() => policyBytes(p))).toBe('ERR_SEV_POLICY');
      }),
      { numRuns: 200 },
    );
  });

  it('describes a policy for logs', () => {
    expect(describePolicy(0)).toEqual([]);
    expect(describePolicy(0x7)).toEqual(['NODBG', 'NOKS', 'ES']);
    expect(describePolicy(0x38)).toEqual(['NOSEND', 'DOMAIN', 'SEV']);
    expect(describePolicy(0x17_01_00_41)).toEqual(['NODBG', 'RESERVED(0x40)', 'API>=1.23']);
  });
});
