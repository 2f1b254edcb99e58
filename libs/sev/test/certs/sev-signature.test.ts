import { constants, generateKeyPairSync, sign } from 'node:crypto';
import * as fc from 'fast-check';
import { decodeChain } from '../../src/certs/chain/chain';
import {
  emptySignatureSlot,
  encodeSevCertificate,
  parseSevCertificate,
  sevPublicKey,
  sevSignedBody,
  type SevCertificate,
  type SevCertificateFields,
} from '../../src/certs/sev/certificate';
import { sevKeyFromPublicKey } from '../../src/certs/sev/key';
import { SEV_CERT } from '../../src/certs/sev/layout';
import { isEmptySignatureSlot } from '../../src/certs/sev/signature';
import { signSevCertificate } from '../../src/certs/sev/sign';
import { Algo, Usage } from '../../src/certs/sev/usage';
import { verifySevCertificate } from '../../src/certs/verify';
import { flipBit, fullChainBytes, makeRoot, p384, resignCek, sevError } from './helpers';

const rome = decodeChain(fullChainBytes('rome'));
const oca = p384();
const other = p384();

function unsignedPek(): SevCertificateFields {
  return {
    apiMajor: 0,
    apiMinor: 22,
    usage: Usage.PEK,
    algo: Algo.ECDSA_SHA256,
    key: sevKeyFromPublicKey(p384().publicKey),
    sigs: [emptySignatureSlot(), emptySignatureSlot()],
  };
}

/** A SEV certificate with slot `i` replaced (raw bytes), re-parsed. */
function withSlot(cert: SevCertificate, i: 0 | 1, slot: { usage: number; algo: number; sig: Buffer }): SevCertificate {
  const sigs: SevCertificateFields['sigs'] = [cert.sigs[0], cert.sigs[1]];
  sigs[i] = slot;
  return parseSevCertificate(encodeSevCertificate({ ...cert, sigs }));
}

/** An OCA certificate to act as the signer. */
const ocaCert = signSevCertificate(
  {
    apiMajor: 0,
    apiMinor: 22,
    usage: Usage.OCA,
    algo: Algo.ECDSA_SHA256,
    key: sevKeyFromPublicKey(oca.publicKey),
    sigs: [emptySignatureSlot(), emptySignatureSlot()],
  },
  0,
  { usage: Usage.OCA, algo: Algo.ECDSA_SHA256, privateKey: oca.privateKey },
);

