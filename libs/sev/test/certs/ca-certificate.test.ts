import { constants, createHash, sign } from 'node:crypto';
import * as fc from 'fast-check';
import {
  caCertificateLength,
  caPublicKey,
  caSignedBody,
  encodeCaCertificate,
  parseCaCertificate,
  type CaCertificateFields,
} from '../../src/certs/ca/certificate';
import { caKeyFromPublicKey, signCaCertificate } from '../../src/certs/ca/sign';
import { Usage } from '../../src/certs/sev/usage';
import { verifyCaCertificate } from '../../src/certs/verify';
import { flipBit, makeRoot, readVector, rsa2048, sevError } from './helpers';

const romeArk = readVector('amd-roots/rome/ark.cert');
const naplesArk = readVector('amd-roots/naples/ark.cert');

/** A copy of `b` with a u32 written at `off`. */
function withU32(b: Buffer, off: number, v: number): Buffer {
  const c = Buffer.from(b);
  c.writeUInt32LE(v, off);
  return c;
}

describe('AMD CA certificate layout (spec §2.3)', () => {
  it('parses the Rome ARK field by field', () => {
    const c = parseCaCertificate(romeArk);
    expect(c.version).toBe(1);
    expect(c.keyId.toString('hex')).toBe(romeArk.subarray(4, 20).toString('hex'));
    expect(c.certifyingId.equals(romeArk.subarray(0x14, 0x24))).toBe(true);
    expect(c.modulusBits).toBe(4096);
    // exponent and modulus are stored little-endian after the 64-byte preamble
    expect(c.exponent.equals(Buffer.from(romeArk.subarray(0x40, 0x40 + 512)).reverse())).toBe(true);
    expect(c.modulus.equals(Buffer.from(romeArk.subarray(0x240, 0x440)).reverse())).toBe(true);
    expect(c.signature.equals(romeArk.subarray(0x440))).toBe(true);
    expect(caSignedBody(c).equals(romeArk.subarray(0, 0x440))).toBe(true);
    expect(caPublicKey(c).asymmetricKeyDetails?.modulusLength).toBe(4096);
    expect(caCertificateLength(romeArk.subarray(0, 64))).toBe(1600);
    expect(caCertificateLength(naplesArk)).toBe(832);
  });

  it('re-encodes the real roots byte for byte', () => {
    for (const g of ['naples', 'rome', 'milan', 'genoa', 'turin']) {
      for (const k of ['ark', 'ask']) {
        const raw = readVector(`amd-roots/${g}/${k}.cert`);
        expect(encodeCaCertificate(parseCaCertificate(raw)).equals(raw)).toBe(true);
      }
    }
  });

  it.each([
    ['version 2', withU32(romeArk, 0x00, 2), 'ERR_SEV_FORMAT'],
    ['version 0', withU32(romeArk, 0x00, 0), 'ERR_SEV_FORMAT'],
    ['usage 0x1001 (OCA)', withU32(romeArk, 0x24, 0x1001), 'ERR_SEV_FORMAT'],
    ['non-zero reserved', withU32(romeArk, 0x28, 1), 'ERR_SEV_FORMAT'],
    ['modulus size 3072', withU32(withU32(romeArk, 0x38, 3072), 0x3c, 3072), 'ERR_SEV_FORMAT'],
    ['pubexp size ≠ modulus size', withU32(romeArk, 0x38, 2048), 'ERR_SEV_FORMAT'],
    ['modulus announced 2048 on a 4096 body', withU32(withU32(romeArk, 0x38, 2048), 0x3c, 2048), 'ERR_SEV_LENGTH'],
    ['63 bytes', romeArk.subarray(0, 63), 'ERR_SEV_LENGTH'],
    ['empty', Buffer.alloc(0), 'ERR_SEV_LENGTH'],
    ['one byte short', romeArk.subarray(0, 1599), 'ERR_SEV_LENGTH'],
    ['one byte long', Buffer.concat([romeArk, Buffer.alloc(1)]), 'ERR_SEV_LENGTH'],
  ])('rejects %s', (_name, bytes, code) => {
    expect(sevError(() => parseCaCertificate(bytes)).code).toBe(code);
  });

  it('rejects a modulus shorter than its announced size', () => {
    // the most significant modulus byte is the last byte of the little-endian modulus field
    const c = Buffer.from(romeArk);
    c[0x40 + 2 * 512 - 1] = 0x7f;
    expect(sevError(() => parseCaCertificate(c)).code).toBe('ERR_SEV_FORMAT');
  });

  it('encode refuses components that do not fit', () => {
    const c = parseCaCertificate(naplesArk);
    expect(sevError(() => encodeCaCertificate({ ...c, signature: Buffer.alloc(257, 1) })).code).toBe('ERR_SEV_LENGTH');
    expect(sevError(() => encodeCaCertificate({ ...c, keyId: Buffer.alloc(15) })).code).toBe('ERR_SEV_LENGTH');
  });

  it('property: encode(parse(x)) == x and parse(encode(f)) == f for random fields', () => {
    const fields = fc
      .record({
        keyId: fc.uint8Array({ minLength: 16, maxLength: 16 }),
        certifyingId: fc.uint8Array({ minLength: 16, maxLength: 16 }),
        usage: fc.constantFrom(Usage.ARK, Usage.ASK),
        modulusBits: fc.constantFrom(2048 as const, 4096 as const),
        seed: fc.uint8Array({ minLength: 3 * 512, maxLength: 3 * 512 }),
        expBytes: fc.integer({ min: 1, max: 512 }),
      })
      .map(({ keyId, certifyingId, usage, modulusBits, seed, expBytes }): CaCertificateFields => {
        const n = modulusBits / 8;
        const s = Buffer.from(seed);
        const modulus = Buffer.from(s.subarray(0, n));
        modulus[0] = modulus[0]! | 0x80;
        const exponent = Buffer.alloc(n);
        s.subarray(n, n + Math.min(expBytes, n)).copy(exponent, n - Math.min(expBytes, n));
        return {
          keyId: Buffer.from(keyId),
          certifyingId: Buffer.from(certifyingId),
          usage,
          modulusBits,
          exponent,
          modulus,
          signature: Buffer.from(s.subarray(2 * n, 3 * n)),
        };
      });
    fc.assert(
      fc.property(fields, (f) => {
        const bytes = encodeCaCertificate(f);
        const parsed = parseCaCertificate(bytes);
        expect(bytes.length).toBe(64 + 3 * (f.modulusBits / 8));
        expect(parsed.raw.equals(bytes)).toBe(true);
        expect(encodeCaCertificate(parsed).equals(bytes)).toBe(true);
        const { raw: _raw, version, ...rest } = parsed;
        expect(version).toBe(1);
        expect(rest).toEqual(f);
      }),
      { numRuns: 100 },
    );
  });
});

