/** The pure protocol pieces against ../shared/vectors/kbs-protocol (derived and upstream). */
import { createHash, createPrivateKey } from 'node:crypto';
import { bindingDigest, deviceBindingDigest, jcs, parseTeePubKey, snpReportData } from '../../src/kbs/binding';
import { aesKeyWrap, concatKdfKek, encryptToTeeKey } from '../../src/kbs/jwe';
import { checkVersion } from '../../src/kbs/auth';
import { parseAttestation } from '../../src/kbs/attest';
import { verifyAdditionalEvidence, verifySampleEvidence } from '../../src/kbs/evidence/sample';
import { isKbsPath } from '../../src/kbs/path';
import { newTokenKey, TokenSigner } from '../../src/kbs/token';
import { sessionCookie, sessionIdFromCookie } from '../../src/kbs/service';
import { clientAad, clientDecrypt, newTeeKey, transcriptKey, vector } from './support/client';

const transcript = vector('derived/rcar-sample-transcript.json');

describe('binding (§4)', () => {
  it('reproduces the JCS known answer of trustee', () => {
    const kat = vector('upstream/jcs-kat.json');
    expect(jcs(kat.input)).toBe(kat.jcs_string);
    expect(createHash('sha384').update(jcs(kat.input)).digest('hex')).toBe(kat.expected_digest_hex);
  });

  it('reproduces the transcript digests, REPORT_DATA and sample report_data byte for byte', () => {
    const { key } = parseTeePubKey(transcript.runtime_data['tee-pubkey']);
    const nonce = transcript.runtime_data.nonce as string;
    const plain = transcript.case_no_additional_evidence;
    expect(jcs({ 'tee-pubkey': key, nonce, 'additional-evidence': '' })).toBe(plain.jcs_string);
    expect(bindingDigest(key, nonce, '').toString('hex')).toBe(plain.sha384_hex);
    expect(snpReportData(bindingDigest(key, nonce, '')).toString('hex')).toBe(plain.snp_report_data_hex_64_bytes);
    expect(bindingDigest(key, nonce, '').toString('base64')).toBe(plain.sample_evidence.report_data);
    const dev = transcript.case_with_sampledevice_additional_evidence;
    expect(deviceBindingDigest(key, nonce).toString('hex')).toBe(dev.device_sha384_hex);
    expect(bindingDigest(key, nonce, dev.additional_evidence_string).toString('hex')).toBe(dev.sha384_hex);
  });

  it('hashes only kty and the variant members, whatever else the JWK carries', () => {
    const extra = { ...transcript.runtime_data['tee-pubkey'], kid: 'x', use: 'enc' };
    const { key } = parseTeePubKey(extra);
    expect(Object.keys(key).sort()).toEqual(['alg', 'crv', 'kty', 'x', 'y']);
  });

  it.each([
    ['padding', { x: 'orGiJVGFRta1OLyyKHJ3G8eJ8QzXmTWFGb6v1TF1PQk=' }],
    ['short coordinate', { x: 'orGiJVGFRta1OLyyKHJ3G8eJ8QzXmTWFGb6v1TF1PQ' }],
    ['point off the curve', { y: 'orGiJVGFRta1OLyyKHJ3G8eJ8QzXmTWFGb6v1TF1PQk' }],
    ['unknown curve', { crv: 'P-384' }],
    ['unknown alg', { alg: 'ECDH-ES' }],
    ['unknown kty', { kty: 'OKP' }],
  ])('refuses a TEE key with %s', (_why, change) => {
    expect(() => parseTeePubKey({ ...transcript.runtime_data['tee-pubkey'], ...change })).toThrow(/tee-pubkey/);
  });
});

