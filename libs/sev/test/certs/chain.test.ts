import { createHash, generateKeyPairSync } from 'node:crypto';
import { builtinCaCertificates } from '../../src/certs/builtin/roots';
import { decodeChain, decodePlatformChain, encodeChain, PLATFORM_CHAIN_SIZE, type FullChain } from '../../src/certs/chain/chain';
import { cekId } from '../../src/certs/chain/identity';
import { verifyChain, type ExtraRoot } from '../../src/certs/chain/verify';
import { emptySignatureSlot } from '../../src/certs/sev/certificate';
import { sevKeyFromPublicKey } from '../../src/certs/sev/key';
import { signSevCertificate } from '../../src/certs/sev/sign';
import { Algo, Usage } from '../../src/certs/sev/usage';
import { flipBit, fullChainBytes, makeRoot, makeSyntheticChain, p384, readVector, REAL_GENERATIONS, resignCek, sevError, type RealGeneration } from './helpers';

const SEV = 2084;
const root = makeRoot();
const simRoot = (name = 'sim'): ExtraRoot => ({ name, ark: root.ark.raw, ask: root.ask.raw });

/** Offsets of the six certificates inside a real full chain, and the CA modulus size in bytes. */
function layout(g: RealGeneration) {
  const caSize = g === 'naples' ? 832 : 1600;
  const n = (caSize - 64) / 3;
  return { pdh: 0, pek: SEV, oca: 2 * SEV, cek: 3 * SEV, ask: PLATFORM_CHAIN_SIZE, ark: PLATFORM_CHAIN_SIZE + caSize, caSize, n };
}

function swap(bytes: Buffer, a: number, b: number, size: number): Buffer {
  const c = Buffer.from(bytes);
  bytes.copy(c, a, b, b + size);
  bytes.copy(c, b, a, a + size);
  return c;
}

