import { FACTS_POLICY, POLICY_SET_POLICY, evaluate, parsePolicy, type LaunchFacts, type NamedPolicy, type Policy, type Refusal } from '@kb/policy';
import { E1, E4, NOW, OTHER_DIGEST_HEX, e1Facts, e4Facts } from './fixtures';

function tenant(doc: Record<string, unknown>, name = 'default'): NamedPolicy {
  return { name, kind: 'tenant-default', policy: parsePolicy({ version: 1, ...doc }) };
}

function refusals(policies: NamedPolicy[], facts: LaunchFacts): Refusal[] {
  const v = evaluate(policies, facts);
  return v.allowed ? [] : [...v.refusals];
}

/** Evaluates one tenant-default policy and returns the refusals (empty when allowed). */
function check(doc: Record<string, unknown>, facts: LaunchFacts): Refusal[] {
  return refusals([tenant(doc)], facts);
}

const one = (rule: string, reason: string, policy = 'default'): Refusal[] => [{ policy, kind: 'tenant-default', rule, reason }];

describe('each rule accepts and refuses with a precise reason', () => {
  it('allowedDigests (vectors E1 in base64 and E4 in hex)', () => {
    const doc = { allowedDigests: [E1.digestB64, E4.digestHex] };
    expect(evaluate([tenant(doc)], e1Facts())).toEqual({ allowed: true });
    expect(check(doc, e4Facts())).toEqual([]);
    expect(check(doc, e1Facts({ launchDigest: E1.digestHex.toUpperCase() }))).toEqual([]);
    expect(check(doc, e1Facts({ launchDigest: OTHER_DIGEST_HEX }))).toEqual(
      one('allowedDigests', `launch digest ${OTHER_DIGEST_HEX} is not in allowedDigests (2 entries)`),
    );
    expect(check({ allowedDigests: [E4.digestHex] }, e1Facts())).toEqual(
      one('allowedDigests', `launch digest ${E1.digestHex} is not in allowedDigests (1 entry)`),
    );
    expect(check({ allowedDigests: 'any' }, e1Facts({ launchDigest: OTHER_DIGEST_HEX }))).toEqual([]);
  });

  it('allowedPolicies', () => {
    expect(check({ allowedDigests: 'any', allowedPolicies: [0x3, 0x7] }, e1Facts())).toEqual([]);
    expect(check({ allowedDigests: 'any', allowedPolicies: [0x7, 0x5] }, e1Facts())).toEqual(
      one('allowedPolicies', 'SEV policy 0x3 is not in allowedPolicies [0x7, 0x5]'),
    );
    const many = Array.from({ length: 10 }, (_, i) => 0x1 | (i << 16));
    expect(check({ allowedDigests: 'any', allowedPolicies: many }, e1Facts())[0]?.reason).toBe(
      'SEV policy 0x3 is not in allowedPolicies [0x1, 0x10001, 0x20001, 0x30001, 0x40001, 0x50001, 0x60001, 0x70001, … 2 more]',
    );
  });

  it('requiredPolicyBits', () => {
    expect(check({ allowedDigests: 'any', requiredPolicyBits: ['NODBG', 'ES'] }, e4Facts())).toEqual([]);
    expect(check({ allowedDigests: 'any', requiredPolicyBits: ['ES'] }, e1Facts())).toEqual(one('requiredPolicyBits', 'SEV policy 0x3 lacks required bit ES'));
    expect(check({ allowedDigests: 'any', requiredPolicyBits: ['ES', 'NOSEND'] }, e1Facts())).toEqual(
      one('requiredPolicyBits', 'SEV policy 0x3 lacks required bits ES, NOSEND'),
    );
  });

  it('forbiddenPolicyBits', () => {
    expect(check({ allowedDigests: 'any', forbiddenPolicyBits: ['NOKS'] }, e4Facts())).toEqual([]);
    expect(check({ allowedDigests: 'any', forbiddenPolicyBits: ['NOKS'] }, e1Facts())).toEqual(
      one('forbiddenPolicyBits', 'SEV policy 0x3 sets forbidden bit NOKS'),
    );
  });

  it('refuses debuggable guests unless allowDebug is true, and says so once', () => {
    const debuggable = e1Facts({ sevPolicy: 0x2 });
    expect(check({ allowedDigests: 'any' }, debuggable)).toEqual(
      one(
        'allowDebug',
        'SEV policy 0x2 allows debugging (NODBG clear), so the host can read guest memory with DBG_DECRYPT; the policy does not set allowDebug: true',
      ),
    );
    expect(check({ allowedDigests: 'any', allowDebug: false }, debuggable).map((r) => r.rule)).toEqual(['allowDebug']);
    expect(check({ allowedDigests: 'any', allowDebug: true }, debuggable)).toEqual([]);
    expect(check({ allowedDigests: 'any', requiredPolicyBits: ['NODBG'] }, debuggable)).toEqual(
      one('requiredPolicyBits', 'SEV policy 0x2 lacks required bit NODBG'),
    );
    expect(check({ allowedDigests: 'any', requiredPolicyBits: ['NODBG'], allowDebug: true }, debuggable)).toEqual(
      one('requiredPolicyBits', 'SEV policy 0x2 lacks required bit NODBG'),
    );
  });

  it('minFwApi compares (major, minor) lexicographically', () => {
    const min017 = { allowedDigests: 'any', minFwApiMajor: 0, minFwApiMinor: 17 };
    expect(check(min017, e1Facts({ apiMajor: 0, apiMinor: 17 }))).toEqual([]);
    expect(check(min017, e1Facts({ apiMajor: 1, apiMinor: 0 }))).toEqual([]); // simple-kbs refused this
    expect(check(min017, e1Facts({ apiMajor: 0, apiMinor: 16 }))).toEqual(
      one('minFwApi', 'firmware API 0.16 is below the minimum 0.17 (minFwApiMajor.minFwApiMinor)'),
    );
    const min1 = { allowedDigests: 'any', minFwApiMajor: 1 };
    expect(check(min1, e1Facts({ apiMajor: 1, apiMinor: 0 }))).toEqual([]);
    expect(check(min1, e1Facts({ apiMajor: 0, apiMinor: 255 }))).toEqual(
      one('minFwApi', 'firmware API 0.255 is below the minimum 1.0 (minFwApiMajor.minFwApiMinor)'),
    );
    expect(check({ allowedDigests: 'any', minFwApiMajor: 1, minFwApiMinor: 40 }, e1Facts())).toEqual([]);
    expect(check({ allowedDigests: 'any', minFwApiMajor: 1, minFwApiMinor: 41 }, e1Facts())[0]?.rule).toBe('minFwApi');
  });

  it('minFwApi with simpleKbsCompat (documents from earlier versions) compares in version order, as simple-kbs policy.rs does', () => {
    const compat = { allowedDigests: 'any', minFwApiMajor: 0, minFwApiMinor: 65, simpleKbsCompat: true };
    expect(check(compat, e1Facts({ apiMajor: 1, apiMinor: 55 }))).toEqual([]);
    expect(check(compat, e1Facts({ apiMajor: 0, apiMinor: 65 }))).toEqual([]);
    expect(check(compat, e1Facts({ apiMajor: 0, apiMinor: 64 }))).toEqual(
      one('minFwApi', 'firmware API 0.64 is below the minimum 0.65 (minFwApiMajor.minFwApiMinor)'),
    );
  });

  it('allowedBuildIds', () => {
    expect(check({ allowedDigests: 'any', allowedBuildIds: [40, 41] }, e1Facts())).toEqual([]);
    expect(check({ allowedDigests: 'any', allowedBuildIds: [6, 22] }, e1Facts())).toEqual(
      one('allowedBuildIds', 'firmware build 40 is not in allowedBuildIds [6, 22]'),
    );
  });

  it('allowedChips pins hosts exactly and refuses an unknown chip', () => {
    const doc = { allowedDigests: 'any', allowedChips: ['cek-a1b2', 'cek-c3d4'] };
    expect(check(doc, e1Facts({ chipId: 'cek-c3d4' }))).toEqual([]);
    expect(check(doc, e1Facts({ chipId: 'cek-ffff' }))).toEqual(one('allowedChips', 'chip "cek-ffff" is not in allowedChips (2 entries)'));
    expect(check(doc, e1Facts({ chipId: 'CEK-C3D4' }))[0]?.rule).toBe('allowedChips');
    expect(check(doc, e1Facts())).toEqual(one('allowedChips', 'the chip identity is unknown, and allowedChips pins 2 chips'));
    expect(check({ allowedDigests: 'any', allowedChips: 'any' }, e1Facts())).toEqual([]);
  });

  it('notBefore / notAfter form an inclusive window', () => {
    const doc = { allowedDigests: 'any', notBefore: '2025-06-01T12:00:00Z', notAfter: '2025-06-01T14:00:00+02:00' };
    expect(check(doc, e1Facts({ now: NOW }))).toEqual([]);
    expect(check(doc, e1Facts({ now: new Date(NOW.getTime() - 1) }))).toEqual(
      one('notBefore', 'now (2025-06-01T11:59:59.999Z) is before notBefore 2025-06-01T12:00:00.000Z'),
    );
    expect(check(doc, e1Facts({ now: new Date(NOW.getTime() + 1) }))).toEqual(
      one('notAfter', 'now (2025-06-01T12:00:00.001Z) is after notAfter 2025-06-01T12:00:00.000Z'),
    );
  });

  it('maxReleases refuses once the count for this policy name is reached, or when it is unknown', () => {
    const doc = { allowedDigests: 'any', maxReleases: 3 };
    const counts = (n: unknown): ReadonlyMap<string, number> =>
      new Map([
        ['default', n as number],
        ['other', 0],
      ]);
    expect(check(doc, e1Facts({ releaseCounts: counts(2) }))).toEqual([]);
    expect(check(doc, e1Facts({ releaseCounts: counts(3) }))).toEqual(one('maxReleases', 'policy "default" has released 3 times, maxReleases is 3'));
    expect(check({ allowedDigests: 'any', maxReleases: 0 }, e1Facts({ releaseCounts: counts(0) }))[0]?.rule).toBe('maxReleases');
    expect(check(doc, e1Facts())).toEqual(one('maxReleases', 'maxReleases is 3 but no release count was given for policy "default"'));
    expect(check(doc, e1Facts({ releaseCounts: new Map([['other', 0]]) }))[0]?.rule).toBe('maxReleases');
    expect(check(doc, e1Facts({ releaseCounts: counts(-1) }))).toEqual(
      one('maxReleases', 'the release count -1 for policy "default" is not a non-negative integer'),
    );
    expect(check(doc, e1Facts({ releaseCounts: counts(1.5) }))[0]?.rule).toBe('maxReleases');
    expect(check({ allowedDigests: 'any' }, e1Facts({ releaseCounts: counts(99) }))).toEqual([]);
  });
});

