import { PolicyError, isPolicyError, parsePolicy, type PolicyErrorCode } from '@kb/policy';
import { E1, E4 } from './fixtures';

const base = { version: 1, allowedDigests: 'any' };

function rejection(input: unknown): PolicyError {
  try {
    parsePolicy(input);
  } catch (e) {
    expect(e).toBeInstanceOf(PolicyError);
    return e as PolicyError;
  }
  throw new Error(`accepted: ${JSON.stringify(input)}`);
}

type Case = [label: string, input: unknown, code: PolicyErrorCode, field: string | undefined, message: RegExp];

const cases: Case[] = [
  // document shape
  ['null', null, 'ERR_POLICY_TYPE', undefined, /must be a JSON object, got null/],
  ['array', [base], 'ERR_POLICY_TYPE', undefined, /got array/],
  ['JSON text', JSON.stringify(base), 'ERR_POLICY_TYPE', undefined, /got string/],
  ['class instance', new Map(Object.entries(base)), 'ERR_POLICY_TYPE', undefined, /JSON object/],
  ['unknown field', { ...base, comment: 'x' }, 'ERR_POLICY_UNKNOWN_FIELD', 'comment', /^unknown field "comment"; version 1 fields are version, allowedDigests/],
  ['typo', { ...base, allowedDigest: [] }, 'ERR_POLICY_UNKNOWN_FIELD', 'allowedDigest', /did you mean allowedDigests\?/],
  ['simple-kbs column', { ...base, min_fw_api_major: 1 }, 'ERR_POLICY_UNKNOWN_FIELD', 'min_fw_api_major', /did you mean minFwApiMajor\?/],
  [
    '__proto__ key',
    JSON.parse('{"version":1,"allowedDigests":"any","__proto__":{"allowDebug":true}}'),
    'ERR_POLICY_UNKNOWN_FIELD',
    '__proto__',
    /unknown field "__proto__"/,
  ],
  ['version missing', { allowedDigests: 'any' }, 'ERR_POLICY_MISSING_FIELD', 'version', /version is required/],
  ['version 2', { ...base, version: 2 }, 'ERR_POLICY_VERSION', 'version', /version must be 1, got 2/],
  ['version "1"', { ...base, version: '1' }, 'ERR_POLICY_TYPE', 'version', /version must be 1, got "1"/],
  // allowedDigests
  ['digests missing', { version: 1 }, 'ERR_POLICY_MISSING_FIELD', 'allowedDigests', /write "any" to accept every digest explicitly/],
  ['digests empty', { version: 1, allowedDigests: [] }, 'ERR_POLICY_EMPTY', 'allowedDigests', /simple-kbs read \[\] as "allow all".*write "any"/],
  ['digests "ANY"', { version: 1, allowedDigests: 'ANY' }, 'ERR_POLICY_FORMAT', 'allowedDigests', /non-empty list or the string "any", got "ANY"/],
  ['digests object', { version: 1, allowedDigests: {} }, 'ERR_POLICY_TYPE', 'allowedDigests', /got object/],
  [
    'digest number',
    { version: 1, allowedDigests: [E1.digestHex, 42] },
    'ERR_POLICY_TYPE',
    'allowedDigests[1]',
    /allowedDigests\[1\] must be a string \(hex or base64\), got number/,
  ],
  ['digest empty string', { version: 1, allowedDigests: [''] }, 'ERR_POLICY_FORMAT', 'allowedDigests[0]', /empty string/],
  [
    'digest bad hex',
    { version: 1, allowedDigests: [`${E1.digestHex.slice(0, 63)}.`] },
    'ERR_POLICY_FORMAT',
    'allowedDigests[0]',
    /neither hex \(64 digits\) nor standard padded base64 of 32 bytes/,
  ],
  [
    'digest SNP base64',
    { version: 1, allowedDigests: [Buffer.alloc(48, 1).toString('base64')] },
    'ERR_POLICY_LENGTH',
    'allowedDigests[0]',
    /base64 of 48 bytes.*SEV-SNP/,
  ],
  ['digest odd hex', { version: 1, allowedDigests: [E1.digestHex.slice(1)] }, 'ERR_POLICY_FORMAT', 'allowedDigests[0]', /neither hex/],
  [
    'digest 31 bytes hex',
    { version: 1, allowedDigests: [E1.digestHex.slice(2)] },
    'ERR_POLICY_LENGTH',
    'allowedDigests[0]',
    /is 31 bytes of hex, a launch digest is 32 bytes/,
  ],
  ['digest SNP hex', { version: 1, allowedDigests: ['ab'.repeat(48)] }, 'ERR_POLICY_LENGTH', 'allowedDigests[0]', /48 bytes is an SEV-SNP SHA-384 digest/],
  [
    'digest 31 bytes b64',
    { version: 1, allowedDigests: [Buffer.alloc(31, 7).toString('base64')] },
    'ERR_POLICY_LENGTH',
    'allowedDigests[0]',
    /is base64 of 31 bytes, a launch digest is 32 bytes/,
  ],
  [
    'digest non-canonical b64',
    { version: 1, allowedDigests: [`${E1.digestB64.slice(0, 42)}T=`] },
    'ERR_POLICY_FORMAT',
    'allowedDigests[0]',
    /is not canonical base64/,
  ],
  ['digest base64url', { version: 1, allowedDigests: [Buffer.alloc(32, 0xfb).toString('base64url')] }, 'ERR_POLICY_FORMAT', 'allowedDigests[0]', /neither hex/],
  ['digest unpadded b64', { version: 1, allowedDigests: [E1.digestB64.slice(0, 43)] }, 'ERR_POLICY_FORMAT', 'allowedDigests[0]', /padded base64/],
  // allowedPolicies
  ['policies empty', { ...base, allowedPolicies: [] }, 'ERR_POLICY_EMPTY', 'allowedPolicies', /allowedPolicies is an empty list/],
  ['policy negative', { ...base, allowedPolicies: [-1] }, 'ERR_POLICY_RANGE', 'allowedPolicies[0]', /integer in 0\.\.4294967295, got -1/],
  ['policy fraction', { ...base, allowedPolicies: [1.5] }, 'ERR_POLICY_RANGE', 'allowedPolicies[0]', /got 1.5/],
  ['policy 2^32', { ...base, allowedPolicies: [2 ** 32] }, 'ERR_POLICY_RANGE', 'allowedPolicies[0]', /got 4294967296/],
  ['policy string', { ...base, allowedPolicies: ['3'] }, 'ERR_POLICY_TYPE', 'allowedPolicies[0]', /must be a number, got string/],
  ['policy reserved bit', { ...base, allowedPolicies: [0x41] }, 'ERR_POLICY_RANGE', 'allowedPolicies[0]', /0x41 sets reserved bits 0x40/],
  // policy bits
  ['required empty', { ...base, requiredPolicyBits: [] }, 'ERR_POLICY_EMPTY', 'requiredPolicyBits', /omit the field when no bit is required/],
  ['forbidden empty', { ...base, forbiddenPolicyBits: [] }, 'ERR_POLICY_EMPTY', 'forbiddenPolicyBits', /no bit is forbidden/],
  ['required not a list', { ...base, requiredPolicyBits: 'NODBG' }, 'ERR_POLICY_TYPE', 'requiredPolicyBits', /list of bit names or numbers, got string/],
  [
    'required lowercase',
    { ...base, requiredPolicyBits: ['nodbg'] },
    'ERR_POLICY_FORMAT',
    'requiredPolicyBits[0]',
    /"nodbg" is not a SEV policy bit name \(did you mean NODBG\?\); names are NODBG, NOKS, ES, NOSEND, DOMAIN, SEV/,
  ],
  [
    'required unknown name',
    { ...base, requiredPolicyBits: ['ES', 'SNP'] },
    'ERR_POLICY_FORMAT',
    'requiredPolicyBits[1]',
    /"SNP" is not a SEV policy bit name; names are/,
  ],
  ['required 0', { ...base, requiredPolicyBits: [0] }, 'ERR_POLICY_RANGE', 'requiredPolicyBits[0]', /not a mask of SEV policy flag bits/],
  ['required reserved', { ...base, requiredPolicyBits: [0x40] }, 'ERR_POLICY_RANGE', 'requiredPolicyBits[0]', /integer in 1\.\.0x3f/],
  ['required boolean', { ...base, requiredPolicyBits: [true] }, 'ERR_POLICY_TYPE', 'requiredPolicyBits[0]', /bit name or a number, got boolean/],
  [
    'required and forbidden',
    { ...base, requiredPolicyBits: ['ES', 'NOKS'], forbiddenPolicyBits: [0x6] },
    'ERR_POLICY_CONFLICT',
    'forbiddenPolicyBits',
    /forbids NOKS, ES, which requiredPolicyBits requires/,
  ],
  ['forbid NODBG', { ...base, forbiddenPolicyBits: ['NODBG'] }, 'ERR_POLICY_CONFLICT', 'forbiddenPolicyBits', /unless allowDebug is true/],
  [
    'unsatisfiable allowedPolicies',
    { ...base, allowedPolicies: [0x0, 0x2] },
    'ERR_POLICY_CONFLICT',
    'allowedPolicies',
    /no entry of allowedPolicies passes the bit rules \(required: NODBG \(NODBG because allowDebug is not true\); forbidden: none\)/,
  ],
  [
    'allowedPolicies vs required ES',
    { ...base, allowedPolicies: [0x1, 0x3], requiredPolicyBits: ['ES'] },
    'ERR_POLICY_CONFLICT',
    'allowedPolicies',
    /required: NODBG, ES/,
  ],
  ['allowDebug string', { ...base, allowDebug: 'true' }, 'ERR_POLICY_TYPE', 'allowDebug', /true or false, got string/],
  // firmware
  ['major 256', { ...base, minFwApiMajor: 256 }, 'ERR_POLICY_RANGE', 'minFwApiMajor', /integer in 0\.\.255, got 256/],
  ['major -1', { ...base, minFwApiMajor: -1 }, 'ERR_POLICY_RANGE', 'minFwApiMajor', /got -1/],
  ['major string', { ...base, minFwApiMajor: '1' }, 'ERR_POLICY_TYPE', 'minFwApiMajor', /must be a number, got string/],
  ['minor 0.5', { ...base, minFwApiMajor: 0, minFwApiMinor: 0.5 }, 'ERR_POLICY_RANGE', 'minFwApiMinor', /got 0.5/],
  ['minor without major', { ...base, minFwApiMinor: 17 }, 'ERR_POLICY_MISSING_FIELD', 'minFwApiMajor', /minFwApiMinor needs minFwApiMajor/],
  ['build ids empty', { ...base, allowedBuildIds: [] }, 'ERR_POLICY_EMPTY', 'allowedBuildIds', /allowedBuildIds is an empty list/],
  ['build id 256', { ...base, allowedBuildIds: [22, 256] }, 'ERR_POLICY_RANGE', 'allowedBuildIds[1]', /integer in 0\.\.255, got 256/],
  ['build id null', { ...base, allowedBuildIds: null }, 'ERR_POLICY_TYPE', 'allowedBuildIds', /got null/],
  // chips
  ['chips empty', { ...base, allowedChips: [] }, 'ERR_POLICY_EMPTY', 'allowedChips', /allowedChips is an empty list/],
  ['chip empty string', { ...base, allowedChips: [''] }, 'ERR_POLICY_FORMAT', 'allowedChips[0]', /is not a chip identity: expected 1\.\.256 printable ASCII/],
  ['chip with space', { ...base, allowedChips: ['ab cd'] }, 'ERR_POLICY_FORMAT', 'allowedChips[0]', /not a chip identity/],
  ['chip too long', { ...base, allowedChips: ['a'.repeat(257)] }, 'ERR_POLICY_FORMAT', 'allowedChips[0]', /… \(259 chars\) is not a chip identity/],
  ['chip number', { ...base, allowedChips: [1] }, 'ERR_POLICY_TYPE', 'allowedChips[0]', /must be a string, got number/],
  // releases and time
  ['maxReleases -1', { ...base, maxReleases: -1 }, 'ERR_POLICY_RANGE', 'maxReleases', /integer in 0\.\.9007199254740991, got -1/],
  ['maxReleases "3"', { ...base, maxReleases: '3' }, 'ERR_POLICY_TYPE', 'maxReleases', /got string/],
  ['notBefore words', { ...base, notBefore: 'yesterday' }, 'ERR_POLICY_FORMAT', 'notBefore', /"yesterday" is not a valid timestamp: expected YYYY-MM-DDThh:mm/],
  ['notBefore no zone', { ...base, notBefore: '2025-01-01T00:00:00' }, 'ERR_POLICY_FORMAT', 'notBefore', /followed by Z or ±hh:mm/],
  ['notBefore date only', { ...base, notBefore: '2025-01-01' }, 'ERR_POLICY_FORMAT', 'notBefore', /not a valid timestamp/],
  ['notAfter Feb 30', { ...base, notAfter: '2024-02-30T00:00:00Z' }, 'ERR_POLICY_FORMAT', 'notAfter', /day 30 does not exist in 2024-02/],
  ['notAfter Feb 29 non-leap', { ...base, notAfter: '2023-02-29T00:00:00Z' }, 'ERR_POLICY_FORMAT', 'notAfter', /day 29 does not exist in 2023-02/],
  ['notAfter month 13', { ...base, notAfter: '2024-13-01T00:00:00Z' }, 'ERR_POLICY_FORMAT', 'notAfter', /month 13 is not 1\.\.12/],
  ['notAfter hour 24', { ...base, notAfter: '2024-01-01T24:00:00Z' }, 'ERR_POLICY_FORMAT', 'notAfter', /hour 24 is not 0\.\.23/],
  ['notAfter second 60', { ...base, notAfter: '2024-01-01T23:59:60Z' }, 'ERR_POLICY_FORMAT', 'notAfter', /second 60 is not 0\.\.59/],
  ['notAfter offset 24h', { ...base, notAfter: '2024-01-01T00:00:00+24:00' }, 'ERR_POLICY_FORMAT', 'notAfter', /zone offset \+24:00 is out of range/],
  ['notAfter past 9999 in UTC', { ...base, notAfter: '9999-12-31T23:00:00-02:00' }, 'ERR_POLICY_FORMAT', 'notAfter', /outside years 0000\.\.9999/],
  ['notAfter number', { ...base, notAfter: 1735689600000 }, 'ERR_POLICY_TYPE', 'notAfter', /ISO 8601 timestamp string, got number/],
  [
    'window reversed',
    { ...base, notBefore: '2025-02-01T00:00:00Z', notAfter: '2025-01-31T23:59:59Z' },
    'ERR_POLICY_CONFLICT',
    'notAfter',
    /notBefore 2025-02-01T00:00:00.000Z is after notAfter 2025-01-31T23:59:59.000Z/,
  ],
  ['compat string', { ...base, simpleKbsCompat: 'yes' }, 'ERR_POLICY_TYPE', 'simpleKbsCompat', /true or false, got string/],
];

