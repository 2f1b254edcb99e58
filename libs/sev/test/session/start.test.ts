import { createECDH, createPublicKey, diffieHellman, generateKeyPairSync, type KeyObject } from 'node:crypto';
import * as fc from 'fast-check';
import { encodeSevCertificate, emptySignatureSlot, parseSevCertificate, type SevCertificate } from '../../src/certs/sev/certificate';
import { Algo, Usage } from '../../src/certs/sev/usage';
import { SevError } from '../../src/errors';
import { parseLaunchBlob } from '../../src/launch/session-blob';
import { generateGodhKeyPair, godhCertificate } from '../../src/session/godh';
import { openLaunchBlob } from '../../src/session/open';
import { sessionFromAgreement, startSession } from '../../src/session/start';
import { wrapSession } from '../../src/session/wrap';
import { readVectorFile, sevErrorCode } from './fixtures';

function dhCert(key: KeyObject, opts: { usage?: number; algo?: number } = {}): SevCertificate {
  const jwk = createPublicKey(key).export({ format: 'jwk' });
  const curve = jwk.crv === 'P-256' ? 1 : 2;
  return parseSevCertificate(
    encodeSevCertificate({
      apiMajor: 1,
      apiMinor: 55,
      usage: opts.usage ?? Usage.PDH,
      algo: opts.algo ?? Algo.ECDH_SHA256,
      key: { kind: 'ec', curve, x: Buffer.from(jwk.x!, 'base64url'), y: Buffer.from(jwk.y!, 'base64url') },
      sigs: [emptySignatureSlot(), emptySignatureSlot()],
    }),
  );
}

const pdhKeys = generateKeyPairSync('ec', { namedCurve: 'P-384' });
const pdh = dhCert(pdhKeys.privateKey);
const open = (launchBlob: Buffer, godhCert: Buffer, policy: number) => openLaunchBlob({ launchBlob, godhCert, pdhPrivateKey: pdhKeys.privateKey, policy });

