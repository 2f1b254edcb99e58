import { PolicyError, evaluate, fromSimpleKbsPolicy, isAllowAll, parsePolicy, type SimpleKbsPolicyRow } from '@kb/policy';
import { E1, E4, OTHER_DIGEST_HEX, e1Facts, e4Facts } from './fixtures';

/** simple-kbs's shipped default: every list empty, no firmware minimum (kbs-compat §1.5). */
const allowAllRow: SimpleKbsPolicyRow = {
  allowed_digests: '[]',
  allowed_policies: '[]',
  min_fw_api_major: 0,
  min_fw_api_minor: 0,
  allowed_build_ids: '[]',
};

function conversionError(row: unknown): PolicyError {
  try {
    fromSimpleKbsPolicy(row as SimpleKbsPolicyRow);
  } catch (e) {
    expect(e).toBeInstanceOf(PolicyError);
    return e as PolicyError;
  }
  throw new Error('converted');
}

describe('fromSimpleKbsPolicy', () => {
  it('turns empty lists into explicit "any" and keeps simple-kbs semantics (debugging allowed, no firmware floor)', () => {
    const p = fromSimpleKbsPolicy(allowAllRow);
    expect(p).toStrictEqual({
      version: 1,
      allowedDigests: 'any',
      allowedPolicies: 'any',
      allowDebug: true,
      allowedBuildIds: 'any',
    });
    expect(isAllowAll(p)).toBe(true);
    const anything = e1Facts({ sevPolicy: 0x0, apiMajor: 0, apiMinor: 0, buildId: 0, launchDigest: OTHER_DIGEST_HEX });
    expect(evaluate([{ name: 'default_policy.json', kind: 'tenant-default', policy: p }], anything)).toEqual({ allowed: true });
    expect(parsePolicy(JSON.parse(JSON.stringify(p)))).toStrictEqual(p);
  });

  it('converts base64 digests to hex and constrains exactly what the row listed', () => {
    const row: SimpleKbsPolicyRow = {
      allowed_digests: JSON.stringify([E1.digestB64]),
      allowed_policies: '[1, 3]',
      min_fw_api_major: '1',
      min_fw_api_minor: '40',
      allowed_build_ids: [40],
    };
    const p = fromSimpleKbsPolicy(row);
    expect(p.allowedDigests).toEqual([E1.digestHex]);
    expect(p.allowedPolicies).toEqual([1, 3]);
    expect(p.allowedBuildIds).toEqual([40]);
    expect([p.minFwApiMajor, p.minFwApiMinor]).toEqual([1, 40]);
    expect(isAllowAll(p)).toBe(false);
    const named = [{ name: 'polid-1', kind: 'keyset' as const, policy: p }];
    expect(evaluate(named, e1Facts())).toEqual({ allowed: true });
    const refused = evaluate(named, e4Facts());
    expect(refused.allowed ? [] : refused.refusals.map((r) => r.rule)).toEqual(['allowedDigests', 'allowedPolicies', 'allowedBuildIds']);
  });

  it('keeps simple-kbs firmware comparison: (major, minor) in version order, so 1.55 passes a 0.65 minimum', () => {
    const p = fromSimpleKbsPolicy({ ...allowAllRow, min_fw_api_major: 0, min_fw_api_minor: 65 });
    expect(p).toMatchObject({ minFwApiMajor: 0, minFwApiMinor: 65 });
    expect(p.simpleKbsCompat).toBeUndefined();
    const named = [{ name: 'p', kind: 'secret' as const, policy: p }];
    expect(evaluate(named, e1Facts({ apiMajor: 1, apiMinor: 55 })).allowed).toBe(true);
    expect(evaluate(named, e1Facts({ apiMajor: 0, apiMinor: 65 })).allowed).toBe(true);
    expect(evaluate(named, e1Facts({ apiMajor: 0, apiMinor: 64 })).allowed).toBe(false);
    expect(isAllowAll(p)).toBe(false);
  });

  it('accepts already-decoded JSON columns', () => {
    const p = fromSimpleKbsPolicy({ ...allowAllRow, allowed_digests: [E1.digestB64], allowed_policies: [5] });
    expect(p.allowedDigests).toEqual([E1.digestHex]);
    expect(evaluate([{ name: 'p', kind: 'secret', policy: p }], e1Facts({ sevPolicy: 5 })).allowed).toBe(true);
  });

  it.each<[string, unknown, string, string | undefined, RegExp]>([
    ['null row', null, 'ERR_POLICY_TYPE', undefined, /row must be an object, got null/],
    [
      'digest in hex',
      { ...allowAllRow, allowed_digests: JSON.stringify([E4.digestHex]) },
      'ERR_POLICY_FORMAT',
      'allowed_digests[0]',
      /compared it as a string with the base64 FwDigest, so it never matched a launch/,
    ],
    [
      'digest of 31 bytes',
      { ...allowAllRow, allowed_digests: [Buffer.alloc(31).toString('base64')] },
      'ERR_POLICY_FORMAT',
      'allowed_digests[0]',
      /not base64 of a 32-byte digest/,
    ],
    [
      'digest not canonical',
      { ...allowAllRow, allowed_digests: [`${E1.digestB64.slice(0, 42)}T=`] },
      'ERR_POLICY_FORMAT',
      'allowed_digests[0]',
      /not canonical base64/,
    ],
    ['invalid JSON', { ...allowAllRow, allowed_policies: '[1,' }, 'ERR_POLICY_FORMAT', 'allowed_policies', /allowed_policies is not valid JSON/],
    ['JSON object', { ...allowAllRow, allowed_build_ids: '{}' }, 'ERR_POLICY_TYPE', 'allowed_build_ids', /must be a JSON array, got object/],
    ['NULL column', { ...allowAllRow, allowed_digests: null }, 'ERR_POLICY_TYPE', 'allowed_digests', /got null/],
    ['policy -1', { ...allowAllRow, allowed_policies: [-1] }, 'ERR_POLICY_RANGE', 'allowed_policies[0]', /must be a u32, got -1/],
    [
      'policy with reserved bits',
      { ...allowAllRow, allowed_policies: [0x41] },
      'ERR_POLICY_RANGE',
      'allowedPolicies[0]',
      /converts to an invalid policy: allowedPolicies\[0\] 0x41 sets reserved bits 0x40/,
    ],
    [
      'min major 256',
      { ...allowAllRow, min_fw_api_major: 256 },
      'ERR_POLICY_RANGE',
      'min_fw_api_major',
      /256 is above 255.*admitted only forged versions \(u32 to u8 truncation\)/,
    ],
    [
      'min minor text',
      { ...allowAllRow, min_fw_api_minor: 'seventeen' },
      'ERR_POLICY_TYPE',
      'min_fw_api_minor',
      /must be an integer \(a number or decimal digits\), got "seventeen"/,
    ],
    ['min minor negative', { ...allowAllRow, min_fw_api_minor: -1 }, 'ERR_POLICY_RANGE', 'min_fw_api_minor', /non-negative integer, got -1/],
    ['min major fraction', { ...allowAllRow, min_fw_api_major: 0.5 }, 'ERR_POLICY_RANGE', 'min_fw_api_major', /non-negative integer, got 0.5/],
    [
      'build id 296',
      { ...allowAllRow, allowed_build_ids: '[40, 296]' },
      'ERR_POLICY_RANGE',
      'allowed_build_ids[1]',
      /296 is above 255.*never matched an honest launch/,
    ],
    ['build id string', { ...allowAllRow, allowed_build_ids: '["40"]' }, 'ERR_POLICY_TYPE', 'allowed_build_ids[0]', /must be a number, got "40"/],
  ])('rejects %s', (_label, row, code, field, message) => {
    const e = conversionError(row);
    expect(e.code).toBe(code);
    expect(e.field).toBe(field);
    expect(e.message).toMatch(message);
  });
});

