import { AMD_GENERATIONS, builtinCaCertificates } from '../../src/certs/builtin/roots';
import { parseCaCertificate } from '../../src/certs/ca/certificate';
import { decodeChain, decodePlatformChain, encodeChain } from '../../src/certs/chain/chain';
import { builtinGeneration, withBuiltinCa } from '../../src/certs/chain/generation';
import { verifyChain } from '../../src/certs/chain/verify';
import { Usage } from '../../src/certs/sev/usage';
import { verifyCaCertificate, verifySevCertificate } from '../../src/certs/verify';
import { flipBit, fullChainBytes, readVector, REAL_GENERATIONS, sevError } from './helpers';

// key_id prefixes from vectors/sev/MANIFEST.txt.
const KEY_IDS: Record<string, { ark: string; ask: string; bits: number }> = {
  naples: { ark: '1bb987c3', ask: 'e139970c', bits: 2048 },
  rome: { ark: 'e6002122', ask: 'c6cbcf14', bits: 4096 },
  milan: { ark: '94c38e41', ask: '73478c05', bits: 4096 },
  genoa: { ark: '9f9d4a8f', ask: 'acbb4ad2', bits: 4096 },
  turin: { ark: 'd05c3a8b', ask: '15051693', bits: 4096 },
};

describe('built-in AMD roots', () => {
  it('covers the five generations of the crate, in its try order', () => {
    expect([...AMD_GENERATIONS]).toEqual(['naples', 'rome', 'milan', 'genoa', 'turin']);
  });

  it.each(AMD_GENERATIONS)('%s: embedded ARK and ASK equal the files in shared/vectors', (g) => {
    const { ark, ask } = builtinCaCertificates(g);
    expect(ark.equals(readVector(`amd-roots/${g}/ark.cert`))).toBe(true);
    expect(ask.equals(readVector(`amd-roots/${g}/ask.cert`))).toBe(true);
  });

  it('hands out copies, so a caller cannot alter the pinned bytes', () => {
    builtinCaCertificates('rome').ark.fill(0);
    expect(builtinCaCertificates('rome').ark.equals(readVector('amd-roots/rome/ark.cert'))).toBe(true);
  });

  it.each(AMD_GENERATIONS)('%s: ARK self-verifies and signs the ASK; fields match the MANIFEST', (g) => {
    const { ark: arkBytes, ask: askBytes } = builtinCaCertificates(g);
    const ark = parseCaCertificate(arkBytes);
    const ask = parseCaCertificate(askBytes);
    expect(ark.usage).toBe(Usage.ARK);
    expect(ask.usage).toBe(Usage.ASK);
    expect(ark.modulusBits).toBe(KEY_IDS[g]!.bits);
    expect(ark.keyId.toString('hex').startsWith(KEY_IDS[g]!.ark)).toBe(true);
    expect(ask.keyId.toString('hex').startsWith(KEY_IDS[g]!.ask)).toBe(true);
    expect(ark.certifyingId.equals(ark.keyId)).toBe(true);
    expect(ask.certifyingId.equals(ark.keyId)).toBe(true);
    expect(ark.exponent.readUIntBE(ark.exponent.length - 3, 3)).toBe(65537);
    expect(() => verifyCaCertificate(ark, ark)).not.toThrow();
    expect(() => verifyCaCertificate(ark, ask)).not.toThrow();
    // An ASK never signs a CA certificate: CA signatures always claim usage ARK.
    expect(sevError(() => verifyCaCertificate(ask, ask)).code).toBe('ERR_SEV_CHAIN');
  });

  it('no ARK signs another generation’s ASK', () => {
    for (const a of AMD_GENERATIONS) {
      for (const b of AMD_GENERATIONS) {
        if (a === b) continue;
        const ark = parseCaCertificate(builtinCaCertificates(a).ark);
        const ask = parseCaCertificate(builtinCaCertificates(b).ask);
        const code = sevError(() => verifyCaCertificate(ark, ask)).code;
        // ids differ across generations, so the signature is not even a candidate
        expect(code).toBe('ERR_SEV_CHAIN');
      }
    }
  });
});