describe.each(REAL_GENERATIONS)('%s full chain', (g) => {
  const bytes = fullChainBytes(g);
  const at = layout(g);

  it('decodes in wire order PDH ‖ PEK ‖ OCA ‖ CEK ‖ ASK ‖ ARK and re-encodes byte for byte', () => {
    const chain = decodeChain(bytes);
    for (const k of ['pdh', 'pek', 'oca', 'cek'] as const) {
      expect(chain[k].raw.equals(readVector(`platform-chains/${g}/${k}.cert`))).toBe(true);
    }
    expect(chain.ask.raw.equals(readVector(`amd-roots/${g}/ask.cert`))).toBe(true);
    expect(chain.ark.raw.equals(readVector(`amd-roots/${g}/ark.cert`))).toBe(true);
    expect(encodeChain(chain).equals(bytes)).toBe(true);
    expect(bytes.length).toBe(g === 'naples' ? 10000 : 11536);
  });

  it('verifies and reports its generation, trusted by AMD', () => {
    const r = verifyChain(bytes);
    expect(r.generation).toBe(g);
    expect(r.trustedBy).toBe('amd');
    expect(r.pdh.raw.equals(readVector(`platform-chains/${g}/pdh.cert`))).toBe(true);
    expect(r.cek.raw.equals(readVector(`platform-chains/${g}/cek.cert`))).toBe(true);
    // extra roots do not change how an AMD chain is reported
    expect(verifyChain(bytes, { extraRoots: [simRoot()] }).generation).toBe(g);
  });

  it('cekId is the SHA-256 of the CEK pubkey field, the same for the platform-only chain', () => {
    const expected = createHash('sha256')
      .update(readVector(`platform-chains/${g}/cek.cert`).subarray(0x10, 0x414))
      .digest('hex');
    expect(cekId(decodeChain(bytes))).toBe(expected);
    expect(cekId(decodePlatformChain(bytes.subarray(0, PLATFORM_CHAIN_SIZE)))).toBe(expected);
    expect(expected).toMatch(/^[0-9a-f]{64}$/);
  });

  const tamper: [string, number, RegExp][] = [
    ['PDH body', at.pdh + 5, /^PDH signature by PEK does not verify/],
    ['PDH signature', at.pdh + 0x41c, /^PDH signature by PEK does not verify/],
    ['PEK body', at.pek + 5, /^PEK signature by OCA does not verify/],
    ['PEK signature by OCA', at.pek + 0x41c, /^PEK signature by OCA does not verify/],
    ['PEK signature by CEK', at.pek + 0x624, /^PEK signature by CEK does not verify/],
    ['OCA body', at.oca + 5, /^OCA self-signature does not verify/],
    ['OCA signature', at.oca + 0x41c + 10, /^OCA self-signature does not verify/],
    ['CEK body', at.cek + 5, /^CEK signature by ASK does not verify/],
    ['CEK signature', at.cek + 0x41c + 1, /^CEK signature by ASK does not verify/],
    ['ASK body (modulus)', at.ask + 64 + at.n + 5, /^ASK signature by ARK does not verify/],
    ['ASK body (key_id)', at.ask + 4, /^ASK signature by ARK does not verify/],
    ['ASK signature', at.ask + 64 + 2 * at.n + 5, /^ASK signature by ARK does not verify/],
    ['ARK body (modulus)', at.ark + 64 + at.n + 5, /^ARK self-signature does not verify/],
    ['ARK signature', at.ark + 64 + 2 * at.n + 5, /^ARK self-signature does not verify/],
  ];
  it.each(tamper)('a flipped bit in the %s is ERR_SEV_SIGNATURE', (_what, offset, message) => {
    const e = sevError(() => verifyChain(flipBit(bytes, offset, 4)));
    expect(e.code).toBe('ERR_SEV_SIGNATURE');
    expect(e.message).toMatch(message);
  });

  it.each([
    ['PEK slot 0 usage (OCA → other)', at.pek + 0x414, /PEK signature by OCA is missing/],
    ['CEK slot 0 algo', at.cek + 0x418 + 1, /CEK signature by ASK is missing/],
    ['ASK certifying_id', at.ask + 0x14, /ASK signature by ARK is missing/],
    ['ARK certifying_id', at.ark + 0x14, /ARK self-signature is missing/],
  ] as const)('a flipped bit in the %s is ERR_SEV_CHAIN', (_what, offset, message) => {
    const e = sevError(() => verifyChain(flipBit(bytes, offset)));
    expect(e.code).toBe('ERR_SEV_CHAIN');
    expect(e.message).toMatch(message);
  });

  it('an off-curve PDH point is ERR_SEV_FORMAT naming the PDH', () => {
    const e = sevError(() => verifyChain(flipBit(bytes, at.pdh + 0x14)));
    expect(e.code).toBe('ERR_SEV_FORMAT');
    expect(e.message).toMatch(/^PDH certificate/);
  });

  it('truncation anywhere is ERR_SEV_LENGTH', () => {
    const cuts = [0, 1, SEV - 1, SEV, 2 * SEV + 7, PLATFORM_CHAIN_SIZE - 1, PLATFORM_CHAIN_SIZE, at.ask + 63, at.ask + 64];
    cuts.push(at.ark - 1, at.ark, at.ark + 63, at.ark + 64, bytes.length - 1);
    if (g !== 'naples') cuts.push(bytes.length - at.n); // the "unsigned ARK" shape is only completed for Naples
    for (const len of cuts) {
      const e = sevError(() => verifyChain(bytes.subarray(0, len)));
      expect([len, e.code]).toEqual([len, 'ERR_SEV_LENGTH']);
    }
  });

  it('trailing bytes are refused (ERR_SEV_LENGTH)', () => {
    for (const extra of [Buffer.alloc(1), bytes.subarray(at.ark), bytes]) {
      const e = sevError(() => decodeChain(Buffer.concat([bytes, extra])));
      expect(e.code).toBe('ERR_SEV_LENGTH');
      expect(e.message).toMatch(/unexpected bytes after the end of the chain/);
    }
  });

  it.each([
    ['PDH', 'PEK', layout(g).pdh, layout(g).pek, SEV],
    ['OCA', 'CEK', layout(g).oca, layout(g).cek, SEV],
    ['PDH', 'CEK', layout(g).pdh, layout(g).cek, SEV],
    ['ASK', 'ARK', layout(g).ask, layout(g).ark, layout(g).caSize],
  ])('swapping %s and %s is ERR_SEV_CHAIN', (_a, _b, a, b, size) => {
    const e = sevError(() => verifyChain(swap(bytes, a, b, size)));
    expect(e.code).toBe('ERR_SEV_CHAIN');
    expect(e.message).toMatch(/certificate where the (PDH|OCA|ASK) belongs/);
  });

  it('with a self-made ARK/ASK and a re-signed CEK: ERR_SEV_UNTRUSTED_ROOT unless that root is passed', () => {
    const real = decodeChain(bytes);
    const forged: FullChain = { ...real, cek: resignCek(real.cek, root), ask: root.ask, ark: root.ark };
    const e = sevError(() => verifyChain(encodeChain(forged)));
    expect(e.code).toBe('ERR_SEV_UNTRUSTED_ROOT');
    expect(sevError(() => verifyChain(forged, { extraRoots: [{ name: 'other', ...builtinCaCertificates('genoa') }] })).code).toBe('ERR_SEV_UNTRUSTED_ROOT');
    const r = verifyChain(forged, { extraRoots: [{ ...simRoot('lab-1') }] });
    expect(r).toMatchObject({ generation: 'lab-1', trustedBy: 'extra' });
    // same chip identity: the CEK key did not change, only who vouches for it
    expect(cekId(r.chain)).toBe(cekId(real));
  });

  it('a PDH signed by the wrong key is ERR_SEV_SIGNATURE', () => {
    const real = decodeChain(bytes);
    const pdh = signSevCertificate(real.pdh, 0, { usage: Usage.PEK, algo: Algo.ECDSA_SHA256, privateKey: p384().privateKey });
    expect(pdh.key).toEqual(real.pdh.key);
    const e = sevError(() => verifyChain({ ...real, pdh }));
    expect(e.code).toBe('ERR_SEV_SIGNATURE');
    expect(e.message).toBe('PDH signature by PEK does not verify');
  });
});

