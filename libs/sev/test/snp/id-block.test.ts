import { createHash, generateKeyPairSync, createPrivateKey } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createIdBlock, decodeIdBlock, encodeIdBlock, loadSnpSigningKey, verifyIdBlock } from '../../src/snp/id-block';
import { decodeIdAuth, encodeIdAuth, snpKeyDigest, snpPublicKey, ID_AUTH_SIZE } from '../../src/snp/id-block-auth';
import { P384_N, signP384Deterministic, verifyP384, p384KeyParts } from '../../src/snp/id-block-ecdsa';
import { isSevError } from '../../src/errors';

const KEYS = join(__dirname, '../../../../../shared/vectors/measure/sev-snp-measure/keyfile');
const idKey = loadSnpSigningKey(readFileSync(join(KEYS, 'id_key_test.pem')), 'id key');
const authorKey = loadSnpSigningKey(readFileSync(join(KEYS, 'author_key_test.pem')), 'author key');
const LD = Buffer.from('B28FLQi9p6cAqipgjFyqawDrrSl7bWioWkWx5mmlWLZ+G5HShKMB/mPE+gdQRn7t', 'base64');
const hexBig = (h: string) => BigInt('0x' + h);

describe('RFC 6979 deterministic ECDSA P-384 (igvm.md §4.3)', () => {
  it('reproduces RFC 6979 A.2.6 (P-384, SHA-384, "sample")', () => {
    const d = Buffer.from('6b9d3dad2e1b8c1c05b19875b6659f4de23c3b667bf297ba9aa47740787137d896d5724e4c70a825f872c9ea60d2edf5', 'hex');
    // Build the key object from d: node derives the public point.
    const ecdhKey = createPrivateKey({ key: { kty: 'EC', crv: 'P-384', d: d.toString('base64url'), ...pointOf(d) }, format: 'jwk' });
    const sig = signP384Deterministic(ecdhKey, Buffer.from('sample'));
    expect(sig.r).toBe(hexBig('94edbb92a5ecb8aad4736e56c691916b3f88140666ce9fa73d64c4ea95ad133c81a648152e44acf96e36dd1e80fabe46'));
    expect(sig.s).toBe(hexBig('99ef4aeb15f178cea1fe40db2603138f130e740a19624526203b6351d0a3a94fa329c145786e679e7b82c71a38628ac8'));
  });

  it('signs the ID-block vector as igvm.md §5.4 item 4 says, and verification rejects tampering', () => {
    const block = encodeIdBlock({ ld: LD, familyId: Buffer.alloc(16), imageId: Buffer.alloc(16), version: 1, guestSvn: 0, policy: 0x30000n });
    const sig = signP384Deterministic(idKey, block);
    expect(sig.r).toBe(hexBig('750d7c9f2b25535c8d489be8535a85b4c8bf77e4c060df0fe727cbc708d9c8325b4fa729b3d33b52e1ef5f4c62af6b75'));
    expect(sig.s).toBe(hexBig('84cfc2b4b5f1db77887886df69fa8e5265f8be3a42c0ab845b36e9fe43aa624f1cfc85eaee7150c28429499e302140de'));
    const pub = p384KeyParts(idKey);
    expect(verifyP384(pub, block, sig)).toBe(true);
    expect(verifyP384(pub, Buffer.concat([block.subarray(0, 95), Buffer.from([1])]), sig)).toBe(false);
    expect(verifyP384(pub, block, { r: sig.r, s: sig.s + 1n })).toBe(false);
    // (r, n − s) is the other valid signature (no low-S rule for NIST curves, §4.3): the signer must not emit it instead
    expect(verifyP384(pub, block, { r: sig.r, s: P384_N - sig.s })).toBe(true);
    expect(sig.s).not.toBe(P384_N - hexBig('84cfc2b4b5f1db77887886df69fa8e5265f8be3a42c0ab845b36e9fe43aa624f1cfc85eaee7150c28429499e302140de'));
    expect(verifyP384(pub, block, { r: 0n, s: sig.s })).toBe(false);
  });

  it('refuses keys that are not P-384', () => {
    const p256 = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
    expect(() => signP384Deterministic(p256, Buffer.alloc(1))).toThrow(/P-384/);
    const rsa = generateKeyPairSync('rsa', { modulusLength: 1024 }).privateKey.export({ format: 'pem', type: 'pkcs8' });
    expect(() => loadSnpSigningKey(rsa, 'id key')).toThrow(/does not contain an EC private key/);
    expect(() => loadSnpSigningKey('not a key')).toThrow(expect.objectContaining({ code: 'ERR_SEV_KEY' }));
  });
});