describe('startSession / openLaunchBlob', () => {
  const started = startSession({ pdh, policy: 0x3 });

  it('returns fresh 16-byte keys, a 2084-byte GODH and a 128-byte blob', () => {
    expect(started.tek).toHaveLength(16);
    expect(started.tik).toHaveLength(16);
    expect(started.godhCert).toHaveLength(2084);
    expect(started.launchBlob).toHaveLength(128);
    expect(started.policy).toBe(0x3);
    const again = startSession({ pdh, policy: 0x3 });
    expect(again.tek.equals(started.tek)).toBe(false);
    expect(again.tik.equals(started.tik)).toBe(false);
    expect(again.godhCert.equals(started.godhCert)).toBe(false);
    const [a, b] = [parseLaunchBlob(started.launchBlob), parseLaunchBlob(again.launchBlob)];
    expect(a.nonce.equals(b.nonce)).toBe(false);
    expect(a.wrapIv.equals(b.wrapIv)).toBe(false);
  });

  it('round-trips: the Secure Processor side recovers TEK and TIK', () => {
    const keys = open(started.launchBlob, started.godhCert, 0x3);
    expect(keys.tek.equals(started.tek)).toBe(true);
    expect(keys.tik.equals(started.tik)).toBe(true);
  });

  it('uses Z = big-endian ECDH x-coordinate (cross-checked with node ECDH from the PDH side)', () => {
    const godh = generateKeyPairSync('ec', { namedCurve: 'P-384' });
    const fixed = { tek: Buffer.alloc(16, 1), tik: Buffer.alloc(16, 2), nonce: Buffer.alloc(16, 3), wrapIv: Buffer.alloc(16, 4) };
    const s = startSession({ pdh, policy: 0x5, godhKey: godh.privateKey, ...fixed });

    const ecdh = createECDH('secp384r1');
    ecdh.setPrivateKey(Buffer.from(pdhKeys.privateKey.export({ format: 'jwk' }).d!, 'base64url'));
    const godhJwk = godh.publicKey.export({ format: 'jwk' });
    const z = ecdh.computeSecret(Buffer.concat([Buffer.from([4]), Buffer.from(godhJwk.x!, 'base64url'), Buffer.from(godhJwk.y!, 'base64url')]));
    expect(z).toHaveLength(48);
    expect(s.launchBlob.equals(wrapSession({ z, policy: 0x5, ...fixed }))).toBe(true);
    expect(s.godhCert.equals(godhCertificate(godh.publicKey))).toBe(true);
  });

  it('lays out the GODH certificate as the sev crate does (spec §3.1)', () => {
    const godh = generateKeyPairSync('ec', { namedCurve: 'P-384' });
    const g = startSession({ pdh, policy: 0x3, godhKey: godh.privateKey }).godhCert;
    const le32 = (off: number) => g.readUInt32LE(off);
    expect(le32(0x000)).toBe(1);
    expect(g.subarray(0x004, 0x008).equals(Buffer.alloc(4))).toBe(true); // api 0.0, reserved
    expect(le32(0x008)).toBe(0x1003);
    expect(le32(0x00c)).toBe(0x0003);
    expect(le32(0x010)).toBe(2);
    expect(g.subarray(0x014 + 48, 0x05c).equals(Buffer.alloc(24))).toBe(true);
    expect(g.subarray(0x05c + 48, 0x0a4).equals(Buffer.alloc(24))).toBe(true);
    expect(g.subarray(0x0a4, 0x414).equals(Buffer.alloc(880))).toBe(true);
    for (const slot of [0x414, 0x61c]) {
      expect(le32(slot)).toBe(0x1000);
      expect(le32(slot + 4)).toBe(0);
      expect(g.subarray(slot + 8, slot + 8 + 0x200).equals(Buffer.alloc(0x200))).toBe(true);
    }
    const jwk = godh.publicKey.export({ format: 'jwk' });
    expect(
      Buffer.from(g.subarray(0x014, 0x014 + 48))
        .reverse()
        .toString('base64url'),
    ).toBe(jwk.x);
    expect(
      Buffer.from(g.subarray(0x05c, 0x05c + 48))
        .reverse()
        .toString('base64url'),
    ).toBe(jwk.y);
  });

  it('accepts a real platform PDH (Milan)', () => {
    const milan = parseSevCertificate(readVectorFile('platform-chains/milan/pdh.cert'));
    const s = startSession({ pdh: milan, policy: 0x1 });
    expect(s.launchBlob).toHaveLength(128);
    expect(parseSevCertificate(s.godhCert).usage).toBe(Usage.PDH);
  });

  it('refuses a PDH that is not a P-384 ECDH key with usage PDH', () => {
    expect(sevErrorCode(() => startSession({ pdh: dhCert(pdhKeys.privateKey, { usage: Usage.PEK }), policy: 1 }))).toBe('ERR_SEV_FORMAT');
    expect(sevErrorCode(() => startSession({ pdh: dhCert(pdhKeys.privateKey, { algo: Algo.ECDSA_SHA256 }), policy: 1 }))).toBe('ERR_SEV_FORMAT');
    const p256 = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
    expect(sevErrorCode(() => startSession({ pdh: dhCert(p256), policy: 1 }))).toBe('ERR_SEV_FORMAT');
    const milanPek = parseSevCertificate(readVectorFile('platform-chains/milan/pek.cert'));
    expect(sevErrorCode(() => startSession({ pdh: milanPek, policy: 1 }))).toBe('ERR_SEV_FORMAT');
  });

  it('refuses an unrepresentable policy, a non-P-384 GODH key and wrong injected sizes', () => {
    expect(sevErrorCode(() => startSession({ pdh, policy: 0x40 }))).toBe('ERR_SEV_POLICY');
    const p256 = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
    expect(sevErrorCode(() => startSession({ pdh, policy: 1, godhKey: p256 }))).toBe('ERR_SEV_ARGUMENT');
    expect(sevErrorCode(() => startSession({ pdh, policy: 1, godhKey: pdhKeys.publicKey }))).toBe('ERR_SEV_ARGUMENT');
    expect(sevErrorCode(() => startSession({ pdh, policy: 1, tek: Buffer.alloc(32) }))).toBe('ERR_SEV_LENGTH');
  });

  it('rejects every single-bit flip of the blob with ERR_SEV_MAC', () => {
    for (let bit = 0; bit < 128 * 8; bit++) {
      const blob = Buffer.from(started.launchBlob);
      blob[bit >> 3]! ^= 1 << (bit & 7);
      expect(sevErrorCode(() => open(blob, started.godhCert, 0x3))).toBe('ERR_SEV_MAC');
    }
  });

  it('rejects a different policy, GODH or PDH key with ERR_SEV_MAC', () => {
    for (const policy of [0x0, 0x1, 0x7, 0x10003, 0x3 + 2 ** 31]) {
      expect(sevErrorCode(() => open(started.launchBlob, started.godhCert, policy))).toBe('ERR_SEV_MAC');
    }
    const other = startSession({ pdh, policy: 0x3 });
    expect(sevErrorCode(() => open(started.launchBlob, other.godhCert, 0x3))).toBe('ERR_SEV_MAC');
    const wrongPdh = generateKeyPairSync('ec', { namedCurve: 'P-384' }).privateKey;
    expect(sevErrorCode(() => openLaunchBlob({ launchBlob: started.launchBlob, godhCert: started.godhCert, pdhPrivateKey: wrongPdh, policy: 3 }))).toBe(
      'ERR_SEV_MAC',
    );
  });

  it('throws only SevError for random garbage', () => {
    fc.assert(
      fc.property(
        fc.oneof(fc.uint8Array({ minLength: 128, maxLength: 128 }), fc.uint8Array({ maxLength: 200 })),
        fc.oneof(fc.constant(started.godhCert), fc.uint8Array({ maxLength: 2100 }), fc.uint8Array({ minLength: 2084, maxLength: 2084 })),
        fc.oneof(fc.integer({ min: 0, max: 0x3f }), fc.integer(), fc.double()),
        (launchBlob, godhCert, policy) => {
          expect(() => open(Buffer.from(launchBlob), Buffer.from(godhCert), policy)).toThrow(SevError);
        },
      ),
      { numRuns: 150 },
    );
  });
});

