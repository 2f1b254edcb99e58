import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { LAUNCH_BLOB_SIZE, parseLaunchBlob, parseSevCertificate, SEV_CERT_SIZE, Usage } from '@kb/sev';
import { createPlatform, encodeRootFile, platformChain, SimulatedSecureProcessor, type SimulatedPlatform } from '@kb/sev-sim';
import { kbctl, read, SEV, tempDir } from './support/cli';

/** `kbctl session`: sevctl session's four files, with the platform chain verified first. */

const chains = join(SEV, 'platform-chains');
let work: ReturnType<typeof tempDir>;
let sim: SimulatedPlatform;
beforeAll(() => {
  work = tempDir('session');
  sim = createPlatform({ name: 'sev-sim' });
  writeFileSync(join(work.dir, 'sim-chain.bin'), platformChain(sim));
  writeFileSync(join(work.dir, 'sim-root.bin'), encodeRootFile(sim));
  for (const g of ['milan', 'rome']) {
    writeFileSync(join(work.dir, `${g}-platform.bin`), Buffer.concat(['pdh', 'pek', 'oca', 'cek'].map((c) => read(join(chains, g, `${c}.cert`)))));
  }
});
afterAll(() => work.cleanup());
const run = (argv: string[]) => kbctl(['session', ...argv], { cwd: work.dir });

function sessionFiles(name: string) {
  const f = (s: string) => join(work.dir, `${name}_${s}`);
  return {
    godh: Buffer.from(readFileSync(f('godh.b64'), 'utf8'), 'base64'),
    blob: Buffer.from(readFileSync(f('session.b64'), 'utf8'), 'base64'),
    godhText: readFileSync(f('godh.b64'), 'utf8'),
    tik: read(f('tik.bin')),
    tek: read(f('tek.bin')),
    tikMode: statSync(f('tik.bin')).mode & 0o777,
    tekMode: statSync(f('tek.bin')).mode & 0o777,
  };
}

describe('AMD chains verify against the pinned roots', () => {
  it.each([
    ['milan full chain', join(chains, 'milan_full_chain.bin'), 'AMD milan root'],
    ['rome full chain', join(chains, 'rome_full_chain.bin'), 'AMD rome root'],
    ['naples full chain', join(chains, 'naples_full_chain.bin'), 'AMD naples root'],
    ['milan platform chain (completed with the built-in ASK/ARK)', 'milan-platform.bin', 'AMD milan root'],
    ['rome platform chain', 'rome-platform.bin', 'AMD rome root'],
  ])('%s', async (_what, file, root) => {
    const name = `t${Math.random().toString(36).slice(2, 8)}`;
    const r = await run(['--name', name, file, '0x1']);
    expect(r.err).toBe('');
    expect(r.code).toBe(0);
    expect(r.out).toBe(`policy 0x1: chain verified up to the ${root}; wrote ${name}_godh.b64, ${name}_session.b64, ${name}_tik.bin, ${name}_tek.bin`);
    const s = sessionFiles(name);
    // sevctl's formats: raw 16-byte keys, base64 without a trailing newline
    expect(s.tik.length).toBe(16);
    expect(s.tek.length).toBe(16);
    expect(s.tik.equals(s.tek)).toBe(false);
    expect([s.tikMode, s.tekMode]).toEqual([0o600, 0o600]);
    expect(s.godhText.endsWith('\n')).toBe(false);
    expect(s.godh.length).toBe(SEV_CERT_SIZE);
    expect(parseSevCertificate(s.godh).usage).toBe(Usage.PDH);
    expect(s.blob.length).toBe(LAUNCH_BLOB_SIZE);
    expect(parseLaunchBlob(s.blob)).toBeDefined();
  });

  it('the default name is vm, in the working directory', async () => {
    const r = await run([join(chains, 'milan_full_chain.bin'), '1']);
    expect(r.code).toBe(0);
    expect(sessionFiles('vm').tik.length).toBe(16);
  });
});

describe('refusals', () => {
  it('a lone PDH cannot be verified: refused unless --insecure-no-verify (sevctl behaviour, with a warning)', async () => {
    const pdh = join(chains, 'milan/pdh.cert');
    const refused = await run([pdh, '1']);
    expect(refused.code).toBe(1);
    expect(refused.err).toContain('holds a lone PDH certificate, which cannot be verified');
    const insecure = await run(['--insecure-no-verify', '--name', 'lone', pdh, '1']);
    expect(insecure.code).toBe(0);
    expect(insecure.err).toContain('WARNING: the PDH was not verified');
    expect(insecure.out).toContain('PDH NOT verified (--insecure-no-verify)');
    expect(sessionFiles('lone').blob.length).toBe(LAUNCH_BLOB_SIZE);
  });

  it('a tampered chain does not verify', async () => {
    const chain = Buffer.from(read(join(chains, 'rome_full_chain.bin')));
    chain[SEV_CERT_SIZE + 0x100]! ^= 1; // inside the PEK's public key
    writeFileSync(join(work.dir, 'tampered.bin'), chain);
    const r = await run(['tampered.bin', '1']);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/^kbctl session: the certificate chain in tampered\.bin does not verify: /);
  });

  it('a simulated platform is not an AMD root: refused, then accepted with --trust-root', async () => {
    const untrusted = await run(['sim-chain.bin', '5']);
    expect(untrusted.code).toBe(1);
    expect(untrusted.err).toMatch(/does not verify: the chain verifies but its ARK .* is neither an AMD root nor an explicitly trusted one/);
    const trusted = await run(['--trust-root', 'sim-root.bin', '--name', 'sim', 'sim-chain.bin', '5']);
    expect(trusted.err).toBe('');
    expect(trusted.out).toContain('chain verified up to the trust-root sim-root.bin');
  });

  it("the session's GODH and launch blob are accepted by the simulated Secure Processor, which recovers the same TIK/TEK", async () => {
    expect((await run(['--trust-root', 'sim-root.bin', '--name', 'sp', 'sim-chain.bin', '0x5'])).code).toBe(0);
    const s = sessionFiles('sp');
    const sp = new SimulatedSecureProcessor(sim);
    const handle = sp.launchStart({ policy: 5, godhCert: s.godh, launchBlob: s.blob });
    expect(sp.guestState(handle)).toBe('LUPDATE');
    // a wrong policy is caught by the blob's policy MAC
    expect(() => sp.launchStart({ policy: 1, godhCert: s.godh, launchBlob: s.blob })).toThrow();
  });

  it.each([
    [['sim-chain.bin', '0x40'], 2, 'guest policy 0x40 sets bits outside the flags'],
    [['sim-chain.bin', 'five'], 2, 'POLICY must be a decimal or 0x-prefixed hex integer'],
    [['--trust-root', 'sim-root.bin', '--insecure-no-verify', 'sim-chain.bin', '1'], 2, '--trust-root and --insecure-no-verify exclude each other'],
    [['--trust-root', 'sim-chain.bin', 'sim-chain.bin', '1'], 1, '--trust-root sim-chain.bin must hold exactly ASK‖ARK in AMD CA format'],
    [['missing.bin', '1'], 1, 'cannot read the certificate chain from missing.bin: ENOENT'],
    [['sim-chain.bin'], 2, 'expected 2 argument(s), got 1'],
    [['--name', '', 'sim-chain.bin', '1'], 2, '--name must not be empty'],
  ])('%j → exit %i', async (argv, code, message) => {
    const r = await run(argv as string[]);
    expect(r.code).toBe(code);
    expect(r.err).toContain(message as string);
  });
});