describe('evaluate ANDs every policy and lists every refusal', () => {
  it('reports each failing policy with its name, kind, rule and reason, in order', () => {
    const policies: NamedPolicy[] = [
      tenant({ allowedDigests: 'any', requiredPolicyBits: ['NODBG'] }),
      { name: 'KEYSET-1', kind: 'keyset', policy: parsePolicy({ version: 1, allowedDigests: [E4.digestHex] }) },
      {
        name: 'key_id1',
        kind: 'secret',
        policy: parsePolicy({ version: 1, allowedDigests: [E1.digestHex], requiredPolicyBits: ['ES'], allowedChips: ['chip-1'] }),
      },
    ];
    expect(evaluate(policies, e1Facts({ chipId: 'chip-2' }))).toEqual({
      allowed: false,
      refusals: [
        { policy: 'KEYSET-1', kind: 'keyset', rule: 'allowedDigests', reason: `launch digest ${E1.digestHex} is not in allowedDigests (1 entry)` },
        { policy: 'key_id1', kind: 'secret', rule: 'requiredPolicyBits', reason: 'SEV policy 0x3 lacks required bit ES' },
        { policy: 'key_id1', kind: 'secret', rule: 'allowedChips', reason: 'chip "chip-2" is not in allowedChips (1 entry)' },
      ],
    });
    expect(evaluate(policies.slice(0, 1), e1Facts())).toEqual({ allowed: true });
  });

  it('lists several refusals of a single policy', () => {
    const doc = { allowedDigests: [E4.digestHex], allowedBuildIds: [6], minFwApiMajor: 1, minFwApiMinor: 49 };
    expect(check(doc, e1Facts()).map((r) => r.rule)).toEqual(['allowedDigests', 'minFwApi', 'allowedBuildIds']);
    expect(check(doc, e4Facts())).toEqual([]);
  });

  it('refuses when no policy applies', () => {
    expect(evaluate([], e1Facts())).toEqual({
      allowed: false,
      refusals: [{ policy: POLICY_SET_POLICY, rule: 'policies', reason: 'no policy applies to this release; at least the tenant default policy is required' }],
    });
  });

  it('refuses (and never trusts) a stored document that is not a valid policy', () => {
    const corrupt = { name: 'legacy', kind: 'keyset', policy: { version: 1, allowedDigests: [] } as unknown as Policy } as const;
    expect(refusals([corrupt], e1Facts())).toEqual([
      {
        policy: 'legacy',
        kind: 'keyset',
        rule: 'document',
        reason: expect.stringMatching(/^the stored policy document is invalid: allowedDigests is an empty list/) as unknown as string,
      },
    ]);
    expect(refusals([{ name: 'x', kind: 'keyset', policy: null as unknown as Policy }], e1Facts())[0]?.rule).toBe('document');
  });

  it('refuses an unknown policy kind and a missing name', () => {
    const bad = { name: '', kind: 'global', policy: parsePolicy({ version: 1, allowedDigests: 'any' }) } as unknown as NamedPolicy;
    expect(refusals([bad], e1Facts())).toEqual([
      { policy: '(unnamed "")', rule: 'kind', reason: 'policy kind "global" is not one of tenant-default, keyset, secret, resource, report-key, connection' },
    ]);
  });
});