describe('attestation body (§3.1)', () => {
  it('parses the transcript bodies (init-data null, underscore members)', () => {
    for (const c of [transcript.case_no_additional_evidence, transcript.case_with_sampledevice_additional_evidence]) {
      const a = parseAttestation(JSON.parse(c.attest_request_body));
      expect(a.nonce).toBe(transcript.runtime_data.nonce);
      expect(a.initData).toBeNull();
      expect(typeof a.additionalEvidence).toBe('string');
    }
  });

  it('accepts an absent init-data and refuses an object additional_evidence', () => {
    const body = JSON.parse(transcript.case_no_additional_evidence.attest_request_body);
    delete body['init-data'];
    expect(parseAttestation(body).initData).toBeNull();
    body['tee-evidence'].additional_evidence = {};
    expect(() => parseAttestation(body)).toThrow(/additional_evidence must be a string/);
  });

  it('verifies the transcript sample evidence and its sampledevice, and refuses a wrong digest', () => {
    const { key } = parseTeePubKey(transcript.runtime_data['tee-pubkey']);
    const nonce = transcript.runtime_data.nonce as string;
    const plain = JSON.parse(transcript.case_no_additional_evidence.attest_request_body);
    expect(verifySampleEvidence(plain['tee-evidence'].primary_evidence, bindingDigest(key, nonce, '')).svn).toBe('1');
    expect(() => verifySampleEvidence(plain['tee-evidence'].primary_evidence, bindingDigest(key, `${nonce}x`, ''))).toThrow(/binding/);
    const dev = transcript.case_with_sampledevice_additional_evidence;
    expect(() => verifyAdditionalEvidence(dev.additional_evidence_string, key, nonce, true)).not.toThrow();
    expect(() => verifyAdditionalEvidence(dev.additional_evidence_string, key, 'other', true)).toThrow(/device binding/);
    expect(() => verifyAdditionalEvidence('{"tdx":{}}', key, nonce, true)).toThrow(/not supported/);
  });
});

describe('version (§8.3)', () => {
  it.each(['0.4.0', '0.4.0+build.7'])('accepts %s', (v) => expect(() => checkVersion(v)).not.toThrow());
  it.each(['0.3.0', '0.4.1', '0.4.0-rc1', '1.0.0'])('refuses %s with the mismatch text clients look for', (v) => {
    expect(() => checkVersion(v)).toThrow(expect.objectContaining({ publicDetail: expect.stringContaining('KBS Client Protocol Version Mismatch') }));
  });
  it.each(['0.4', 'v0.4.0', '', '00.4.0'])('refuses the unparsable %j', (v) => {
    expect(() => checkVersion(v)).toThrow(expect.objectContaining({ publicDetail: expect.stringContaining('failed to parse KBS version') }));
  });
});

describe('JWE (§6)', () => {
  for (const name of ['p256', 'p521']) {
    it(`reproduces the ${name} vector byte for byte with its fixed inputs`, () => {
      const v = vector(`derived/jwe-ecdh-es-a256kw-${name}.json`);
      const i = v.inputs;
      const eph = createPrivateKey({ key: i.ephemeral_private_jwk, format: 'jwk' });
      const { key } = parseTeePubKey(i.recipient_tee_private_jwk);
      const jwe = encryptToTeeKey(key, Buffer.from(i.plaintext_utf8), {
        ephemeralPrivateKey: eph,
        cek: Buffer.from(i.cek_hex, 'hex'),
        iv: Buffer.from(i.iv_hex, 'hex'),
      });
      expect(concatKdfKek(Buffer.from(v.intermediates.z_shared_secret_x_hex, 'hex')).toString('hex')).toBe(v.intermediates.kek_hex);
      expect(aesKeyWrap(Buffer.from(v.intermediates.kek_hex, 'hex'), Buffer.from(i.cek_hex, 'hex')).toString('hex')).toBe(v.intermediates.encrypted_key_hex);
      expect(Buffer.from(jwe.protected, 'base64url').toString()).toBe(v.intermediates.protected_header_json);
      expect(JSON.stringify(jwe)).toBe(v.http_body);
      expect(clientDecrypt(jwe, createPrivateKey(i.recipient_tee_private_key_pkcs8_pem)).toString()).toBe(i.plaintext_utf8);
    });
  }

  it('the header is stable under the client re-serialisation (AAD = protected)', () => {
    const { jwk } = newTeeKey('P-521');
    const jwe = encryptToTeeKey(parseTeePubKey(jwk).key, Buffer.from('x'));
    expect(clientAad(jwe.protected).toString('ascii')).toBe(jwe.protected);
    expect(Object.keys(jwe)).toEqual(['protected', 'encrypted_key', 'iv', 'ciphertext', 'tag']);
  });

  it.each(['P-256', 'P-521', 'RSA'] as const)('round-trips binary bytes to a fresh %s key with the client decryptor', (kind) => {
    const { privateKey, jwk } = newTeeKey(kind);
    const data = Buffer.from(Array.from({ length: 300 }, (_, i) => (i * 7) & 255));
    const jwe = encryptToTeeKey(parseTeePubKey(jwk).key, data);
    expect(clientDecrypt(jwe, privateKey).equals(data)).toBe(true);
    const other = newTeeKey(kind);
    expect(() => clientDecrypt(jwe, other.privateKey)).toThrow();
  });

  it('uses a fresh ephemeral key, CEK and IV per response', () => {
    const { key } = parseTeePubKey(transcriptKey().jwk);
    const a = encryptToTeeKey(key, Buffer.from('same'));
    const b = encryptToTeeKey(key, Buffer.from('same'));
    expect(a.protected).not.toBe(b.protected);
    expect(a.iv).not.toBe(b.iv);
  });
});

