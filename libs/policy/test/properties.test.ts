import fc from 'fast-check';
import {
  POLICY_FIELDS,
  PolicyError,
  SEV_POLICY_BITS,
  SEV_POLICY_BIT_NAMES,
  SEV_POLICY_RESERVED_MASK,
  evaluate,
  fromSimpleKbsPolicy,
  parsePolicy,
  type LaunchFacts,
  type NamedPolicy,
  type Policy,
} from '@kb/policy';

const NUM_RUNS = 200;
const NODBG = SEV_POLICY_BITS.NODBG;

const u8 = fc.integer({ min: 0, max: 255 });
const u32 = fc.nat({ max: 0xffff_ffff });

/** A 32-byte digest in one of the accepted spellings. */
const digestInput = fc.tuple(fc.uint8Array({ minLength: 32, maxLength: 32 }), fc.constantFrom('hex', 'HEX', 'base64')).map(([b, form]) => {
  const buf = Buffer.from(b);
  return form === 'base64' ? buf.toString('base64') : form === 'hex' ? buf.toString('hex') : buf.toString('hex').toUpperCase();
});

/** A timestamp between years 1000 and 9000, written with a random zone offset and precision. */
const timestampInput = fc
  .tuple(
    fc.integer({ min: Date.UTC(1000, 0, 1), max: Date.UTC(9000, 0, 1) }),
    fc.integer({ min: -23 * 60 - 59, max: 23 * 60 + 59 }),
    fc.constantFrom('min', 'sec', 'ms'),
  )
  .map(([ms, offset, precision]) => {
    const local = new Date(ms + offset * 60_000).toISOString(); // YYYY-MM-DDThh:mm:ss.sssZ in the target zone
    const body = precision === 'min' ? local.slice(0, 16) : precision === 'sec' ? local.slice(0, 19) : local.slice(0, 23);
    if (offset === 0) return `${body}Z`;
    const a = Math.abs(offset);
    return `${body}${offset < 0 ? '-' : '+'}${String(Math.floor(a / 60)).padStart(2, '0')}:${String(a % 60).padStart(2, '0')}`;
  });

const opt = <T>(arb: fc.Arbitrary<T>): fc.Arbitrary<T | undefined> => fc.option(arb, { nil: undefined });
const listOrAny = <T>(arb: fc.Arbitrary<T>): fc.Arbitrary<T[] | 'any'> => fc.oneof(fc.constant('any' as const), fc.array(arb, { minLength: 1, maxLength: 5 }));

/** Valid policy documents in input form (mixed spellings), built so that no field contradicts another. */
const validPolicyInput: fc.Arbitrary<Record<string, unknown>> = fc
  .record({
    digests: listOrAny(digestInput),
    roles: fc.array(fc.constantFrom('none', 'required', 'forbidden'), { minLength: 6, maxLength: 6 }),
    bitsAsNumbers: fc.boolean(),
    allowDebug: opt(fc.boolean()),
    policies: opt(listOrAny(u32)),
    fw: opt(fc.record({ major: u8, minor: opt(u8) })),
    builds: opt(listOrAny(u8)),
    chips: opt(listOrAny(fc.stringMatching(/^[\x21-\x7e]{1,64}$/))),
    maxReleases: opt(fc.nat()),
    notBefore: opt(timestampInput),
    notAfter: opt(timestampInput),
    compat: opt(fc.boolean()),
  })
  .map((g) => {
    let required = 0;
    let forbidden = 0;
    SEV_POLICY_BIT_NAMES.forEach((name, i) => {
      if (g.roles[i] === 'required') required |= SEV_POLICY_BITS[name];
      if (g.roles[i] === 'forbidden') forbidden |= SEV_POLICY_BITS[name];
    });
    const allowDebug = (forbidden & NODBG) !== 0 ? true : g.allowDebug;
    const needed = required | (allowDebug === true ? 0 : NODBG);
    const bits = (mask: number): unknown[] => (g.bitsAsNumbers ? [mask] : SEV_POLICY_BIT_NAMES.filter((n) => (mask & SEV_POLICY_BITS[n]) !== 0));
    const doc: Record<string, unknown> = { version: 1, allowedDigests: g.digests };
    if (required !== 0) doc.requiredPolicyBits = bits(required);
    if (forbidden !== 0) doc.forbiddenPolicyBits = bits(forbidden);
    if (allowDebug !== undefined) doc.allowDebug = allowDebug;
    if (g.policies !== undefined) {
      doc.allowedPolicies = g.policies === 'any' ? 'any' : g.policies.map((p) => (((p & ~SEV_POLICY_RESERVED_MASK) | needed) & ~forbidden) >>> 0);
    }
    if (g.fw !== undefined) {
      doc.minFwApiMajor = g.fw.major;
      if (g.fw.minor !== undefined) doc.minFwApiMinor = g.fw.minor;
    }
    if (g.builds !== undefined) doc.allowedBuildIds = g.builds;
    if (g.chips !== undefined) doc.allowedChips = g.chips;
    if (g.maxReleases !== undefined) doc.maxReleases = g.maxReleases;
    const window = [g.notBefore, g.notAfter].filter((t): t is string => t !== undefined).sort((a, b) => Date.parse(a) - Date.parse(b));
    if (g.notBefore !== undefined && g.notAfter !== undefined) [doc.notBefore, doc.notAfter] = window;
    else if (g.notBefore !== undefined) doc.notBefore = g.notBefore;
    else if (g.notAfter !== undefined) doc.notAfter = g.notAfter;
    if (g.compat !== undefined) doc.simpleKbsCompat = g.compat;
    return doc;
  });

