import { readdirSync } from 'node:fs';
import fc from 'fast-check';
import { parseIgvm } from '../../src/igvm/parser';
import { writeIgvm } from '../../src/igvm/writer';
import { measureIgvm } from '../../src/igvm/measure';
import { isIgvmError } from '../../src/igvm/errors';
import { PARAMETER_USAGE_TYPES, type IgvmDirective, type IgvmFile, type IgvmPlatform } from '../../src/igvm/layout';
import { decodeSnpIdBlock } from '../../src/igvm/structures';
import { IGVM_DIR, readVector } from './vectors';
import { fixChecksum, pattern } from './build';

const okFiles = [
  ...readdirSync(IGVM_DIR).filter((f) => f.endsWith('.igvm')),
  ...readdirSync(`${IGVM_DIR}/parse`)
    .filter((f) => f.startsWith('ok-'))
    .map((f) => `parse/${f}`),
];

describe('parse → write → parse is the identity', () => {
  it.each(okFiles)('%s', (name) => {
    const bytes = readVector(name);
    const model = parseIgvm(bytes);
    const written = writeIgvm(model);
    expect(parseIgvm(written)).toEqual(model);
    expect(writeIgvm(parseIgvm(written)).equals(written)).toBe(true);
    // Files written by igvm 0.4.0's rules come back byte for byte; the lenient one loses its gap and stray bytes.
    if (name !== 'parse/ok-lenient.igvm' && name !== 'parse/ok-data-not-in-checksum.igvm') expect(written.equals(bytes)).toBe(true);
  });
});

/** Random but valid files: platforms, policies and directives of every kind the writer knows. */
const platformsArb: fc.Arbitrary<IgvmPlatform[]> = fc.subarray([2, 5, 4, 0, 3], { minLength: 1 }).chain((types) =>
  fc.shuffledSubarray([1, 2, 4, 8, 16, 32, 64, 128], { minLength: types.length, maxLength: types.length }).map((masks) =>
    types.map((t, i) => ({
      compatibilityMask: masks[i]!,
      highestVtl: 0,
      platformType: t,
      platformVersion: 1,
      sharedGpaBoundary: t === 0 ? 0n : BigInt(i) << 40n,
    })),
  ),
);

const gpaArb = fc.bigInt({ min: 0n, max: (1n << 40n) - 1n }).map((g) => g << 12n);

