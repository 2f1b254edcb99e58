/** SNP rules in the one policy engine: parsing (fail closed, every field checked) and evaluation (each refusal names its rule). */
import { evaluate, parsePolicy, type NamedPolicy, type SnpLaunchFacts } from '../src';

const M = 'ab'.repeat(48);
const NOW = new Date('2030-01-01T00:00:00Z');
const facts = (over: Partial<SnpLaunchFacts> = {}): SnpLaunchFacts => ({
  measurement: M,
  policy: 0x30000n, // ABI 0.0, SMT allowed, reserved bit 17
  reportedTcb: { bootloader: 10, tee: 0, snp: 23, microcode: 25 },
  guestSvn: 1,
  vmpl: 0,
  hostData: '00'.repeat(32),
  idKeyDigest: '11'.repeat(48),
  authorKeyDigest: '22'.repeat(48),
  familyId: '33'.repeat(16),
  imageId: '44'.repeat(16),
  ...over,
});
const named = (doc: unknown, name = 'p'): NamedPolicy => ({ name, kind: 'resource', policy: parsePolicy(doc) });
const rulesOf = (doc: unknown, f: SnpLaunchFacts, extra: Record<string, unknown> = {}) => {
  const v = evaluate([named(doc)], { snp: f, now: NOW, ...extra });
  return v.allowed ? [] : v.refusals.map((r) => r.rule);
};

describe('SNP policy parsing', () => {
  it('accepts an SNP-only document and normalises base64 measurements to hex', () => {
    const b64 = Buffer.from(M, 'hex').toString('base64');
    const p = parsePolicy({ version: 1, snp: { allowedMeasurements: [b64, M] } });
    expect(p.snp?.allowedMeasurements).toEqual([M]);
    expect(p.allowedDigests).toBeUndefined();
    expect(parsePolicy(JSON.parse(JSON.stringify(p)))).toEqual(p);
  });

  it.each([
    [{ version: 1 }, /allowedDigests is required/],
    [{ version: 1, snp: {} }, /snp.allowedMeasurements is required/],
    [{ version: 1, snp: { allowedMeasurements: [] } }, /empty list/],
    [{ version: 1, snp: { allowedMeasurements: ['ab'.repeat(32)] } }, /48 bytes/],
    [{ version: 1, snp: { allowedMeasurements: 'any', minTcb: { ucode: 1 } } }, /snp.minTcb.ucode/],
    [{ version: 1, snp: { allowedMeasurements: 'any', minTcb: { snp: 256 } } }, /0..255/],
    [{ version: 1, snp: { allowedMeasurements: 'any', allowedVmpls: [4] } }, /0..3/],
    [{ version: 1, snp: { allowedMeasurements: 'any', debug: true } }, /unknown field snp.debug/],
    [{ version: 1, snp: { allowedMeasurements: 'any', allowedHostData: ['00'] } }, /32 bytes/],
    [{ version: 1, snp: { allowedMeasurements: 'any', minAbiMinor: 1 } }, /needs snp.minAbiMajor/],
  ])('refuses %j', (doc, msg) => {
    expect(() => parsePolicy(doc)).toThrow(msg);
  });
});

describe('SNP policy evaluation', () => {
  it('allows a guest matching every rule', () => {
    const doc = {
      version: 1,
      snp: {
        allowedMeasurements: [M],
        minTcb: { bootloader: 10, snp: 23, microcode: 25 },
        allowedHostData: ['00'.repeat(32)],
        allowedIdKeyDigests: ['11'.repeat(48)],
        allowedAuthorKeyDigests: ['22'.repeat(48)],
        allowedFamilyIds: ['33'.repeat(16)],
        allowedImageIds: ['44'.repeat(16)],
        minGuestSvn: 1,
      },
      allowedChips: ['c0ffee'],
      notBefore: '2029-01-01T00:00:00Z',
    };
    expect(rulesOf(doc, facts(), { chipId: 'c0ffee' })).toEqual([]);
  });

  it('names each rule that refuses', () => {
    const doc = {
      version: 1,
      snp: {
        allowedMeasurements: ['cd'.repeat(48)],
        minTcb: { snp: 24, fmc: 1 },
        requireNoSmt: true,
        requireSingleSocket: true,
        allowedHostData: ['01'.repeat(32)],
        minAbiMajor: 1,
      },
      allowedChips: ['other'],
      notAfter: '2029-01-01T00:00:00Z',
    };
    expect(rulesOf(doc, facts({ policy: 0x30000n | (1n << 19n) | (1n << 18n) }), { chipId: 'c0ffee' }).sort()).toEqual(
      [
        'allowedChips',
        'notAfter',
        'snp.allowDebug',
        'snp.allowMigrationAgent',
        'snp.allowedHostData',
        'snp.allowedMeasurements',
        'snp.minAbi',
        'snp.minTcb.fmc',
        'snp.minTcb.snp',
        'snp.requireNoSmt',
        'snp.requireSingleSocket',
      ].sort(),
    );
  });

  it('fails closed: an SNP guest against a SEV-only policy, a SEV launch against an SNP-only policy, VMPL other than 0', () => {
    expect(rulesOf({ version: 1, allowedDigests: 'any' }, facts())).toEqual(['snp']);
    const sev = evaluate([named({ version: 1, snp: { allowedMeasurements: 'any' } })], {
      sevPolicy: 1,
      apiMajor: 1,
      apiMinor: 0,
      buildId: 1,
      launchDigest: '00'.repeat(32),
      now: NOW,
    });
    expect(sev.allowed ? [] : sev.refusals.map((r) => r.rule)).toEqual(['allowedDigests']);
    expect(rulesOf({ version: 1, snp: { allowedMeasurements: 'any' } }, facts({ vmpl: 1 }))).toEqual(['snp.allowedVmpls']);
    expect(rulesOf({ version: 1, snp: { allowedMeasurements: 'any', allowedVmpls: [0, 1] } }, facts({ vmpl: 1 }))).toEqual([]);
  });

  it('refuses unusable facts instead of throwing, and counts releases like SEV', () => {
    expect(rulesOf({ version: 1, snp: { allowedMeasurements: 'any' } }, facts({ measurement: 'zz' }))).toContain('snp.measurement');
    const doc = { version: 1, snp: { allowedMeasurements: 'any' }, maxReleases: 2 };
    expect(rulesOf(doc, facts(), { releaseCounts: new Map([['p', 2]]) })).toEqual(['maxReleases']);
    expect(rulesOf(doc, facts(), { releaseCounts: new Map([['p', 1]]) })).toEqual([]);
  });
});