describe('CA signing and verification (spec §2.2)', () => {
  const root = makeRoot();

  it('a synthetic ARK self-verifies and signs its ASK', () => {
    expect(() => verifyCaCertificate(root.ark, root.ark)).not.toThrow();
    expect(() => verifyCaCertificate(root.ark, root.ask)).not.toThrow();
    expect(root.ark.modulusBits).toBe(2048);
  });

  it('uses RSA-PSS with SHA-256 for RSA-2048 and salt = digest length', () => {
    const arkPair = rsa2048();
    const id = Buffer.alloc(16, 7);
    const fields = { keyId: id, certifyingId: id, usage: Usage.ARK, ...caKeyFromPublicKey(arkPair.publicKey) };
    const signed = signCaCertificate(fields, arkPair.privateKey);
    expect(() => verifyCaCertificate(signed, signed)).not.toThrow();
    // the same body signed with salt 20 (OpenSSL's old default) or with SHA-384 must not verify
    const body = caSignedBody(signed);
    for (const [hash, saltLength] of [
      ['sha256', 20],
      ['sha384', 48],
      ['sha256', 0],
    ] as const) {
      const be = sign(hash, body, { key: arkPair.privateKey, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength });
      const other = parseCaCertificate(encodeCaCertificate({ ...fields, signature: Buffer.from(be).reverse() }));
      expect(sevError(() => verifyCaCertificate(other, other)).code).toBe('ERR_SEV_SIGNATURE');
    }
    // a big-endian (unreversed) signature does not verify either
    const be = Buffer.from(signed.signature).reverse();
    const unreversed = parseCaCertificate(encodeCaCertificate({ ...fields, signature: be }));
    expect(sevError(() => verifyCaCertificate(unreversed, unreversed)).code).toBe('ERR_SEV_SIGNATURE');
  });

  it('names the certificates in its errors', () => {
    const tampered = parseCaCertificate(flipBit(root.ask.raw, 0x40 + 256 + 9));
    expect(() => verifyCaCertificate(root.ark, tampered)).toThrow('ASK signature by ARK does not verify');
    const arkBad = parseCaCertificate(flipBit(root.ark.raw, 0x40 + 2 * 256 + 3));
    expect(() => verifyCaCertificate(arkBad, arkBad)).toThrow('ARK self-signature does not verify');
  });

  it('a certifying_id that is not the signer key_id is a chain error, not a signature error', () => {
    const wrongId = parseCaCertificate(flipBit(root.ask.raw, 0x14));
    expect(sevError(() => verifyCaCertificate(root.ark, wrongId)).code).toBe('ERR_SEV_CHAIN');
  });

  it('ARK and ASK of different sizes never verify (the hash comes from the subject size)', () => {
    const rome = parseCaCertificate(romeArk);
    const ask2048 = parseCaCertificate(encodeCaCertificate({ ...root.ask, certifyingId: rome.keyId }));
    expect(sevError(() => verifyCaCertificate(rome, ask2048)).code).toBe('ERR_SEV_CHAIN');
  });

  it('refuses to sign with a non-RSA or public key', () => {
    const pair = rsa2048();
    const fields = { keyId: Buffer.alloc(16), certifyingId: Buffer.alloc(16), usage: Usage.ARK, ...caKeyFromPublicKey(pair.publicKey) };
    expect(sevError(() => signCaCertificate(fields, pair.publicKey)).code).toBe('ERR_SEV_ARGUMENT');
  });

  it('signatures are over exactly the preamble, exponent and modulus', () => {
    // changing only the signature bytes leaves the body hash unchanged
    const a = caSignedBody(root.ask);
    const b = caSignedBody(parseCaCertificate(flipBit(root.ask.raw, root.ask.raw.length - 1)));
    expect(createHash('sha256').update(a).digest('hex')).toBe(createHash('sha256').update(b).digest('hex'));
    expect(a.length).toBe(64 + 2 * 256);
  });
});