describe('launch facts are validated: an out-of-range fact is a refusal, never an exception', () => {
  const anyPolicy = [tenant({ allowedDigests: 'any', allowDebug: true })];
  const factRefusal = (facts: LaunchFacts): Refusal[] => refusals(anyPolicy, facts).filter((r) => r.policy === FACTS_POLICY);

  it.each([
    ['apiMajor', 256],
    ['apiMajor', -1],
    ['apiMinor', 1.5],
    ['apiMinor', '40'],
    ['buildId', NaN],
    ['buildId', 2 ** 32 + 40],
  ])('%s = %p', (fact, value) => {
    expect(factRefusal(e1Facts({ [fact]: value }))).toEqual([
      {
        policy: FACTS_POLICY,
        rule: fact,
        reason: expect.stringContaining(`is not a u8 (0..255): the launch measurement binds a single byte`) as unknown as string,
      },
    ]);
  });

  it('sevPolicy must be a u32 without reserved bits', () => {
    expect(factRefusal(e1Facts({ sevPolicy: 0x41 }))).toEqual([
      {
        policy: FACTS_POLICY,
        rule: 'sevPolicy',
        reason: 'SEV policy 0x41 sets reserved bits 0x40; the firmware refuses such a policy, so this launch cannot be genuine',
      },
    ]);
    expect(factRefusal(e1Facts({ sevPolicy: 2 ** 32 }))[0]?.reason).toBe('sevPolicy 4294967296 is not a u32');
    expect(factRefusal(e1Facts({ sevPolicy: -1 }))[0]?.rule).toBe('sevPolicy');
    expect(factRefusal(e1Facts({ sevPolicy: 0x0011_0001 }))).toEqual([]);
  });

  it('launchDigest must be 32 bytes or 64 hex digits', () => {
    expect(factRefusal(e1Facts({ launchDigest: Buffer.alloc(31) }))[0]?.reason).toBe('launchDigest is 31 bytes, expected 32');
    expect(factRefusal(e1Facts({ launchDigest: E1.digestB64 }))[0]?.reason).toMatch(/^launchDigest "xkvR.*" is not 32 bytes of hex$/);
    expect(factRefusal(e1Facts({ launchDigest: 42 }))[0]?.reason).toBe('launchDigest must be a Buffer or hex string, got number');
    expect(factRefusal(e1Facts({ launchDigest: new Uint8Array(Buffer.from(E1.digestHex, 'hex')) }))).toEqual([]);
  });

  it('now, chipId and releaseCounts are type-checked', () => {
    expect(factRefusal(e1Facts({ now: new Date(NaN) }))[0]?.reason).toBe('now must be a valid Date, got Invalid Date');
    expect(factRefusal(e1Facts({ now: NOW.toISOString() }))[0]?.reason).toBe('now must be a valid Date, got string');
    expect(factRefusal(e1Facts({ chipId: 7 }))[0]?.rule).toBe('chipId');
    expect(factRefusal(e1Facts({ releaseCounts: { default: 1 } }))[0]?.reason).toBe('releaseCounts must be a Map of policy name to count, got object');
  });

  it('refuses a facts value that is not an object', () => {
    expect(factRefusal(null as unknown as LaunchFacts)).toEqual([{ policy: FACTS_POLICY, rule: 'facts', reason: 'launch facts must be an object, got null' }]);
  });

  it('still evaluates the rules whose facts are valid, and skips those whose fact was refused', () => {
    const doc = { allowedDigests: [E4.digestHex], minFwApiMajor: 1, allowedBuildIds: [6] };
    expect(check(doc, e1Facts({ apiMajor: 257 })).map((r) => `${r.policy}/${r.rule}`)).toEqual([
      `${FACTS_POLICY}/apiMajor`,
      'default/allowedDigests',
      'default/allowedBuildIds',
    ]);
  });
});