const validPolicy: fc.Arbitrary<Policy> = validPolicyInput.map((doc) => parsePolicy(doc));

/** Facts that are mostly plausible, sometimes out of range, sometimes of the wrong type altogether. */
const anyNumber = fc.oneof(u8, u32, fc.integer(), fc.double(), fc.constantFrom(256, -1, 2 ** 32, NaN, Infinity));
const factsArb: fc.Arbitrary<LaunchFacts> = fc
  .record({
    sevPolicy: fc.oneof(fc.nat({ max: 0x3f }), anyNumber, fc.anything()),
    apiMajor: fc.oneof(u8, anyNumber, fc.anything()),
    apiMinor: fc.oneof(u8, anyNumber, fc.anything()),
    buildId: fc.oneof(u8, anyNumber, fc.anything()),
    launchDigest: fc.oneof(fc.uint8Array({ minLength: 32, maxLength: 32 }), fc.uint8Array({ maxLength: 40 }), digestInput, fc.anything()),
    chipId: opt(fc.oneof(fc.string(), fc.anything())),
    now: fc.oneof(fc.date(), fc.anything()),
    releaseCounts: opt(
      fc.oneof(
        fc.array(fc.tuple(fc.constantFrom('p0', 'p1', 'p2', '__proto__'), fc.oneof(fc.nat({ max: 10 }), anyNumber))).map((e) => new Map(e)),
        fc.anything(),
      ),
    ),
  })
  .map((f) => f as unknown as LaunchFacts);

const kinds = ['tenant-default', 'keyset', 'secret', 'resource', 'report-key', 'connection'] as const;
const namedPolicies: fc.Arbitrary<NamedPolicy[]> = fc
  .array(fc.tuple(validPolicy, fc.constantFrom(...kinds)), { maxLength: 4 })
  .map((ps) => ps.map(([policy, kind], i) => ({ name: `p${i}`, kind, policy })));

function onlyPolicyErrors(f: () => unknown): void {
  try {
    f();
  } catch (e) {
    if (!(e instanceof PolicyError)) throw e;
    expect(e.message.length).toBeGreaterThan(0);
  }
}

