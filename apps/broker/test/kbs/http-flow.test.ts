/**
 * The KBS protocol over real HTTP on loopback (../shared/specs/kbs-protocol.md §14 checklist): the sample TEE's full
 * flows as the guest clients run them, the transcript's bytes, the Bearer path, JWE to every client key kind, replays,
 * expiry, errors with their references in the audit trail, SNP evidence and SNP release policies.
 */
import { randomBytes } from 'node:crypto';
import { openStore, PGLITE_MEMORY, type Store } from '@kb/store';
import type { RunningBroker } from '../../src/broker';
import { newTokenKey, TokenSigner } from '../../src/kbs/token';
import { parseTeePubKey } from '../../src/kbs/binding';
import { MASTER_KEY } from '../support/broker';
import { newTeeKey, sampleAttestation, transcriptKey, vector } from './support/client';
import { KbsTestClient, type Wire } from './support/kbs-client';
import { httpWire, startKbsBroker } from './support/http';

const transcript = vector('derived/rcar-sample-transcript.json');
const SECRET = randomBytes(200);
let clock = Date.now();
const now = () => new Date(clock);
let store: Store;
let broker: RunningBroker;
let wire: Wire;

const refOf = (body: string) => /\(ref ([0-9a-f]+)\)$/.exec((JSON.parse(body) as { detail: string }).detail)?.[1];
async function reasonOf(body: string): Promise<string> {
  const ref = refOf(body);
  expect(ref).toBeDefined();
  for (let i = 0; i < 50; i++) {
    const entries = await store.listAudit({ refId: ref! });
    const call = entries.find((e) => e.event === 'call');
    if (call) return JSON.stringify(call.detail);
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`no audit entry for ref ${ref}`);
}
const expectError = (r: { status: number; body: string }, status: number, type: string) => {
  expect(r.status).toBe(status);
  const b = JSON.parse(r.body) as { type: string; detail: string };
  expect(Object.keys(b).sort()).toEqual(['detail', 'type']);
  expect(b.type).toBe(`https://github.com/confidential-containers/kbs/errors/${type}`);
  expect(b.detail).toMatch(/\(ref [0-9a-f]+\)$/);
};

beforeAll(async () => {
  store = await openStore({ driver: 'pglite', dataDir: PGLITE_MEMORY, masterKey: MASTER_KEY });
  broker = await startKbsBroker(store, {}, now);
  wire = httpWire(broker.httpAddress!);
  await store.putKbsResource({ id: 'default/key/key_id1', bytes: SECRET });
}, 60_000);
afterAll(async () => {
  await broker?.close();
  await store?.close();
});