describe('SNP ID block and ID_AUTH (igvm.md §5, sev-snp-measure test_id_block.py)', () => {
  const created = createIdBlock({ ld: LD, idKey, authorKey });

  it('builds the vector ID block and key digests', () => {
    expect(created.idBlock.toString('base64')).toBe(
      'B28FLQi9p6cAqipgjFyqawDrrSl7bWioWkWx5mmlWLZ+G5HShKMB/mPE+gdQRn7tAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAABAAAAAAAAAAAAAwAAAAAA',
    );
    expect(created.idKeyDigest.toString('base64')).toBe('hwt+NcU/inLQ0yL3WrKvgmJ5Kq9leWIs5BMcPyHyied8sFYKXjuQs5MuZ07HCcsU');
    expect(created.authorKeyDigest!.toString('base64')).toBe('YxEcNLv8Ckk4+aAJvQdJgNgXIyPmFZnJ/TNtqGcySOHcqY0L6PdjdqEGuK/UwKBX');
  });

  it('lays out ID_AUTH per §5.3 (LE components, algorithms 1, curve 2, reserved zero)', () => {
    const a = created.idAuth;
    expect(a.length).toBe(ID_AUTH_SIZE);
    expect(a.readUInt32LE(0)).toBe(1);
    expect(a.readUInt32LE(4)).toBe(1);
    expect(a.subarray(8, 0x40).every((x) => x === 0)).toBe(true);
    expect(a.readUInt32LE(0x240)).toBe(2);
    expect(a.subarray(0x244, 0x244 + 48).toString('hex')).toBe(
      '9a8a6f98fa144e71eb2bb9046b32eb459d9f02ec87cf938e5a5e72afe2e5d8f605c80a39e2763a18652bbdc2a1d10fb2',
    );
    expect(a.subarray(0x28c, 0x28c + 48).toString('hex')).toBe(
      '4b3669dc3d888070fb4e39591e0e33ce68fbebf6d7d6a61b23a62658eff64f951e8976489475263576cc30abb8a0942c',
    );
    expect(a.subarray(0x884, 0x884 + 48).toString('hex')).toBe(
      'a0101241188c589079d94b7f7a06d968617e623a810f3b38f34a16bf3fc2c693d8543242071ce59a2dbf0924c61f8106',
    );
    expect(a.subarray(0x8cc, 0x8cc + 48).toString('hex')).toBe(
      'c912a92d3437e708d6e4cd62890623364cdf140b880f169d2f47fe51685fbb58fd728c66254efddc71d25626a220b432',
    );
    // id r (LE) is the reversed §5.4 value
    expect(
      Buffer.from(a.subarray(0x40, 0x40 + 48))
        .reverse()
        .toString('hex'),
    ).toBe('750d7c9f2b25535c8d489be8535a85b4c8bf77e4c060df0fe727cbc708d9c8325b4fa729b3d33b52e1ef5f4c62af6b75');
    expect(
      Buffer.from(a.subarray(0x680, 0x680 + 48))
        .reverse()
        .toString('hex'),
    ).toMatch(/^b10d7b97.*9ab50a$/);
    for (const [from, to] of [
      [0x40 + 144, 0x240],
      [0x644, 0x680],
      [0x680 + 144, 0x880],
      [0xc84, 0x1000],
    ]) {
      expect(a.subarray(from!, to!).every((x) => x === 0)).toBe(true);
    }
    expect(encodeIdAuth(decodeIdAuth(a)).equals(a)).toBe(true);
    expect(snpKeyDigest(snpPublicKey(idKey)).equals(createHash('sha384').update(a.subarray(0x240, 0x644)).digest())).toBe(true);
  });

  it('verifies its own output, with and without an author key, and reports the digests', () => {
    const v = verifyIdBlock({ idBlock: created.idBlock, idAuth: created.idAuth, expectedLd: LD, expectedPolicy: 0x30000n });
    expect(v.idKeyDigest.equals(created.idKeyDigest)).toBe(true);
    expect(v.authorKeyDigest!.equals(created.authorKeyDigest!)).toBe(true);
    const noAuthor = createIdBlock({ ld: LD, idKey });
    expect(noAuthor.idAuth.subarray(0x680).every((x) => x === 0)).toBe(true);
    const v2 = verifyIdBlock({ idBlock: noAuthor.idBlock, idAuth: noAuthor.idAuth });
    expect(v2.authorKeyDigest).toBeUndefined();
    expect(() => verifyIdBlock({ idBlock: noAuthor.idBlock, idAuth: noAuthor.idAuth, authorKeyEnabled: true })).toThrow(
      expect.objectContaining({ code: 'ERR_SEV_FORMAT' }),
    );
  });

  it('refuses a wrong digest, policy, signature, algorithm or author signature', () => {
    const code = (f: () => unknown) => {
      try {
        f();
      } catch (e) {
        return isSevError(e) ? e.code : String(e);
      }
      return 'none';
    };
    const other = Buffer.alloc(48, 1);
    expect(code(() => verifyIdBlock({ idBlock: created.idBlock, idAuth: created.idAuth, expectedLd: other }))).toBe('ERR_SEV_MEASUREMENT');
    expect(code(() => verifyIdBlock({ idBlock: created.idBlock, idAuth: created.idAuth, expectedPolicy: 0x30001n }))).toBe('ERR_SEV_POLICY');
    const tamperedBlock = Buffer.from(created.idBlock);
    tamperedBlock[0x50] = 2; // version
    expect(code(() => verifyIdBlock({ idBlock: tamperedBlock, idAuth: created.idAuth }))).toBe('ERR_SEV_SIGNATURE');
    const badAlgo = Buffer.from(created.idAuth);
    badAlgo.writeUInt32LE(2, 0);
    expect(code(() => verifyIdBlock({ idBlock: created.idBlock, idAuth: badAlgo }))).toBe('ERR_SEV_FORMAT');
    const badAuthor = Buffer.from(created.idAuth);
    badAuthor[0x680] = badAuthor[0x680]! ^ 1;
    expect(code(() => verifyIdBlock({ idBlock: created.idBlock, idAuth: badAuthor }))).toBe('ERR_SEV_SIGNATURE');
    const offCurve = Buffer.from(created.idAuth);
    offCurve[0x244] = offCurve[0x244]! ^ 1; // qx no longer on the curve
    expect(code(() => verifyIdBlock({ idBlock: created.idBlock, idAuth: offCurve }))).toBe('ERR_SEV_KEY');
  });

  it('decodes what it encodes and refuses wrong sizes', () => {
    expect(decodeIdBlock(created.idBlock).policy).toBe(0x30000n);
    expect(() => createIdBlock({ ld: Buffer.alloc(47), idKey })).toThrow(expect.objectContaining({ code: 'ERR_SEV_LENGTH' }));
    expect(() => decodeIdAuth(Buffer.alloc(10))).toThrow(expect.objectContaining({ code: 'ERR_SEV_LENGTH' }));
  });
});

/** The public point for a scalar, by node:crypto ECDH (a test helper for the RFC vector's bare private key). */
function pointOf(d: Buffer): { x: string; y: string } {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { createECDH } = require('node:crypto') as typeof import('node:crypto');
  const e = createECDH('secp384r1');
  e.setPrivateKey(d);
  const p = e.getPublicKey();
  return { x: p.subarray(1, 49).toString('base64url'), y: p.subarray(49).toString('base64url') };
}