describe('kbs-compat §1.8 attacks at the facts level', () => {
  it('#2 version truncation: a claimed ApiMajor of 256 + real is refused, not compared as a u32', () => {
    // Real firmware 0.24 is below the owner's 1.0 floor. simple-kbs compared the claimed 256 >= 1 and then verified
    // the HMAC over (256 as u8) = 0, so the forged claim passed both checks.
    const doc = { allowedDigests: 'any', minFwApiMajor: 1 };
    expect(check(doc, e1Facts({ apiMajor: 0, apiMinor: 24 })).map((r) => r.rule)).toEqual(['minFwApi']);
    const forged = check(doc, e1Facts({ apiMajor: 256 + 0, apiMinor: 24 }));
    expect(forged.map((r) => `${r.policy}/${r.rule}`)).toEqual([`${FACTS_POLICY}/apiMajor`]);
    expect(evaluate([tenant(doc)], e1Facts({ apiMajor: 256, apiMinor: 24 })).allowed).toBe(false);
    expect(evaluate([tenant({ allowedDigests: 'any', allowedBuildIds: [40] })], e1Facts({ buildId: 256 + 40 })).allowed).toBe(false);
  });

  it('#1 unbound policy: the engine judges the policy bound at GetBundle, and a debuggable one is refused by default', () => {
    // The host launched with policy 0 (debugging on) and would claim 3 in GetSecret; the broker passes the bound 0.
    const owner = { allowedDigests: [E1.digestHex], allowedPolicies: [0x3, 0x7] };
    expect(check(owner, e1Facts({ sevPolicy: 0x3 }))).toEqual([]);
    expect(check(owner, e1Facts({ sevPolicy: 0x0 })).map((r) => r.rule)).toEqual(['allowedPolicies', 'allowDebug']);
    // Even an owner who allows any SEV policy does not release into a debuggable guest without saying so.
    expect(check({ allowedDigests: [E1.digestHex], allowedPolicies: 'any' }, e1Facts({ sevPolicy: 0x0 })).map((r) => r.rule)).toEqual(['allowDebug']);
  });
});