describe('parsePolicy rejects malformed documents with a precise PolicyError', () => {
  it.each(cases)('%s', (_label, input, code, field, message) => {
    const e = rejection(input);
    expect(e.code).toBe(code);
    expect(e.field).toBe(field);
    expect(e.message).toMatch(message);
    expect(isPolicyError(e, code)).toBe(true);
  });

  it('never echoes an unbounded input into the message', () => {
    const e = rejection({ version: 1, allowedDigests: ['x'.repeat(100_000)] });
    expect(e.message.length).toBeLessThan(300);
  });
});

describe('parsePolicy normalises valid documents', () => {
  it('accepts hex in any case and base64, storing lowercase hex and dropping duplicates', () => {
    const p = parsePolicy({ version: 1, allowedDigests: [E1.digestB64, E1.digestHex.toUpperCase(), E4.digestHex] });
    expect(p.allowedDigests).toEqual([E1.digestHex, E4.digestHex]);
    expect(E1.digestHex).toBe('c64bd101fc9a4a2ce0a27c408d9200911f139a895469b04a40a6fa2890830d23');
  });

  it('normalises policy bits (names or masks) to names in bit order', () => {
    const p = parsePolicy({ ...base, requiredPolicyBits: ['ES', 0x1, 'ES'], forbiddenPolicyBits: [0x22, 'NOSEND'] });
    expect(p.requiredPolicyBits).toEqual(['NODBG', 'ES']);
    expect(p.forbiddenPolicyBits).toEqual(['NOKS', 'NOSEND', 'SEV']);
  });

  it('normalises timestamps to UTC with milliseconds', () => {
    const p = parsePolicy({ ...base, notBefore: '2025-01-01T01:30+02:00', notAfter: '2025-12-31T23:59:59.123456789Z' });
    expect(p.notBefore).toBe('2024-12-31T23:30:00.000Z');
    expect(p.notAfter).toBe('2025-12-31T23:59:59.123Z');
    expect(parsePolicy({ ...base, notAfter: '2024-02-29T00:00:00Z' }).notAfter).toBe('2024-02-29T00:00:00.000Z');
    expect(parsePolicy({ ...base, notBefore: '0001-01-01T00:00:00Z' }).notBefore).toBe('0001-01-01T00:00:00.000Z');
  });

  it('keeps absent fields absent, accepts "any" everywhere a list is allowed, and freezes the result', () => {
    const minimal = parsePolicy(base);
    expect(minimal).toStrictEqual({ version: 1, allowedDigests: 'any' });
    const full = parsePolicy({
      version: 1,
      allowedDigests: [E4.digestHex],
      allowedPolicies: [0x5, 0x7, 0x0011_0005, 0x5],
      requiredPolicyBits: ['NODBG', 'ES'],
      forbiddenPolicyBits: ['NOKS'],
      allowDebug: false,
      minFwApiMajor: 0,
      minFwApiMinor: 17,
      allowedBuildIds: [6, 22],
      allowedChips: ['9f86d081884c7d65'],
      maxReleases: 0,
      notBefore: '2025-01-01T00:00:00.000Z',
      notAfter: '2025-01-01T00:00:00.000Z',
      simpleKbsCompat: false,
    });
    expect(full.allowedPolicies).toEqual([0x5, 0x7, 0x0011_0005]);
    expect(parsePolicy({ ...base, allowedPolicies: 'any', allowedBuildIds: 'any', allowedChips: 'any' })).toStrictEqual({
      ...base,
      allowedPolicies: 'any',
      allowedBuildIds: 'any',
      allowedChips: 'any',
    });
    expect(Object.isFrozen(full)).toBe(true);
    expect(Object.isFrozen(full.allowedDigests)).toBe(true);
  });

  it('accepts debuggable policies only with allowDebug: true', () => {
    expect(parsePolicy({ ...base, allowedPolicies: [0x0], allowDebug: true }).allowedPolicies).toEqual([0]);
    expect(parsePolicy({ ...base, forbiddenPolicyBits: ['NODBG'], allowDebug: true }).forbiddenPolicyBits).toEqual(['NODBG']);
  });
});
