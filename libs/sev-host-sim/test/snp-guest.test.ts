import { createHash, createPrivateKey } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseSnpEvidenceJson } from '@kb/sev';
import { createPlatform, loadSnpCa, SimulatedSnpAttestation, SimulatedSnpChip, SimulatedSnpFirmware, syntheticSnpRoots } from '@kb/sev-sim';
import {
  canonicalJson,
  decodeToken,
  KbsClient,
  KbsProtocolError,
  protectedAad,
  runtimeDataDigest,
  sampleEvidenceProvider,
  SimulatedSnpGuest,
  snpEvidenceJson,
  snpReportData,
  TeeKeyPair,
} from '../src';
import { jweTo, startKbsStub } from './kbs-stub';

const V = join(__dirname, '../../../../shared/vectors');
const KBS = join(V, 'kbs-protocol');
const json = (f: string) => JSON.parse(readFileSync(join(KBS, f), 'utf8'));
const transcript = json('derived/rcar-sample-transcript.json');
const kbsTypes = json('upstream/kbs-types-unit-vectors.json');
const transcriptKey = () => new TeeKeyPair({ privateKey: createPrivateKey(transcript.tee_private_key_pkcs8_pem) });

describe('KBS client encodings against ../shared/vectors/kbs-protocol', () => {
  it('JCS + SHA-384 known answer (jcs-kat.json)', () => {
    const kat = json('upstream/jcs-kat.json');
    expect(canonicalJson(kat.input)).toBe(kat.jcs_string);
    expect(createHash('sha384').update(canonicalJson(kat.input)).digest('hex')).toBe(kat.expected_digest_hex);
  });

  it('binding digest and SNP REPORT_DATA, with and without additional evidence (rcar-sample-transcript.json)', () => {
    const rd = transcript.runtime_data;
    const c0 = transcript.case_no_additional_evidence;
    expect(canonicalJson(c0.hashed_object)).toBe(c0.jcs_string);
    const d0 = runtimeDataDigest({ nonce: rd.nonce, teePubkey: rd['tee-pubkey'] });
    expect(d0.toString('hex')).toBe(c0.sha384_hex);
    expect(snpReportData(d0).toString('hex')).toBe(c0.snp_report_data_hex_64_bytes);
    const c1 = transcript.case_with_sampledevice_additional_evidence;
    expect(runtimeDataDigest({ nonce: rd.nonce, teePubkey: rd['tee-pubkey'], additionalEvidence: c1.additional_evidence_string }).toString('hex')).toBe(
      c1.sha384_hex,
    );
    expect(() => snpReportData(Buffer.alloc(65))).toThrow(RangeError);
  });

  it('Request and Attestation bodies are byte-identical to the client transcript', async () => {
    const client = new KbsClient('http://127.0.0.1:1/', sampleEvidenceProvider, { teeKey: transcriptKey() });
    expect(client.requestBody()).toBe(transcript.auth_request_body);
    expect(JSON.stringify(client.teeKey.publicJwk())).toBe(JSON.stringify(transcript.runtime_data['tee-pubkey']));
    const challenge = JSON.parse(transcript.challenge_body_trustee_style);
    expect(await client.attestationBody(challenge)).toBe(transcript.case_no_additional_evidence.attest_request_body);
    // a challenge selecting SHA-512 changes the digest; an unknown algorithm is refused (§2.5)
    const b512 = JSON.parse(await client.attestationBody({ nonce: challenge.nonce, 'extra-params': { 'selected-hash-algorithm': 'SHA512' } }));
    expect(Buffer.from(b512['tee-evidence'].primary_evidence.report_data, 'base64')).toHaveLength(64);
    await expect(client.attestationBody({ nonce: 'n', 'extra-params': { 'selected-hash-algorithm': 'md5' } })).rejects.toThrow(KbsProtocolError);
  });

  it('JWE: the derived P-256 and P-521 vectors decrypt; the AAD follows kbs-types generate_aad', () => {
    for (const f of ['derived/jwe-ecdh-es-a256kw-p256.json', 'derived/jwe-ecdh-es-a256kw-p521.json']) {
      const v = json(f);
      const crv = v.inputs.recipient_tee_private_jwk.crv;
      const key = new TeeKeyPair({ curve: crv, privateKey: createPrivateKey({ key: v.inputs.recipient_tee_private_jwk, format: 'jwk' }) });
      expect(key.decrypt(v.jwe_flattened_json).toString('utf8')).toBe(v.inputs.plaintext_utf8);
      const tampered = { ...v.jwe_flattened_json, tag: Buffer.alloc(16).toString('base64url') };
      expect(() => key.decrypt(tampered)).toThrow(/GCM/);
    }
    expect(protectedAad(kbsTypes.protected_header_generate_aad.header)).toBe(kbsTypes.protected_header_generate_aad.expected_aad_ascii);
    // a header received with members out of order is re-serialised alg, enc, then sorted (§6.5)
    expect(protectedAad({ enc: 'fakeenc', fakefield: 'fakevalue', alg: 'fakealg' })).toBe(kbsTypes.serialize_response.expected_json.protected);
    // padded base64 is refused as the client does
    const v = json('derived/jwe-ecdh-es-a256kw-p256.json');
    const key = new TeeKeyPair({ privateKey: createPrivateKey({ key: v.inputs.recipient_tee_private_jwk, format: 'jwk' }) });
    expect(() => key.decrypt({ ...v.jwe_flattened_json, iv: `${v.jwe_flattened_json.iv}==` })).toThrow(/base64url/);
  });

  it('SNP evidence JSON is byte-identical to the attester form of the upstream reports', () => {
    for (const [bin, cert, type] of [
      ['test-report-milan-v2', 'test-vcek-milan.der', 'VCEK'],
      ['test-vlek-report-milan-v3', 'test-vlek-milan.der', 'VLEK'],
    ] as const) {
      const report = readFileSync(join(KBS, 'upstream/snp', `${bin}.bin`));
      const certBytes = readFileSync(join(KBS, 'upstream/snp', cert));
      const expected = readFileSync(join(KBS, 'derived/snp', `${bin}.evidence.json`), 'utf8').trim();
      expect(JSON.stringify(snpEvidenceJson(report, [{ type, data: certBytes }]))).toBe(expected);
      expect(parseSnpEvidenceJson(expected).report).toEqual(report);
    }
  });

  it('tokens: integer time claims only (§5.1)', () => {
    const t = (claims: object) => `e30.${Buffer.from(JSON.stringify(claims)).toString('base64url')}.sig`;
    expect(decodeToken(t({ exp: 10, iat: 5 })).exp).toBe(10);
    expect(() => decodeToken(t({ exp: 1.5 }))).toThrow(/exp/);
    expect(() => decodeToken(t({ nbf: '1' }))).toThrow(/nbf/);
    expect(() => decodeToken('nodots')).toThrow(KbsProtocolError);
  });
});