describe('generateGodhKeyPair (startSession without a godhKey)', () => {
  it('gives the public point of the private key it returns, read from the generation itself', () => {
    for (let i = 0; i < 20; i++) {
      const { privateKey, point } = generateGodhKeyPair();
      const jwk = createPublicKey(privateKey).export({ format: 'jwk' }); // a test may inspect the key; a hot loop may not
      expect(Buffer.from(point.x).equals(Buffer.from(jwk.x!, 'base64url'))).toBe(true);
      expect(Buffer.from(point.y).equals(Buffer.from(jwk.y!, 'base64url'))).toBe(true);
      expect(jwk.crv).toBe('P-384');
    }
  });

  it('startSession with its own key: a session the owner of the PDH opens', () => {
    const { privateKey: pdhKey, publicKey: pdhPub } = generateKeyPairSync('ec', { namedCurve: 'P-384' });
    const pdh = parseSevCertificate(godhCertificate(pdhPub));
    const s = startSession({ pdh, policy: 0x1 });
    expect(openLaunchBlob({ launchBlob: s.launchBlob, godhCert: s.godhCert, pdhPrivateKey: pdhKey, policy: 0x1 })).toEqual({ tek: s.tek, tik: s.tik });
  });
});

describe('sessionFromAgreement', () => {
  it('gives the same bundle as startSession when the ECDH ran elsewhere, and checks Z and the policy', () => {
    const { privateKey: pdhKey, publicKey: pdhPub } = generateKeyPairSync('ec', { namedCurve: 'P-384' });
    const pdh = parseSevCertificate(godhCertificate(pdhPub)); // usage PDH, ECDH, P-384: a stand-in platform PDH
    const godhKey = generateKeyPairSync('ec', { namedCurve: 'P-384' }).privateKey;
    const fixed = { policy: 0x5, tek: Buffer.alloc(16, 1), tik: Buffer.alloc(16, 2), nonce: Buffer.alloc(16, 3), wrapIv: Buffer.alloc(16, 4) };
    const direct = startSession({ pdh, godhKey, ...fixed });
    const z = diffieHellman({ privateKey: godhKey, publicKey: pdhPub });
    const agreed = sessionFromAgreement({ z, godhPublicKey: createPublicKey(godhKey), ...fixed });
    expect(agreed.launchBlob.equals(direct.launchBlob)).toBe(true);
    expect(agreed.godhCert.equals(direct.godhCert)).toBe(true);
    expect(openLaunchBlob({ launchBlob: agreed.launchBlob, godhCert: agreed.godhCert, pdhPrivateKey: pdhKey, policy: 0x5 })).toEqual({
      tek: fixed.tek,
      tik: fixed.tik,
    });
    expect(() => sessionFromAgreement({ z: z.subarray(1), godhPublicKey: godhKey, policy: 1 })).toThrow(expect.objectContaining({ code: 'ERR_SEV_LENGTH' }));
    expect(() => sessionFromAgreement({ z, godhPublicKey: godhKey, policy: 0x10001 })).toThrow(expect.objectContaining({ code: 'ERR_SEV_POLICY' }));
  });

  it('takes the GODH public key as a bare point too (as a worker thread hands it over), with the same bytes', () => {
    const { privateKey: pdhKey, publicKey: pdhPub } = generateKeyPairSync('ec', { namedCurve: 'P-384' });
    const godh = generateKeyPairSync('ec', { namedCurve: 'P-384' });
    const jwk = godh.publicKey.export({ format: 'jwk' });
    const point = { x: Buffer.from(jwk.x!, 'base64url'), y: Buffer.from(jwk.y!, 'base64url') };
    const z = diffieHellman({ privateKey: godh.privateKey, publicKey: pdhPub });
    const fixed = { policy: 0x1, tek: Buffer.alloc(16, 5), tik: Buffer.alloc(16, 6), nonce: Buffer.alloc(16, 7), wrapIv: Buffer.alloc(16, 8) };
    const fromPoint = sessionFromAgreement({ z, godhPublicKey: point, ...fixed });
    expect(fromPoint.godhCert.equals(godhCertificate(godh.publicKey))).toBe(true);
    expect(fromPoint.launchBlob.equals(sessionFromAgreement({ z, godhPublicKey: godh.publicKey, ...fixed }).launchBlob)).toBe(true);
    expect(openLaunchBlob({ launchBlob: fromPoint.launchBlob, godhCert: fromPoint.godhCert, pdhPrivateKey: pdhKey, policy: 0x1 })).toEqual({
      tek: fixed.tek,
      tik: fixed.tik,
    });
    expect(() => godhCertificate({ x: point.x.subarray(1), y: point.y })).toThrow(expect.objectContaining({ code: 'ERR_SEV_LENGTH' }));
    expect(() => godhCertificate({ x: point.x, y: Buffer.concat([point.y, Buffer.of(0)]) })).toThrow(expect.objectContaining({ code: 'ERR_SEV_LENGTH' }));
  });
});
