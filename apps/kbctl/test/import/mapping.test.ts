import { generateKeyPairSync, randomBytes, randomUUID } from 'node:crypto';
import { parsePolicy, evaluate } from '@kb/policy';
import { DENY_POLICY_NAME, mapSimpleKbs, type MappingOptions } from '../../src/import/mapping';
import type { SimpleKbsRows } from '../../src/import/source';

/** The row → store mapping on its own: every finding names its row, and nothing is silently changed. */
const opts: MappingOptions = {
  defaultPolicyName: 'default',
  policyPrefix: 'simple-kbs-policy-',
  onMissingPolicy: 'refuse',
  reportSignsLaunchDescription: true,
  connectionExpirySeconds: 3600,
  now: new Date('2026-12-01T00:00:00Z'),
};
const allowAll = JSON.stringify({ allowed_digests: [], allowed_policies: [], min_fw_api_major: 0, min_fw_api_minor: 0, allowed_build_ids: [] });
const empty = (): SimpleKbsRows => ({ policy: [], secrets: [], keysets: [], report_keypair: [], resources: [], conn_bundle: [] });
const map = (rows: SimpleKbsRows, o: Partial<MappingOptions> = {}, files: Record<string, Buffer> = {}) =>
  mapSimpleKbs(rows, { path: '/kbs/default_policy.json', text: allowAll }, (f) => files[f], '/kbs/resources', { ...opts, ...o });
const b = (s: string) => Buffer.from(s, 'utf8'); // MySQL utf8mb4_bin columns may arrive as bytes