describe('mixing generations', () => {
  const withRoots = (platformOf: RealGeneration, rootsOf: 'naples' | 'rome' | 'milan' | 'genoa') => {
    const { ask, ark } = builtinCaCertificates(rootsOf);
    return Buffer.concat([fullChainBytes(platformOf).subarray(0, PLATFORM_CHAIN_SIZE), ask, ark]);
  };

  it('a Rome platform chain under the Milan roots: CEK signature by ASK does not verify', () => {
    const e = sevError(() => verifyChain(withRoots('rome', 'milan')));
    expect(e.code).toBe('ERR_SEV_SIGNATURE');
    expect(e.message).toBe('CEK signature by ASK does not verify');
    expect(sevError(() => verifyChain(withRoots('milan', 'genoa'))).code).toBe('ERR_SEV_SIGNATURE');
  });

  it('a Naples platform chain under the Rome roots: no SHA-384 candidate (ERR_SEV_CHAIN)', () => {
    expect(sevError(() => verifyChain(withRoots('naples', 'rome'))).code).toBe('ERR_SEV_CHAIN');
  });

  it('an ARK of one generation with the ASK of another: ERR_SEV_CHAIN (certifying_id)', () => {
    const rome = fullChainBytes('rome');
    const mixed = Buffer.concat([rome.subarray(0, PLATFORM_CHAIN_SIZE + 1600), builtinCaCertificates('milan').ark]);
    expect(sevError(() => verifyChain(mixed)).code).toBe('ERR_SEV_CHAIN');
  });
});