describe('parsePolicy properties', () => {
  it('a parsed policy survives a JSON round trip unchanged, and parsing it again is the identity', () => {
    fc.assert(
      fc.property(validPolicy, (p) => {
        expect(parsePolicy(JSON.parse(JSON.stringify(p)))).toStrictEqual(p);
        expect(parsePolicy(p)).toStrictEqual(p);
      }),
      { numRuns: NUM_RUNS },
    );
  });

  it('on random JSON it returns a policy or throws a PolicyError, nothing else', () => {
    fc.assert(
      fc.property(fc.jsonValue(), (v) => onlyPolicyErrors(() => parsePolicy(v))),
      { numRuns: NUM_RUNS },
    );
  });

  it('on objects with policy field names and random values it returns a policy or throws a PolicyError', () => {
    const key = fc.constantFrom(...POLICY_FIELDS, 'allowed_digests', '__proto__', 'extra');
    const value = fc.oneof(fc.jsonValue(), fc.constant('any'), fc.constant([]), fc.array(fc.oneof(u32, digestInput, fc.constantFrom(...SEV_POLICY_BIT_NAMES))));
    const doc = fc.dictionary(key, value).map((d) => ({ version: 1, allowedDigests: 'any', ...d }));
    fc.assert(
      fc.property(doc, (d) => onlyPolicyErrors(() => parsePolicy(d))),
      { numRuns: NUM_RUNS },
    );
  });

  it('fromSimpleKbsPolicy on random rows converts or throws a PolicyError', () => {
    const column = fc.oneof(
      fc.jsonValue().map((v) => JSON.stringify(v)),
      fc.array(fc.oneof(u32, digestInput, fc.jsonValue())),
      fc.string(),
    );
    const row = fc.record({
      allowed_digests: column,
      allowed_policies: column,
      min_fw_api_major: fc.oneof(u8, anyNumber, fc.string()),
      min_fw_api_minor: fc.oneof(u8, anyNumber, fc.string()),
      allowed_build_ids: column,
    });
    fc.assert(
      fc.property(row, (r) => onlyPolicyErrors(() => fromSimpleKbsPolicy(r as never))),
      { numRuns: NUM_RUNS },
    );
  });
});

describe('evaluate properties', () => {
  it('never throws on parsed policies and arbitrary facts, and refuses with at least one precise reason', () => {
    fc.assert(
      fc.property(namedPolicies, factsArb, (policies, facts) => {
        const v = evaluate(policies, facts);
        if (!v.allowed) {
          expect(v.refusals.length).toBeGreaterThan(0);
          for (const r of v.refusals) {
            expect(typeof r.policy).toBe('string');
            expect(r.rule.length).toBeGreaterThan(0);
            expect(r.reason.length).toBeGreaterThan(0);
          }
        }
      }),
      { numRuns: NUM_RUNS },
    );
  });

  it('is the AND of the policies: a set passes exactly when each policy passes alone', () => {
    fc.assert(
      fc.property(
        namedPolicies.filter((ps) => ps.length > 0),
        factsArb,
        (policies, facts) => {
          const alone = policies.map((p) => evaluate([p], facts).allowed);
          expect(evaluate(policies, facts).allowed).toBe(alone.every(Boolean));
        },
      ),
      { numRuns: NUM_RUNS },
    );
  });

  it('minFwApi is the version order, with or without simpleKbsCompat (simple-kbs policy.rs compares the same way)', () => {
    fc.assert(
      fc.property(u8, u8, u8, u8, (minMajor, minMinor, major, minor) => {
        const facts: LaunchFacts = { sevPolicy: NODBG, apiMajor: major, apiMinor: minor, buildId: 0, launchDigest: Buffer.alloc(32), now: new Date(0) };
        const doc = { version: 1, allowedDigests: 'any', minFwApiMajor: minMajor, minFwApiMinor: minMinor };
        const lexicographic = evaluate([{ name: 'p', kind: 'secret', policy: parsePolicy(doc) }], facts).allowed;
        const compat = evaluate([{ name: 'p', kind: 'secret', policy: parsePolicy({ ...doc, simpleKbsCompat: true }) }], facts).allowed;
        expect(lexicographic).toBe(major * 256 + minor >= minMajor * 256 + minMinor);
        // policy.rs: refuse if major < min major, or majors equal and minor < min minor
        expect(compat).toBe(!(major < minMajor || (major === minMajor && minor < minMinor)));
      }),
      { numRuns: NUM_RUNS },
    );
  });
});