describe('isAllowAll', () => {
  const allowAll = { version: 1, allowedDigests: 'any', allowDebug: true };

  it('is true only when nothing about the launched guest is constrained', () => {
    expect(isAllowAll(parsePolicy(allowAll))).toBe(true);
    expect(isAllowAll(parsePolicy({ ...allowAll, allowedPolicies: 'any', allowedBuildIds: 'any', minFwApiMajor: 0, minFwApiMinor: 0 }))).toBe(true);
  });

  it('ignores where/when limits, which do not constrain what runs in the guest', () => {
    const p = parsePolicy({ ...allowAll, allowedChips: ['chip-1'], maxReleases: 5, notAfter: '2030-01-01T00:00:00Z' });
    expect(isAllowAll(p)).toBe(true);
  });

  it.each<[string, Record<string, unknown>]>([
    ['a digest list', { allowedDigests: [E1.digestHex] }],
    ['the NODBG default', { allowDebug: undefined }],
    ['allowDebug false', { allowDebug: false }],
    ['allowedPolicies', { allowedPolicies: [0x0] }],
    ['requiredPolicyBits', { requiredPolicyBits: ['ES'] }],
    ['forbiddenPolicyBits', { forbiddenPolicyBits: ['NOKS'] }],
    ['a firmware major floor', { minFwApiMajor: 1 }],
    ['a firmware minor floor', { minFwApiMajor: 0, minFwApiMinor: 17 }],
    ['allowedBuildIds', { allowedBuildIds: [22] }],
  ])('is false with %s', (_label, change) => {
    const doc: Record<string, unknown> = { ...allowAll, ...change };
    for (const k of Object.keys(doc)) if (doc[k] === undefined) delete doc[k];
    expect(isAllowAll(parsePolicy(doc))).toBe(false);
  });
});