describe('flow A (cookie client) with the sample TEE', () => {
  it('GET → 401 ErrorInformation → auth → attest → GET → the stored bytes, decrypted as the client does', async () => {
    const c = new KbsTestClient(wire, transcriptKey());
    const first = await c.resource('default/key/key_id1');
    expectError(first, 401, 'TokenNotFound');
    const auth = await c.auth(transcript.auth_request_body);
    expect(auth.status).toBe(200);
    const challenge = JSON.parse(auth.body);
    expect(Object.keys(challenge)).toEqual(['nonce', 'extra-params']);
    expect(challenge['extra-params']).toBe('');
    expect(challenge.nonce).toMatch(/^[A-Za-z0-9+/]{43}=$/);
    const setCookie = auth.headers['set-cookie']!;
    expect(setCookie).toMatch(
      /^kbs-session-id=[0-9a-f]{32}; Expires=[A-Z][a-z]{2}, \d\d [A-Z][a-z]{2} \d{4} \d\d:\d\d:\d\d GMT; Max-Age=300; Path=\/kbs\/v0; HttpOnly$/,
    );
    expect(setCookie).not.toMatch(/Secure/i);
    const attest = await c.attest();
    expect(attest.status).toBe(200);
    expect(attest.headers['set-cookie']).toContain(c.cookie!);
    const token = JSON.parse(attest.body).token as string;
    const claims = JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString());
    expect(Number.isInteger(claims.exp) && Number.isInteger(claims.iat)).toBe(true);
    expect(claims.submods.cpu0['ear.veraison.annotated-evidence'].runtime_data_claims['tee-pubkey']).toEqual(transcript.runtime_data['tee-pubkey']);
    const got = await c.resource('default/key/key_id1');
    expect(got.status).toBe(200);
    expect(got.headers['content-type']).toMatch(/^application\/json/);
    expect(c.decrypt(got.body).equals(SECRET)).toBe(true);
    expect(await c.fetchResource('default/key/key_id1')).toEqual(SECRET);
  });

  it('the transcript attestation with a sampledevice verifies when the nonce is the session’s', async () => {
    const c = new KbsTestClient(wire, transcriptKey());
    await c.auth();
    const dev = transcript.case_with_sampledevice_additional_evidence;
    // the additional evidence was bound to the transcript's nonce: with our fresh nonce the binding must be refused
    const r = await c.attest(dev.attest_request_body);
    expectError(r, 401, 'AttestationError');
    expect(await reasonOf(r.body)).toMatch(/nonce/);
  });

  it('a repeated /attest of an attested session returns the same token without reading the body', async () => {
    const c = new KbsTestClient(wire);
    await c.auth();
    await c.attest();
    const first = c.token;
    const again = await c.attest('not even json {');
    expect(again.status).toBe(401); // a body that is not JSON is refused before the session is looked at
    const retry = await c.attest({});
    expect(retry.status).toBe(401);
    const same = await c.attest(sampleAttestation(c.nonce!, c.key.jwk));
    expect(same.status).toBe(200);
    expect(JSON.parse(same.body).token).toBe(first);
  });
});

describe('flow B (Bearer, the CDH) and the token', () => {
  it('a token alone gets the resource, encrypted to the key inside it; a forged or expired one is 401', async () => {
    const c = new KbsTestClient(wire);
    await c.auth();
    await c.attest();
    const cdh = new KbsTestClient(wire, c.key);
    cdh.token = c.token;
    const r = await cdh.resource('default/key/key_id1', 'bearer');
    expect(r.status).toBe(200);
    expect(cdh.decrypt(r.body).equals(SECRET)).toBe(true);
    const [h, p, s] = c.token!.split('.');
    const claims = JSON.parse(Buffer.from(p!, 'base64url').toString());
    claims.submods.cpu0['ear.veraison.annotated-evidence'].runtime_data_claims['tee-pubkey'] = newTeeKey().jwk;
    cdh.token = `${h}.${Buffer.from(JSON.stringify(claims)).toString('base64url')}.${s}`;
    const forged = await cdh.resource('default/key/key_id1', 'bearer');
    expectError(forged, 401, 'TokenVerifierError');
    expect(await reasonOf(forged.body)).toMatch(/signature/);
    const other = new TokenSigner(newTokenKey()).issue({
      tee: 'sample',
      teePubKey: parseTeePubKey(c.key.jwk).key,
      nonce: 'n',
      additionalEvidence: '',
      reportDataHex: '',
      initDataHex: null,
      teeClaims: {},
      iat: 1,
      exp: 9_999_999_999,
    });
    cdh.token = other;
    expectError(await cdh.resource('default/key/key_id1', 'bearer'), 401, 'TokenVerifierError');
  });

  it('publishes the token key as a JWK Set that verifies issued tokens', async () => {
    const r = await wire('GET', '/kbs/v0/token-certificate-chain', {});
    expect(r.status).toBe(200);
    const jwk = JSON.parse(r.body).keys[0];
    const c = new KbsTestClient(wire);
    await c.auth();
    await c.attest();
    const { createPublicKey, verify } = await import('node:crypto');
    const [h, p, s] = c.token!.split('.');
    const ok = verify(
      'sha256',
      Buffer.from(`${h}.${p}`),
      { key: createPublicKey({ key: { kty: 'EC', crv: 'P-256', x: jwk.x, y: jwk.y }, format: 'jwk' }), dsaEncoding: 'ieee-p1363' },
      Buffer.from(s!, 'base64url'),
    );
    expect(ok).toBe(true);
  });

  it.each(['P-521', 'RSA'] as const)('a %s TEE key gets a JWE it decrypts', async (kind) => {
    const c = new KbsTestClient(wire, newTeeKey(kind));
    expect((await c.fetchResource('default/key/key_id1')).equals(SECRET)).toBe(true);
  });
});