describe('the simulated SNP guest against a local KBS stub over HTTP (the broker KBS front-end is not on main yet)', () => {
  const FIXTURES = join(__dirname, '../../sev-sim/fixtures');
  const igvm = readFileSync(join(V, 'igvm/snp-A10.igvm'));

  async function setup(certTable: 'vcek' | 'chain' | 'none' = 'vcek') {
    const ca = await loadSnpCa({ name: 'sev-sim-snp', generation: 'genoa', dir: FIXTURES });
    const sp = new SimulatedSnpAttestation(new SimulatedSnpFirmware(createPlatform({ name: 'sev-sim-snp' })), new SimulatedSnpChip(ca));
    const guest = SimulatedSnpGuest.launch({ sp, image: { igvm }, nativeZero: true, certTable });
    return { ca, sp, guest };
  }

  it('flow A: 401, auth, attest (report bound to nonce and key), resource decrypted; flow B with the Bearer token', async () => {
    const { ca, guest } = await setup();
    const kbs = await startKbsStub({
      roots: syntheticSnpRoots(ca),
      resources: { 'default/key/disk': Buffer.from('disk key 123') },
      measurements: [guest.launch.measurement!],
    });
    try {
      const seen: string[] = [];
      const client = guest.kbsClient(`${kbs.url}/`, { onExchange: (e) => seen.push(`${e.method} ${e.path} ${e.status}`) });
      expect((await client.getResource('default/key/disk')).toString()).toBe('disk key 123');
      expect(seen).toEqual([
        'GET /kbs/v0/resource/default/key/disk 401',
        'POST /kbs/v0/auth 200',
        'POST /kbs/v0/attest 200',
        'GET /kbs/v0/resource/default/key/disk 200',
      ]);
      expect(kbs.events.find((e) => e.kind === 'attest-ok')?.detail).toBe(guest.launch.measurement!.toString('hex'));
      expect(client.token?.exp).toBeGreaterThan(Date.now() / 1000);
      // the cookie is reused: no second handshake
      await client.getResource('default/key/disk');
      expect(seen.filter((s) => s.startsWith('POST /kbs/v0/auth'))).toHaveLength(1);
      // flow B: Bearer token, no cookie
      expect((await client.getResourceWithToken('default/key/disk')).toString()).toBe('disk key 123');
      await expect(client.getResource('default/key/missing')).rejects.toMatchObject({ code: 'KBS_NOT_FOUND', status: 404 });
    } finally {
      await kbs.close();
    }
  });

  it('an expired token makes the client attest again before its next request (§5.1)', async () => {
    const { ca, guest } = await setup();
    const kbs = await startKbsStub({ roots: syntheticSnpRoots(ca), resources: { 'a/b/c': Buffer.from('x') }, tokenTtlSeconds: 1 });
    try {
      const client = guest.kbsClient(kbs.url);
      await client.getResource('a/b/c');
      expect(kbs.events.filter((e) => e.kind === 'auth')).toHaveLength(1);
      await new Promise((r) => setTimeout(r, 2100));
      expect((await client.getResource('a/b/c')).toString()).toBe('x');
      expect(kbs.events.filter((e) => e.kind === 'auth')).toHaveLength(2);
    } finally {
      await kbs.close();
    }
  });

  it('a guest whose measurement is not accepted is refused at /attest and gets no resource', async () => {
    const { ca, guest } = await setup('chain');
    const kbs = await startKbsStub({ roots: syntheticSnpRoots(ca), resources: { 'a/b/c': Buffer.from('x') }, measurements: [Buffer.alloc(48)] });
    try {
      await expect(guest.kbsClient(kbs.url).getResource('a/b/c')).rejects.toMatchObject({ code: 'KBS_UNAUTHORIZED' });
      expect(kbs.events.find((e) => e.kind === 'attest-refused')?.detail).toMatch(/^SNP_MEASUREMENT/);
    } finally {
      await kbs.close();
    }
  });

  it('OVMF launched as QEMU loads it (sev-snp-measure A11 guest): the report carries its digest', async () => {
    const { sp } = await setup();
    const firmware = readFileSync(join(V, 'measure/sev-snp-measure/fixtures/ovmf_AmdSev_suffix.bin'));
    const bspVmsa = readFileSync(join(V, 'measure/derived/vmsa/qemu_epyc-v4_sevfeat0x1_bsp.bin'));
    const guest = SimulatedSnpGuest.launch({ sp, image: { ovmf: { firmware, vmm: 'qemu', vcpus: 1, bspVmsa } }, nativeZero: true });
    const report = guest.report(Buffer.alloc(64, 1));
    // ../shared/vectors/igvm/MANIFEST.md, snp-A11 (igvmmeasure --native-zero), = sev-snp-measure of the same guest
    expect(report.subarray(0x90, 0xc0).toString('hex')).toBe(
      '19358ba9a7615534a9a1e2f0dfc29384dcd4dcb7062ff9c6013b26869a5fc6ecabe033c48dd6f6db5d6d76e7c5df632d',
    );
    expect(report.readBigUInt64LE(8)).toBe(0x30000n);
  });

  it('the report inside the evidence carries the binding of the session nonce and the TEE key', async () => {
    const { guest } = await setup('none');
    const client = guest.kbsClient('http://127.0.0.1:1');
    const body = JSON.parse(await client.attestationBody({ nonce: 'bm9uY2U=', 'extra-params': '' }));
    const { report, certificates } = parseSnpEvidenceJson(body['tee-evidence'].primary_evidence);
    expect(certificates).toEqual({});
    expect(body['tee-evidence'].primary_evidence.cert_chain).toBeNull();
    const want = snpReportData(runtimeDataDigest({ nonce: 'bm9uY2U=', teePubkey: client.teeKey.publicJwk() }));
    expect(report.subarray(0x50, 0x90)).toEqual(want);
    // the stub's JWE (an independent encoder) decrypts with the client key
    expect(client.teeKey.decrypt(jweTo(client.teeKey.publicJwk(), Buffer.from('ok'))).toString()).toBe('ok');
  });
});