describe('mapSimpleKbs', () => {
  it('reads text columns given as bytes (MySQL utf8mb4_bin) and BIGINT polids given as strings (pg)', () => {
    const rows = empty();
    rows.policy.push({
      id: 7,
      allowed_digests: b('[]'),
      allowed_policies: b('[1]'),
      min_fw_api_major: 0,
      min_fw_api_minor: 17,
      allowed_build_ids: b('[]'),
      valid: 1,
    });
    rows.secrets.push({ id: 1, secret_id: b('a'), secret: b(Buffer.from('x').toString('base64')), polid: '7' });
    rows.keysets.push({ id: 1, keysetid: 'K', kskeys: b('["a"]'), polid: null });
    const plan = map(rows);
    expect(plan.problems).toEqual([]);
    expect(plan.batch.secrets).toEqual([{ id: 'a', value: Buffer.from('x'), policyName: 'simple-kbs-policy-7' }]);
    expect(plan.batch.keysets).toEqual([{ id: 'K', secretIds: ['a'], policyName: null }]);
    const p = plan.batch.policies.find((x) => x.name === 'simple-kbs-policy-7')!;
    expect(parsePolicy(p.document)).toMatchObject({ allowedPolicies: [1], minFwApiMajor: 0, minFwApiMinor: 17 });
  });

  it('a secret that is not canonical base64 is a broken row: named, and the import refused', () => {
    const rows = empty();
    rows.secrets.push({ id: 41, secret_id: 'plain', secret: 'not base64!', polid: null });
    rows.secrets.push({ id: 42, secret_id: 'unpadded', secret: 'YWJj', polid: null }); // canonical: fine
    rows.secrets.push({ id: 43, secret_id: 'nopad', secret: 'YWI', polid: null });
    const plan = map(rows);
    expect(plan.problems).toEqual([
      expect.stringMatching(/^secrets row id=41 \(secret_id 'plain'\): the stored secret is not canonical base64/),
      expect.stringMatching(/^secrets row id=43 \(secret_id 'nopad'\): the stored secret is not canonical base64/),
    ]);
    expect(plan.batch.secrets.map((s) => s.id)).toEqual(['unpadded']);
  });

  it('--on-missing-policy deny gives fail-open items a policy that refuses every launch', () => {
    const rows = empty();
    rows.secrets.push({ id: 1, secret_id: 's', secret: '', polid: 5 });
    const refused = map(rows);
    expect(refused.failOpen).toEqual([
      "secret 's': its policy policy row id=5 does not exist; simple-kbs releases it under the tenant default alone (fail-open)",
    ]);
    expect(refused.problems).toHaveLength(1);
    const deny = map(rows, { onMissingPolicy: 'deny' });
    expect(deny.problems).toEqual([]);
    expect(deny.batch.secrets[0]!.policyName).toBe(DENY_POLICY_NAME);
    const doc = parsePolicy(deny.batch.policies.find((p) => p.name === DENY_POLICY_NAME)!.document);
    const facts = { sevPolicy: 1, apiMajor: 1, apiMinor: 55, buildId: 21, launchDigest: randomBytes(32), now: new Date() };
    expect(evaluate([{ name: DENY_POLICY_NAME, kind: 'secret', policy: doc }], facts).allowed).toBe(false);
    const only = map(rows, { onMissingPolicy: 'default-only' });
    expect(only.batch.secrets[0]!.policyName).toBeNull();
    expect(only.batch.policies.map((p) => p.name)).toEqual(['default']);
  });

  it('a used policy row that decodes but cannot be converted is broken; an unused one is only noted', () => {
    const rows = empty();
    const hexDigest = JSON.stringify(['ab'.repeat(32)]); // simple-kbs compared strings with base64: never matched
    rows.policy.push({
      id: 1,
      allowed_digests: hexDigest,
      allowed_policies: '[]',
      min_fw_api_major: 0,
      min_fw_api_minor: 0,
      allowed_build_ids: '[]',
      valid: 1,
    });
    rows.policy.push({
      id: 2,
      allowed_digests: hexDigest,
      allowed_policies: '[]',
      min_fw_api_major: 0,
      min_fw_api_minor: 0,
      allowed_build_ids: '[]',
      valid: 1,
    });
    rows.secrets.push({ id: 1, secret_id: 's', secret: '', polid: 1 });
    const plan = map(rows);
    expect(plan.problems).toEqual([
      expect.stringMatching(/^secret 's' uses policy row id=1 \(simple-kbs-policy-1\), which cannot be converted: allowed_digests\[0\]/),
    ]);
    expect(plan.notices).toEqual([expect.stringMatching(/^policy row id=2 not imported \(no item uses it\): policy row id=2/)]);
  });

  it('connections: launch facts above 255 or a malformed key are broken rows; NULL columns are skipped', () => {
    const rows = empty();
    const digest = randomBytes(32).toString('base64');
    const conn = (over: Record<string, unknown>) => ({
      id: randomUUID(),
      policy: 1,
      fw_api_major: 1,
      fw_api_minor: 55,
      fw_build_id: 21,
      launch_description: 'd',
      fw_digest: digest,
      symkey: randomBytes(32).toString('base64'),
      create_date: null,
      ...over,
    });
    rows.conn_bundle.push(conn({ id: '11111111-1111-4111-8111-111111111111', fw_api_major: 257 }));
    rows.conn_bundle.push(conn({ id: '22222222-2222-4222-8222-222222222222', symkey: randomBytes(16).toString('base64') }));
    rows.conn_bundle.push(conn({ id: '33333333-3333-4333-8333-333333333333', fw_digest: null }));
    rows.conn_bundle.push(conn({ id: '44444444-4444-4444-8444-444444444444', policy: -1 })); // i32 in the table, u32 on the wire
    const plan = map(rows);
    expect(plan.problems).toEqual([
      'conn_bundle row id=11111111-1111-4111-8111-111111111111: fw_api_major 257 is above 255 — only a forged GetSecret reports that (kbs-compat §1.8 #2); delete the row',
      'conn_bundle row id=22222222-2222-4222-8222-222222222222: symkey is not base64 of 32 bytes',
    ]);
    expect(plan.notices).toEqual(['conn_bundle row id=33333333-3333-4333-8333-333333333333 skipped: fw_digest NULL (simple-kbs fails every request on it)']);
    expect(plan.batch.connections.map((c) => [c.clientId, c.sevPolicy, c.expiresAt.toISOString()])).toEqual([
      ['44444444-4444-4444-8444-444444444444', 0xffffffff, '2026-12-01T01:00:00.000Z'],
    ]);
  });

  it('resources: a missing file refuses the import with the row named; the tenant default must exist', () => {
    const rows = empty();
    rows.resources.push({ id: 9, resource_id: 'r', resource_type: 'default/resource/x', resource_path: 'x.bin', polid: null });
    expect(map(rows).problems).toEqual([
      "resources row id=9 (resource_type 'default/resource/x'): its file /kbs/resources/x.bin cannot be read; give simple-kbs's resources directory with --resources-dir, or delete the row",
    ]);
    expect(map(rows, {}, { '/kbs/resources/x.bin': b('bytes') }).batch.resources).toEqual([{ id: 'default/resource/x', bytes: b('bytes'), policyName: null }]);
    const noDefault = mapSimpleKbs(empty(), { path: '/kbs/default_policy.json', text: undefined }, () => undefined, '/kbs/resources', opts);
    expect(noDefault.problems).toEqual([expect.stringMatching(/^the tenant default policy \/kbs\/default_policy.json does not exist/)]);
  });

  it('report keys keep simple-kbs bytes (sign the launch description) unless asked not to; a bad key row is skipped', () => {
    const rows = empty();
    const der = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ format: 'der', type: 'pkcs8' });
    rows.report_keypair.push({ id: 1, key_id: 'r', keypair: der.toString('base64'), polid: null });
    rows.report_keypair.push({ id: 2, key_id: 'bad', keypair: randomBytes(40).toString('base64'), polid: null });
    expect(map(rows).batch.reportKeys).toEqual([{ id: 'r', privateKeyPkcs8: der, policyName: null, signLaunchDescription: true }]);
    expect(map(rows, { reportSignsLaunchDescription: false }).batch.reportKeys[0]!.signLaunchDescription).toBe(false);
    expect(map(rows).notices).toEqual([
      "report_keypair row id=2 (key_id 'bad') skipped: keypair is not base64 of a PKCS#8 ECDSA P-256 key (simple-kbs fails every request for it)",
    ]);
  });
});