describe('replays and expiry', () => {
  it('a nonce is good once: a failed attestation spends the session; another session’s nonce is refused', async () => {
    const a = new KbsTestClient(wire);
    const b = new KbsTestClient(wire);
    await a.auth();
    await b.auth();
    const stolen = await b.attest(sampleAttestation(a.nonce!, b.key.jwk));
    expectError(stolen, 401, 'AttestationError');
    expect(await reasonOf(stolen.body)).toMatch(/not the session nonce/);
    const late = await b.attest();
    expectError(late, 401, 'AttestationError');
    expect(await reasonOf(late.body)).toMatch(/already used|unknown|expired/);
    expectError(await b.resource('default/key/key_id1'), 401, 'TokenNotFound');
    expect((await a.attest()).status).toBe(200);
  });

  it('a session expires 5 minutes after /auth: attest and cookie resource requests get 401, and so does its token', async () => {
    const c = new KbsTestClient(wire);
    await c.auth();
    await c.attest();
    const late = new KbsTestClient(wire);
    await late.auth();
    clock += 301_000;
    expectError(await late.attest(), 401, 'AttestationError');
    expectError(await c.resource('default/key/key_id1'), 401, 'TokenNotFound');
    expectError(await c.resource('default/key/key_id1', 'bearer'), 401, 'TokenVerifierError');
  });

  it('a cookie of a session that never attested gets 401 (the client then re-attests)', async () => {
    const c = new KbsTestClient(wire);
    await c.auth();
    expectError(await c.resource('default/key/key_id1'), 401, 'TokenNotFound');
  });
});

describe('errors', () => {
  it('version mismatch is 401 with the text clients look for; unknown TEEs and a disabled sample are refused', async () => {
    const r = await wire('POST', '/kbs/v0/auth', { body: '{"version":"0.3.0","tee":"sample","extra-params":""}', contentType: 'application/json' });
    expectError(r, 401, 'AttestationError');
    expect(JSON.parse(r.body).detail).toContain('KBS Client Protocol Version Mismatch: expect =0.4.0 while the request is 0.3.0');
    expectError(
      await wire('POST', '/kbs/v0/auth', { body: '{"version":"0.4.0","tee":"tdx","extra-params":""}', contentType: 'application/json' }),
      401,
      'AttestationError',
    );
    const noExtra = await wire('POST', '/kbs/v0/auth', { body: '{"version":"0.4.0","tee":"sample"}', contentType: 'application/json' });
    expect(noExtra.status).toBe(200);
  });

  it('unknown plugin 404, malformed path 400, missing resource 404 — each with a reference in the audit trail', async () => {
    expectError(await wire('GET', '/kbs/v0/foo/bar', {}), 404, 'PluginNotFound');
    const c = new KbsTestClient(wire);
    await c.auth();
    await c.attest();
    const bad = await c.resource('.hidden/a/b');
    expectError(bad, 400, 'InvalidRequest');
    const missing = await c.resource('default/key/absent');
    expectError(missing, 404, 'ResourceNotFound');
    expect(await reasonOf(missing.body)).toContain('default/key/absent does not exist');
  });

  it('a sample-TEE guest never gets a resource that names a policy', async () => {
    await store.putPolicy('kbs-any', { version: 1, snp: { allowedMeasurements: 'any' } });
    await store.putKbsResource({ id: 'default/key/guarded', bytes: Buffer.from('x'), policyName: 'kbs-any' });
    const c = new KbsTestClient(wire);
    await c.auth();
    await c.attest();
    const r = await c.resource('default/key/guarded');
    expectError(r, 403, 'PolicyDeny');
    expect(await reasonOf(r.body)).toMatch(/sample evidence cannot satisfy/);
  });
});