describe('SEV certificate signing (ECDSA P-384 as the firmware signs)', () => {
  it.each([0, 1] as const)('signs into slot %d, leaving the other slot and the body alone', (slot) => {
    const fields = unsignedPek();
    const signed = signSevCertificate(fields, slot, { usage: Usage.OCA, algo: Algo.ECDSA_SHA256, privateKey: oca.privateKey });
    expect(sevSignedBody(signed).equals(encodeSevCertificate(fields).subarray(0, SEV_CERT.BODY_END))).toBe(true);
    expect(signed.sigs[slot]).toMatchObject({ usage: Usage.OCA, algo: Algo.ECDSA_SHA256 });
    expect(isEmptySignatureSlot(signed.sigs[1 - slot]!)).toBe(true);
    expect(() => verifySevCertificate(ocaCert, signed)).not.toThrow();
    // r and s are little-endian 72-byte fields: the 24 high bytes of each stay zero for P-384
    expect(signed.sigs[slot].sig.subarray(48, 72).every((b) => b === 0)).toBe(true);
    expect(signed.sigs[slot].sig.subarray(72 + 48).every((b) => b === 0)).toBe(true);
  });

  it('OCA self-signature verifies', () => {
    expect(() => verifySevCertificate(ocaCert, ocaCert)).not.toThrow();
    expect(sevError(() => verifySevCertificate(ocaCert, parseSevCertificate(flipBit(ocaCert.raw, 5)))).code).toBe('ERR_SEV_SIGNATURE');
  });

  it('checks usage, kind and hash before the cryptography (chain errors)', () => {
    const signed = signSevCertificate(unsignedPek(), 0, { usage: Usage.OCA, algo: Algo.ECDSA_SHA256, privateKey: oca.privateKey });
    // slot claims CEK: the OCA finds no signature of its own
    const wrongUsage = withSlot(signed, 0, { ...signed.sigs[0], usage: Usage.CEK });
    expect(sevError(() => verifySevCertificate(ocaCert, wrongUsage)).code).toBe('ERR_SEV_CHAIN');
    // slot claims SHA-384 while the OCA key is ECDSA_SHA256
    const wrongHash = withSlot(signed, 0, { ...signed.sigs[0], algo: Algo.ECDSA_SHA384 });
    expect(sevError(() => verifySevCertificate(ocaCert, wrongHash)).code).toBe('ERR_SEV_CHAIN');
    // slot claims RSA
    const wrongKind = withSlot(signed, 0, { ...signed.sigs[0], algo: Algo.RSA_SHA256 });
    expect(sevError(() => verifySevCertificate(ocaCert, wrongKind)).code).toBe('ERR_SEV_CHAIN');
    // ECDH is not a signature algorithm: the slot is empty
    const ecdh = withSlot(signed, 0, { ...signed.sigs[0], algo: Algo.ECDH_SHA256 });
    expect(sevError(() => verifySevCertificate(ocaCert, ecdh)).code).toBe('ERR_SEV_CHAIN');
  });

  it('a matching slot signed by another key is a signature error naming both certificates', () => {
    const signed = signSevCertificate(unsignedPek(), 0, { usage: Usage.OCA, algo: Algo.ECDSA_SHA256, privateKey: other.privateKey });
    expect(() => verifySevCertificate(ocaCert, signed)).toThrow('PEK signature by OCA does not verify');
    expect(sevError(() => verifySevCertificate(ocaCert, signed)).code).toBe('ERR_SEV_SIGNATURE');
  });

  it('any non-empty slot may carry the signature', () => {
    const good = signSevCertificate(unsignedPek(), 1, { usage: Usage.OCA, algo: Algo.ECDSA_SHA256, privateKey: oca.privateKey });
    const garbage = withSlot(good, 0, { usage: Usage.OCA, algo: Algo.ECDSA_SHA256, sig: Buffer.alloc(SEV_CERT.SIG_BYTES, 0x11) });
    expect(isEmptySignatureSlot(garbage.sigs[0])).toBe(false);
    expect(() => verifySevCertificate(ocaCert, garbage)).not.toThrow();
  });

  it('rejects r or s with non-zero bytes above the curve size, ignores the unread tail of the slot', () => {
    const signed = signSevCertificate(unsignedPek(), 0, { usage: Usage.OCA, algo: Algo.ECDSA_SHA256, privateKey: oca.privateKey });
    for (const off of [48, 71, 72 + 48, 72 + 71]) {
      const sig = flipBit(signed.sigs[0].sig, off);
      expect(sevError(() => verifySevCertificate(ocaCert, withSlot(signed, 0, { ...signed.sigs[0], sig }))).code).toBe('ERR_SEV_SIGNATURE');
    }
    for (const off of [144, 300, 511]) {
      const sig = flipBit(signed.sigs[0].sig, off);
      expect(() => verifySevCertificate(ocaCert, withSlot(signed, 0, { ...signed.sigs[0], sig }))).not.toThrow();
    }
  });

  it('refuses algorithms that cannot sign and keys of the wrong kind', () => {
    const f = unsignedPek();
    expect(sevError(() => signSevCertificate(f, 0, { usage: Usage.OCA, algo: Algo.ECDH_SHA256, privateKey: oca.privateKey })).code).toBe('ERR_SEV_ARGUMENT');
    expect(sevError(() => signSevCertificate(f, 0, { usage: Usage.OCA, algo: Algo.RSA_SHA256, privateKey: oca.privateKey })).code).toBe('ERR_SEV_ARGUMENT');
    expect(sevError(() => signSevCertificate(f, 0, { usage: Usage.OCA, algo: Algo.ECDSA_SHA256, privateKey: oca.publicKey })).code).toBe('ERR_SEV_ARGUMENT');
  });
});