describe('token (§5)', () => {
  const signer = new TokenSigner(newTokenKey());
  const input = {
    tee: 'sample',
    teePubKey: parseTeePubKey(transcript.runtime_data['tee-pubkey']).key,
    nonce: 'n',
    additionalEvidence: '',
    reportDataHex: 'ab',
    initDataHex: null,
    teeClaims: { svn: '1' },
    iat: 1_000_000,
    exp: 1_000_300,
  };

  it('is a JWS whose payload decodes to integer times and carries the TEE key at the EAR path', () => {
    const t = signer.issue(input);
    const [h, p, s] = t.split('.');
    expect(h).toMatch(/^[A-Za-z0-9_-]+$/);
    const claims = JSON.parse(Buffer.from(p!, 'base64url').toString());
    expect(Number.isInteger(claims.exp) && Number.isInteger(claims.iat)).toBe(true);
    expect(claims.submods.cpu0['ear.veraison.annotated-evidence'].runtime_data_claims['tee-pubkey']).toEqual(input.teePubKey);
    expect(Buffer.from(s!, 'base64url')).toHaveLength(64);
    expect(signer.verify(t, 1_000_100).tee).toBe('sample');
  });

  it('refuses an expired token, a forged signature and another broker key', () => {
    const t = signer.issue(input);
    expect(() => signer.verify(t, 1_000_300)).toThrow(/expired/);
    const [h, p] = t.split('.');
    const forged = `${h}.${Buffer.from(JSON.stringify({ exp: 9_999_999_999 })).toString('base64url')}.${t.split('.')[2]}`;
    expect(() => signer.verify(forged, 1_000_100)).toThrow(/signature/);
    expect(() => new TokenSigner(newTokenKey()).verify(t, 1_000_100)).toThrow(/signature/);
    expect(() => signer.verify(`${h}.${p}`, 1_000_100)).toThrow(/compact/);
  });

  it('publishes the verifying key as a JWK Set', () => {
    const k = signer.jwks().keys[0]!;
    expect(k).toMatchObject({ kty: 'EC', crv: 'P-256', alg: 'ES256' });
    expect(k.x).toBe(signer.publicJwk.x);
  });
});

describe('paths and cookies', () => {
  it.each([
    ['default/key/key_id1', true],
    ['1.ok/2ok./3...', true],
    ['.1/2/3', false],
    ['a/b', false],
    ['a/b/c/d', false],
    ['a/b/c%2F', false],
    ['a//c', false],
  ])('%s is a resource path: %s', (p, ok) => {
    expect(isKbsPath(p.split('/'))).toBe(ok);
  });

  it('sets no Secure, a path covering /attest and /resource, and an expiry', () => {
    const now = new Date('2026-08-21T10:00:00Z');
    const c = sessionCookie({ id: 'ab'.repeat(16), expires: new Date('2026-08-21T10:05:00Z'), now });
    expect(c).toBe(`kbs-session-id=${'ab'.repeat(16)}; Expires=Fri, 21 Aug 2026 10:05:00 GMT; Max-Age=300; Path=/kbs/v0; HttpOnly`);
    expect(sessionIdFromCookie(`a=b; kbs-session-id=${'cd'.repeat(16)}`)).toBe('cd'.repeat(16));
    expect(sessionIdFromCookie('other=1')).toBeUndefined();
  });
});