function directivesArb(platforms: IgvmPlatform[]): fc.Arbitrary<IgvmDirective[]> {
  const anyMask = fc.integer({ min: 0, max: 0xff });
  const vpPlatforms = platforms.filter((p) => p.platformType !== 3);
  const page: fc.Arbitrary<IgvmDirective> = fc
    .record({
      gpa: gpaArb,
      mask: anyMask,
      flags: fc.constantFrom(0, 1, 2, 4, 6, 0x80000000),
      dataType: fc.integer({ min: 0, max: 3 }),
      seed: fc.option(fc.integer({ min: 0, max: 5 }), { nil: undefined }),
    })
    .map(({ gpa, mask, flags, dataType, seed }) => ({
      kind: 'page_data' as const,
      gpa,
      compatibilityMask: mask,
      flags: seed !== undefined ? (flags & ~1) >>> 0 : flags, // 2 MiB pages with data parse but cannot be measured: keep them data-less
      dataType,
      ...(seed !== undefined ? { data: pattern(seed) } : {}),
    }));
  const vp: fc.Arbitrary<IgvmDirective>[] = vpPlatforms.length
    ? [
        fc
          .record({ gpa: gpaArb, p: fc.constantFrom(...vpPlatforms), vpIndex: fc.integer({ min: 0, max: 7 }), seed: fc.integer({ min: 0, max: 3 }) })
          .map(({ gpa, p, vpIndex, seed }) => {
            const snp = p.platformType === 2 || p.platformType === 5;
            const data = Buffer.alloc(4096);
            pattern(seed, snp ? 0x670 : 0xe0).copy(data);
            return {
              kind: 'vp_context' as const,
              form: snp ? ('snp' as const) : ('native' as const),
              gpa,
              compatibilityMask: p.compatibilityMask,
              vpIndex,
              reserved: 0,
              data,
            };
          }),
      ]
    : [];
  const misc: fc.Arbitrary<IgvmDirective>[] = [
    fc.record({ gpa: gpaArb, mask: anyMask, n: fc.integer({ min: 0, max: 16 }), flags: fc.integer({ min: 0, max: 1 }) }).map(({ gpa, mask, n, flags }) => ({
      kind: 'required_memory' as const,
      gpa,
      compatibilityMask: mask,
      numberOfBytes: n * 4096,
      flags,
    })),
    fc
      .record({ gpa: gpaArb, mask: anyMask, size: fc.integer({ min: 0, max: 0xffff }) })
      .map(({ gpa, mask, size }) => ({ kind: 'error_range' as const, gpa, compatibilityMask: mask, sizeBytes: size })),
    fc.uint8Array({ minLength: 696, maxLength: 696 }).map((b) => ({ kind: 'snp_id_block' as const, ...decodeSnpIdBlock(Buffer.from(b)) })),
    fc.uint8Array({ minLength: 864, maxLength: 864 }).map((b) => ({ kind: 'vbs_measurement' as const, body: Buffer.from(b) })),
  ];
  const single = fc.oneof(page, page, ...vp, ...misc);
  // Parameter areas come as a consistent group: declare, use, insert (each index once).
  const params = fc.array(
    fc.record({ pages: fc.integer({ min: 1, max: 3 }), withData: fc.boolean(), usage: fc.constantFrom(...PARAMETER_USAGE_TYPES), gpa: gpaArb, mask: anyMask }),
    { maxLength: 3 },
  );
  return fc.tuple(fc.array(single, { maxLength: 12 }), params, fc.nat()).map(([singles, ps, cut]) => {
    const groups: IgvmDirective[] = ps.flatMap((p, index) => [
      {
        kind: 'parameter_area' as const,
        numberOfBytes: BigInt(p.pages * 4096),
        parameterAreaIndex: index,
        ...(p.withData ? { initialData: pattern(index + 10, p.pages * 4096) } : {}),
      },
      { kind: 'parameter_usage' as const, type: p.usage, parameterAreaIndex: index, byteOffset: 8 * index },
      { kind: 'parameter_insert' as const, gpa: p.gpa, compatibilityMask: p.mask, parameterAreaIndex: index },
    ]);
    const at = singles.length ? cut % (singles.length + 1) : 0;
    const first: IgvmDirective = { kind: 'page_data', gpa: 0n, compatibilityMask: 0xff, flags: 0, dataType: 0, data: pattern(9) };
    return [first, ...singles.slice(0, at), ...groups, ...singles.slice(at)];
  });
}

const fileArb: fc.Arbitrary<IgvmFile> = platformsArb.chain((platforms) =>
  fc
    .record({
      formatVersion: fc.constantFrom(1 as const, 2 as const),
      policies: fc.array(fc.record({ policy: fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }), mask: fc.integer({ min: 0, max: 0xff }) }), { maxLength: 3 }),
      directives: directivesArb(platforms),
    })
    .map(({ formatVersion, policies, directives }) => ({
      formatVersion,
      ...(formatVersion === 2 ? { architecture: 0 } : {}),
      platforms,
      initializations: policies.map((p) => ({ kind: 'guest_policy' as const, policy: p.policy, compatibilityMask: p.mask })),
      directives,
    })),
);

const outcome = (f: () => { digest: Buffer }) => {
  try {
    return f().digest.toString('hex');
  } catch (e) {
    return isIgvmError(e) ? e.variant : `unexpected ${String(e)}`;
  }
};

describe('property tests over random directive sets', () => {
  it('write → parse returns the model, and the digests (every platform, both zero modes) survive the trip', () => {
    fc.assert(
      fc.property(fileArb, (model) => {
        const bytes = writeIgvm(model);
        const back = parseIgvm(bytes);
        expect(back).toEqual(model);
        expect(writeIgvm(back).equals(bytes)).toBe(true);
        for (const platform of ['sev-snp', 'sev-es', 'sev'] as const) {
          for (const nativeZero of [false, true]) {
            expect(outcome(() => measureIgvm(back, { platform, nativeZero }))).toBe(outcome(() => measureIgvm(model, { platform, nativeZero })));
          }
        }
      }),
      { numRuns: 40 },
    );
  });

  it('every truncation and every single-byte corruption of a valid file is refused with an IgvmError or parses; nothing else is thrown', () => {
    fc.assert(
      fc.property(fileArb, fc.nat(), fc.integer({ min: 1, max: 255 }), (model, where, xor) => {
        const bytes = writeIgvm(model);
        const cut = where % bytes.length;
        expect(() => parseIgvm(bytes.subarray(0, cut))).toThrow(expect.objectContaining({ code: expect.stringMatching(/^ERR_IGVM_/) }));
        const bad = Buffer.from(bytes);
        bad[cut] = bad[cut]! ^ xor;
        try {
          const m = parseIgvm(bad);
          // Only file data is outside the checksum: a successful parse means the headers are intact.
          expect(cut).toBeGreaterThanOrEqual(bytes.readUInt32LE(8) + bytes.readUInt32LE(12));
          expect(m.platforms).toEqual(model.platforms);
        } catch (e) {
          expect(isIgvmError(e)).toBe(true);
        }
      }),
      { numRuns: 150 },
    );
  });
});