describe('Naples ARK quirk (spec §2.3)', () => {
  const bad = readVector('platform-chains/naples/ark.cert.bad');
  const sig = readVector('platform-chains/naples/ark.cert.sig');
  const builtin = readVector('amd-roots/naples/ark.cert');

  it('the vectors are what the spec says: bad ‖ sig == built-in ARK', () => {
    expect(bad.length).toBe(576);
    expect(sig.length).toBe(256);
    expect(Buffer.concat([bad, sig]).equals(builtin)).toBe(true);
  });

  it('a 576-byte Naples ARK gets the embedded signature and then verifies', () => {
    const ark = parseCaCertificate(bad);
    expect(ark.raw.equals(builtin)).toBe(true);
    expect(ark.signature.equals(sig)).toBe(true);
    expect(() => verifyCaCertificate(ark, ark)).not.toThrow();
  });

  it('a full chain ending in the unsigned Naples ARK decodes to the same chain and verifies', () => {
    const full = fullChainBytes('naples');
    const short = full.subarray(0, full.length - 256);
    expect(encodeChain(decodeChain(short)).equals(full)).toBe(true);
    expect(verifyChain(short).generation).toBe('naples');
  });

  it('any other short CA certificate is a length error', () => {
    expect(sevError(() => parseCaCertificate(bad.subarray(0, 575))).code).toBe('ERR_SEV_LENGTH');
    expect(sevError(() => parseCaCertificate(Buffer.concat([bad, sig.subarray(0, 10)]))).code).toBe('ERR_SEV_LENGTH');
    // the Naples ASK has a different preamble: no signature is invented for it
    const ask = readVector('amd-roots/naples/ask.cert');
    expect(sevError(() => parseCaCertificate(ask.subarray(0, 576))).code).toBe('ERR_SEV_LENGTH');
    // a Naples-ARK preamble on a modified body gets the signature but does not verify
    const tampered = flipBit(bad, 400);
    const ark = parseCaCertificate(tampered);
    expect(sevError(() => verifyCaCertificate(ark, ark)).code).toBe('ERR_SEV_SIGNATURE');
    // a truncated RSA-4096 ARK of the same "unsigned" shape
    const rome = readVector('amd-roots/rome/ark.cert');
    expect(sevError(() => parseCaCertificate(rome.subarray(0, 64 + 2 * 512))).code).toBe('ERR_SEV_LENGTH');
  });
});

describe('Generation::try_from on platform-only chains (spec §2.6)', () => {
  it.each(REAL_GENERATIONS)('%s platform chain is identified, completed with the built-ins, and verifies', (g) => {
    const full = fullChainBytes(g);
    const platform = decodePlatformChain(full.subarray(0, 4 * 2084));
    expect(builtinGeneration(platform)).toBe(g);
    const completed = withBuiltinCa(platform);
    expect(encodeChain(completed).equals(full)).toBe(true);
    const r = verifyChain(completed);
    expect(r).toMatchObject({ generation: g, trustedBy: 'amd' });
  });

  it('the Genoa and Turin ASKs reject every real CEK (spec: checked with node)', () => {
    for (const g of REAL_GENERATIONS) {
      const cek = decodeChain(fullChainBytes(g)).cek;
      for (const other of ['genoa', 'turin'] as const) {
        const ask = parseCaCertificate(builtinCaCertificates(other).ask);
        // the Naples CEK slot claims SHA-256, which an RSA-4096 ASK never uses: not even a candidate
        expect(sevError(() => verifySevCertificate(ask, cek)).code).toBe(g === 'naples' ? 'ERR_SEV_CHAIN' : 'ERR_SEV_SIGNATURE');
      }
    }
  });

  it('a CEK no AMD ASK signed has no generation', () => {
    const platform = decodeChain(fullChainBytes('rome'));
    const cek = flipBit(platform.cek.raw, 0x41c);
    const tampered = decodePlatformChain(Buffer.concat([platform.pdh.raw, platform.pek.raw, platform.oca.raw, cek]));
    expect(sevError(() => builtinGeneration(tampered)).code).toBe('ERR_SEV_UNTRUSTED_ROOT');
  });
});