describe('CEK signed by an ASK (RSA-PSS in a SEV slot)', () => {
  const root = makeRoot();

  it('re-signing a real CEK keeps its body and verifies under the new ASK only', () => {
    const cek = resignCek(rome.cek, root);
    expect(sevSignedBody(cek).equals(sevSignedBody(rome.cek))).toBe(true);
    expect(cek.sigs[0]).toMatchObject({ usage: Usage.ASK, algo: Algo.RSA_SHA256 });
    // RSA-2048 signature: 256 little-endian bytes, the rest of the 512-byte slot zero
    expect(cek.sigs[0].sig.subarray(256).every((b) => b === 0)).toBe(true);
    expect(() => verifySevCertificate(root.ask, cek)).not.toThrow();
    expect(() => verifySevCertificate(rome.ask, cek)).toThrow('CEK signature by ASK is missing');
    expect(sevError(() => verifySevCertificate(makeRoot().ask, cek)).code).toBe('ERR_SEV_SIGNATURE');
  });

  it('the real Rome CEK verifies under the Rome ASK; a flipped signature byte or wrong salt does not', () => {
    expect(() => verifySevCertificate(rome.ask, rome.cek)).not.toThrow();
    expect(sevError(() => verifySevCertificate(rome.ask, withSlot(rome.cek, 0, { ...rome.cek.sigs[0], sig: flipBit(rome.cek.sigs[0].sig, 0) }))).code).toBe(
      'ERR_SEV_SIGNATURE',
    );
    const pair = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const fake = makeRoot(undefined, pair);
    const body = sevSignedBody(rome.cek);
    const salt20 = sign('sha256', body, { key: pair.privateKey, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: 20 });
    const cek = withSlot(rome.cek, 0, { usage: Usage.ASK, algo: Algo.RSA_SHA256, sig: Buffer.from(salt20).reverse() });
    expect(sevError(() => verifySevCertificate(fake.ask, cek)).code).toBe('ERR_SEV_SIGNATURE');
    const salt32 = sign('sha256', body, { key: pair.privateKey, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: 32 });
    const ok = withSlot(rome.cek, 0, { usage: Usage.ASK, algo: Algo.RSA_SHA256, sig: Buffer.from(salt32).reverse() });
    expect(() => verifySevCertificate(fake.ask, ok)).not.toThrow();
  });
});

describe('SEV certificate encode/parse', () => {
  const pool = [
    generateKeyPairSync('ec', { namedCurve: 'P-384' }).publicKey,
    generateKeyPairSync('ec', { namedCurve: 'P-384' }).publicKey,
    generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey,
    generateKeyPairSync('rsa', { modulusLength: 2048 }).publicKey,
  ];

  it('property: encode(parse(x)) == x with random keys, usages, versions and slots', () => {
    const slot = fc.record({
      usage: fc.oneof(fc.constantFrom(0x1000, 0x1001, 0x1002, 0x1003, 0x1004, 0x13, 0), fc.nat({ max: 0xffffffff })),
      algo: fc.oneof(fc.constantFrom(0, 1, 2, 3, 0x101, 0x102, 0x103), fc.nat({ max: 0xffffffff })),
      sig: fc.uint8Array({ minLength: 512, maxLength: 512 }).map((u) => Buffer.from(u)),
    });
    const fields = fc
      .record({
        apiMajor: fc.nat({ max: 255 }),
        apiMinor: fc.nat({ max: 255 }),
        usage: fc.constantFrom(Usage.OCA, Usage.PEK, Usage.PDH, Usage.CEK),
        keyIndex: fc.nat({ max: pool.length - 1 }),
        ecAlgo: fc.constantFrom(Algo.ECDSA_SHA256, Algo.ECDSA_SHA384, Algo.ECDH_SHA256, Algo.ECDH_SHA384),
        rsaAlgo: fc.constantFrom(Algo.RSA_SHA256, Algo.RSA_SHA384),
        s0: slot,
        s1: slot,
      })
      .map(({ keyIndex, ecAlgo, rsaAlgo, s0, s1, ...rest }) => {
        const key = sevKeyFromPublicKey(pool[keyIndex]!);
        const f: SevCertificateFields = { ...rest, algo: key.kind === 'ec' ? ecAlgo : rsaAlgo, key, sigs: [s0, s1] };
        return { f, keyIndex };
      });
    fc.assert(
      fc.property(fields, ({ f, keyIndex }) => {
        const bytes = encodeSevCertificate(f);
        const parsed = parseSevCertificate(bytes);
        expect(encodeSevCertificate(parsed).equals(bytes)).toBe(true);
        expect(parsed).toMatchObject({ apiMajor: f.apiMajor, apiMinor: f.apiMinor, usage: f.usage, algo: f.algo });
        expect(parsed.sigs).toEqual(f.sigs);
        expect(sevPublicKey(parsed).export({ format: 'jwk' })).toEqual(pool[keyIndex]!.export({ format: 'jwk' }));
      }),
      { numRuns: 100 },
    );
  });

  it('the real certificates re-encode byte for byte', () => {
    for (const c of [rome.pdh, rome.pek, rome.oca, rome.cek]) expect(encodeSevCertificate(c).equals(c.raw)).toBe(true);
  });

  it('rejects an off-curve PDH point (invalid-curve attacks)', () => {
    const off = flipBit(rome.pdh.raw, 0x14);
    expect(sevError(() => parseSevCertificate(off)).code).toBe('ERR_SEV_FORMAT');
  });
});