describe('fuzz: arbitrary variable headers behind a valid fixed header and checksum', () => {
  /** Structures of known types with random bodies (so the walk goes past framing into field checks), or raw noise. */
  const known = fc.constantFrom(0x001, 0x101, 0x102, 0x103, 0x301, 0x302, 0x303, 0x304, 0x305, 0x307, 0x30b, 0x30d, 0x311, 0x30e);
  const lengths: Record<number, number> = {
    0x001: 16,
    0x101: 16,
    0x102: 48,
    0x103: 32,
    0x301: 16,
    0x302: 24,
    0x303: 16,
    0x304: 20,
    0x305: 24,
    0x307: 8,
    0x30b: 696,
    0x30d: 16,
    0x311: 864,
    0x30e: 8,
  };
  const structure = fc.tuple(known, fc.integer({ min: 0, max: 0xffffffff })).map(([type, seed]) => {
    const len = lengths[type]!;
    const body = pattern(seed % 251, len + (type === 0x304 ? 4 : 0));
    // Aim the usual fields at plausible values some of the time, so deep checks are reached.
    if (type === 0x001 && seed % 2 === 0) {
      body.writeUInt32LE(1 << (seed % 4), 0);
      body[4] = 0;
      body[5] = seed % 6;
      body.writeUInt16LE(1, 6);
    }
    if ((type === 0x302 || type === 0x304) && seed % 3 === 0) body.writeUInt32LE(0, 12);
    const h = Buffer.alloc(8);
    h.writeUInt32LE(type, 0);
    h.writeUInt32LE(len, 4);
    return Buffer.concat([h, body]);
  });
  const SNP_PLATFORM = Buffer.from('0100000010000000' + '01000000' + '00020100' + '0000000000000000', 'hex');
  it('parse either succeeds or throws an IgvmError; measuring a parsed file throws nothing else either', () => {
    const variants = new Set<string>();
    let accepted = 0;
    fc.assert(
      fc.property(
        fc.boolean(),
        fc.array(
          fc.oneof(
            structure,
            structure,
            fc.uint8Array({ minLength: 0, maxLength: 40 }).map((b) => Buffer.from(b)),
          ),
          { maxLength: 8 },
        ),
        fc.uint8Array({ minLength: 1, maxLength: 9000 }),
        (withPlatform, parts, data) => {
          const vh = Buffer.concat([withPlatform ? SNP_PLATFORM : Buffer.alloc(0), ...parts]);
          const fixed = Buffer.alloc(24);
          fixed.writeUInt32LE(0x4d564749, 0);
          fixed.writeUInt32LE(1, 4);
          fixed.writeUInt32LE(24, 8);
          fixed.writeUInt32LE(vh.length, 12);
          fixed.writeUInt32LE(24 + vh.length + data.length, 16);
          const file = fixChecksum(Buffer.concat([fixed, vh, Buffer.from(data)]));
          let parsed;
          try {
            parsed = parseIgvm(file);
          } catch (e) {
            expect(isIgvmError(e)).toBe(true);
            variants.add((e as { variant: string }).variant);
            return;
          }
          accepted++;
          for (const platform of ['sev-snp', 'sev-es', 'sev'] as const) {
            try {
              measureIgvm(parsed, { platform, checkKvm: true });
            } catch (e) {
              expect(isIgvmError(e)).toBe(true);
            }
          }
        },
      ),
      { numRuns: 400 },
    );
    // The generator reaches past the framing: many distinct refusals, and some files parse.
    expect(variants.size).toBeGreaterThanOrEqual(8);
    expect(accepted).toBeGreaterThan(0);
  });
});