describe('SNP', () => {
  it('real SNP evidence is verified and refused at REPORT_DATA (its report data is not bound to our nonce)', async () => {
    const c = new KbsTestClient(wire);
    await c.auth('{"version":"0.4.0","tee":"snp","extra-params":{"supported-hash-algorithms":["sha384"]}}');
    const evidence = vector('upstream/snp/e2e-evidence-genoa-v3.json');
    const r = await c.attest({
      'init-data': null,
      'runtime-data': { nonce: c.nonce, 'tee-pubkey': c.key.jwk },
      'tee-evidence': { primary_evidence: evidence, additional_evidence: '' },
    });
    expectError(r, 401, 'AttestationError');
    const reason = await reasonOf(r.body);
    expect(reason).toContain('SNP_REPORT_DATA');
    expect(JSON.parse(r.body).detail).not.toContain('SNP_');
  });

  /** A token as /attest issues it for an SNP guest with these report facts (the broker's own key, from the store). */
  async function snpToken(key: Record<string, string>, facts: Record<string, unknown>): Promise<string> {
    const signer = new TokenSigner(await store.kbsTokenKey(newTokenKey));
    const iat = Math.floor(clock / 1000);
    return signer.issue({
      tee: 'snp',
      teePubKey: parseTeePubKey(key).key,
      nonce: 'n',
      additionalEvidence: '',
      reportDataHex: '',
      initDataHex: null,
      teeClaims: {},
      iat,
      exp: iat + 300,
      snpFacts: facts,
    });
  }
  const M = 'ab'.repeat(48);
  const facts = (over: Record<string, unknown> = {}) => ({
    measurement: M,
    policy: '0x30000',
    reportedTcb: { bootloader: 10, tee: 0, snp: 23, microcode: 25 },
    guestSvn: 0,
    vmpl: 0,
    hostData: '00'.repeat(32),
    idKeyDigest: '00'.repeat(48),
    authorKeyDigest: '00'.repeat(48),
    familyId: '00'.repeat(16),
    imageId: '00'.repeat(16),
    chipId: 'cc'.repeat(64),
    ...over,
  });

  it('releases only when the tenant default and the resource policy pass on the report facts; refusals name the rule', async () => {
    await store.putPolicy('default', { version: 1, snp: { allowedMeasurements: [M], minTcb: { snp: 22 } } });
    await store.putPolicy('kbs-snp', { version: 1, snp: { allowedMeasurements: 'any' }, maxReleases: 1 });
    await store.putKbsResource({ id: 'snp/key/one', bytes: Buffer.from('snp secret'), policyName: 'kbs-snp' });
    const c = new KbsTestClient(wire);
    c.token = await snpToken(c.key.jwk, facts());
    const ok = await c.resource('snp/key/one', 'bearer');
    expect(ok.status).toBe(200);
    expect(c.decrypt(ok.body).toString()).toBe('snp secret');
    const capped = await c.resource('snp/key/one', 'bearer');
    expectError(capped, 403, 'PolicyDeny');
    expect(await reasonOf(capped.body)).toContain('maxReleases');

    await store.putKbsResource({ id: 'snp/key/two', bytes: Buffer.from('two') });
    c.token = await snpToken(
      c.key.jwk,
      facts({ policy: `0x${(0x30000 | (1 << 19)).toString(16)}`, reportedTcb: { bootloader: 10, tee: 0, snp: 21, microcode: 25 } }),
    );
    const refused = await c.resource('snp/key/two', 'bearer');
    expectError(refused, 403, 'PolicyDeny');
    const reason = await reasonOf(refused.body);
    expect(reason).toContain('snp.allowDebug');
    expect(reason).toContain('snp.minTcb.snp');
    c.token = await snpToken(c.key.jwk, facts({ measurement: 'cd'.repeat(48) }));
    expect(await reasonOf((await c.resource('snp/key/two', 'bearer')).body)).toContain('snp.allowedMeasurements');
    c.token = await snpToken(c.key.jwk, facts());
    expect((await c.resource('snp/key/two', 'bearer')).status).toBe(200);
  });
});