describe('synthetic chains (the simulator’s path)', () => {
  const { chain, keys } = makeSyntheticChain(root);

  it('a chain built with signSevCertificate / signCaCertificate verifies under its extra root', () => {
    expect(sevError(() => verifyChain(chain)).code).toBe('ERR_SEV_UNTRUSTED_ROOT');
    const r = verifyChain(encodeChain(chain), { extraRoots: [simRoot()] });
    expect(r).toMatchObject({ generation: 'sim', trustedBy: 'extra' });
    expect(r.pdh.raw.equals(chain.pdh.raw)).toBe(true);
    expect(encodeChain(chain).length).toBe(4 * SEV + 2 * 832);
  });

  it('returns fields re-derived from the bytes, not from a hand-assembled object', () => {
    const lying = { ...chain, pdh: { ...chain.pdh, key: sevKeyFromPublicKey(p384().publicKey) } };
    const r = verifyChain(lying, { extraRoots: [simRoot()] });
    expect(r.pdh.key).toEqual(chain.pdh.key);
  });

  it('a PDH that is not a P-384 key is ERR_SEV_FORMAT', () => {
    const p256 = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const pdh = signSevCertificate({ ...chain.pdh, key: sevKeyFromPublicKey(p256.publicKey), sigs: [emptySignatureSlot(), emptySignatureSlot()] }, 0, {
      usage: Usage.PEK,
      algo: Algo.ECDSA_SHA256,
      privateKey: keys.pek.privateKey,
    });
    const e = sevError(() => verifyChain({ ...chain, pdh }, { extraRoots: [simRoot()] }));
    expect(e.code).toBe('ERR_SEV_FORMAT');
    expect(e.message).toMatch(/PDH is not a P-384 key/);
  });

  it('an extra root whose ARK did not sign its ASK does not make its chains trusted', () => {
    const other = makeRoot();
    const broken: ExtraRoot = { name: 'broken', ark: root.ark.raw, ask: other.ask.raw };
    const forged: FullChain = { ...chain, cek: resignCek(chain.cek, other), ask: other.ask };
    const e = sevError(() => verifyChain(forged, { extraRoots: [broken] }));
    expect(e.code).toBe('ERR_SEV_CHAIN');
    expect(e.message).toMatch(/ASK signature by ARK is missing/);
  });

  it('a malformed extra root is a caller error', () => {
    const bad: ExtraRoot = { name: 'bad', ark: root.ark.raw.subarray(1), ask: root.ask.raw };
    expect(sevError(() => verifyChain(chain, { extraRoots: [bad] })).code).toBe('ERR_SEV_ARGUMENT');
    const swapped: ExtraRoot = { name: 'swapped', ark: root.ask.raw, ask: root.ark.raw };
    expect(sevError(() => verifyChain(chain, { extraRoots: [swapped] })).code).toBe('ERR_SEV_ARGUMENT');
  });

  it('an extra root is parsed once per object and still matched by bytes', () => {
    const extra = simRoot();
    expect(verifyChain(chain, { extraRoots: [extra] }).generation).toBe('sim');
    expect(verifyChain(chain, { extraRoots: [extra] }).generation).toBe('sim');
    // a built-in root passed as "extra" still counts as AMD
    const rome = fullChainBytes('rome');
    expect(verifyChain(rome, { extraRoots: [{ name: 'x', ...builtinCaCertificates('rome') }] }).trustedBy).toBe('amd');
  });

  it('the platform-only helpers reject what is not 4 certificates', () => {
    expect(sevError(() => decodePlatformChain(encodeChain(chain))).code).toBe('ERR_SEV_LENGTH');
    const platform = encodeChain({ pdh: chain.pdh, pek: chain.pek, oca: chain.oca, cek: chain.cek });
    expect(platform.length).toBe(PLATFORM_CHAIN_SIZE);
    expect(decodePlatformChain(platform).pdh.raw.equals(chain.pdh.raw)).toBe(true);
    expect(sevError(() => decodePlatformChain(swap(platform, 0, SEV, SEV))).code).toBe('ERR_SEV_CHAIN');
  });
});
