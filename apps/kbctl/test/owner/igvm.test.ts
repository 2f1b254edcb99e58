import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { createHash, generateKeyPairSync } from 'node:crypto';
import { kbctl, tempDir, VECTORS } from './support/cli';
import type { Command, Group } from '../../src/cli';
import { tree } from '../../src/main';
import { createPlatform, launchIgvm, SimulatedSnpFirmware } from '@kb/sev-sim';

const IGVM = join(VECTORS, 'igvm');
const KEYS = join(VECTORS, 'measure/sev-snp-measure/keyfile');
const ID_KEY = join(KEYS, 'id_key_test.pem');
const AUTHOR_KEY = join(KEYS, 'author_key_test.pem');
const A10 = join(IGVM, 'snp-A10.igvm');
const A10_NZ = 'E1E1CA029DD7973AB9513295BE68198472DCD4FC834BD9AF9B63F6E8A1674DBF281A9278A4A2EBE0EED9F22ADBCD0E2B';
const A10_DEFAULT = 'A38FED690F731A56565837C738B079FD2B39F45B735D818EC335373633F6AEA7EEDFF951A45005EA5B001B0151EC5B83';
const BANNER = '='.repeat(111);
const sha256 = (p: string) => createHash('sha256').update(readFileSync(p)).digest('hex');

describe('kbctl igvm … measure (igvmmeasure output)', () => {
  it('prints the framed digest exactly as igvmmeasure, the bare digest with -b', async () => {
    const r = await kbctl(['igvm', '--native-zero', A10, 'measure']);
    expect(r.code).toBe(0);
    expect(r.out).toBe(`\n${BANNER}\nigvmmeasure '${A10}'\nLaunch Digest: ${A10_NZ}\n${BANNER}\n\n`);
    const bare = await kbctl(['igvm', A10, 'measure', '-b']);
    expect(bare.out).toBe(`${A10_DEFAULT}\n`);
    expect((await kbctl(['igvm', '-n', A10, 'measure', '--bare'])).out).toBe(`${A10_NZ}\n`);
  });

  it('every packed A vector through the CLI gives its sev-snp-measure digest with -n', async () => {
    const expected: Record<string, string> = {
      'snp-A1.igvm': '329c8ce0972ae52343b64d34a434a86f245dfd74f5ed7aae15d22efc78fb9683632b9b50e4e1d7fa41179ef98a7ef198',
      'snp-A9.igvm': '5c5debf100fc339f90276e761ee1f1658d08922c3b20e2a2e6c7a6c3370b2452a15a00eae11886a93d6fd1e7ab81e29d',
      'snp-A14.igvm': '28797ae0afaba4005a81e629acebfb59e6687949d6be44007cd5506823b0dd66f146aaae26ff291eed7b493d8a64c385',
    };
    for (const [f, d] of Object.entries(expected)) {
      const r = await kbctl(['igvm', '-n', join(IGVM, f), 'measure', '-b']);
      expect(r.out).toBe(`${d.toUpperCase()}\n`);
    }
  });

  it('SEV-ES and SEV platforms print 64 hex digits', async () => {
    expect((await kbctl(['igvm', '-p', 'sev-es', join(IGVM, 'sev-es-X64-1vcpu.igvm'), 'measure', '-b'])).out).toBe(
      '24527F02FDADC908F11D7CF099D3570E49304A93BDA7687E256B5A183876A648\n',
    );
    expect((await kbctl(['igvm', '--platform', 'sev', join(IGVM, 'sev-X64.igvm'), 'measure', '-b'])).out).toBe(
      'B4C021E085FB83CEFFE6571A3D357B4A98773C83C474E47F76C876708FE316DA\n',
    );
  });

  it('an ID block that does not match: the digest is printed, then the error, exit 1; -i ignores it', async () => {
    const signed = join(IGVM, 'snp-A10-signed-author.igvm');
    const r = await kbctl(['igvm', signed, 'measure', '-b']);
    expect(r.code).toBe(1);
    expect(r.out).toBe(`${A10_DEFAULT}\n`);
    expect(r.err).toContain('the calculated measurement does not match the expected measurement in the ID block');
    expect(r.err).toContain(`Expected: ${A10_NZ}`);
    expect((await kbctl(['igvm', signed, 'measure', '-b', '-i'])).code).toBe(0);
    expect((await kbctl(['igvm', '-n', signed, 'measure', '-b'])).code).toBe(0);
  });

  it('--check-kvm, invalid files and a missing platform fail with exit 1 and nothing on stdout', async () => {
    const kvm = await kbctl(['igvm', '-c', A10, 'measure']);
    expect([kvm.code, kvm.out]).toEqual([1, '']);
    expect(kvm.err).toMatch(/ERR_IGVM_MEASURE: KVM Check failed: .*0x10/);
    const bad = await kbctl(['igvm', join(IGVM, 'parse/err-checksum.igvm'), 'measure']);
    expect([bad.code, bad.out]).toEqual([1, '']);
    expect(bad.err).toContain('ERR_IGVM_CHECKSUM');
    const plat = await kbctl(['igvm', '-p', 'sev', A10, 'measure']);
    expect(plat.code).toBe(1);
    expect(plat.err).toContain('not compatible with the specified platform');
  });

  it('-v prints the measured ranges before the digest', async () => {
    const r = await kbctl(['igvm', '-v', '-n', A10, 'measure', '-b']);
    const lines = r.out.split('\n');
    expect(lines[0]).toBe('gpa 0xFFFFF000 len 0x1000 (Normal page)');
    expect(r.out).toContain('(Secrets page)');
    expect(r.out).toContain('gpa 0xFFFFFFFFF000 len 0x1000 (VMSA page)');
    expect(r.out.trimEnd().endsWith(A10_NZ)).toBe(true);
  });

  it('--progress reports on stderr, stdout unchanged', async () => {
    const r = await kbctl(['igvm', '--progress', '-n', join(IGVM, 'snp-A9.igvm'), 'measure', '-b']);
    expect(r.out).toBe('5C5DEBF100FC339F90276E761EE1F1658D08922C3B20E2A2E6C7A6C3370B2452A15A00EAE11886A93D6FD1E7AB81E29D\n');
    expect(r.err).toContain('igvm measure: 100%');
    expect(r.err).toMatch(/igvm measure: done/);
  });

  it('usage errors exit 2', async () => {
    expect((await kbctl(['igvm', A10])).code).toBe(2);
    expect((await kbctl(['igvm', A10, 'frobnicate'])).code).toBe(2);
    expect((await kbctl(['igvm', '-p', 'tdx', A10, 'measure'])).code).toBe(2);
    expect((await kbctl(['igvm', A10, 'measure', '--output', 'x'])).code).toBe(2);
    expect((await kbctl(['igvm', A10, 'sign', '-b'])).code).toBe(2);
    expect((await kbctl(['igvm', A10, 'sign', '--output', 'x'])).code).toBe(2);
  });
});

describe('kbctl igvm … sign', () => {
  it('writes snp-A10-signed-author.igvm and -noauthor byte for byte, then measures them', async () => {
    const t = tempDir('igvm-sign');
    try {
      const out = join(t.dir, 'signed.igvm');
      const r = await kbctl(['igvm', '--native-zero', A10, 'sign', '--output', out, '--id-key', ID_KEY, '--author-key', AUTHOR_KEY]);
      expect(r.code).toBe(0);
      expect(r.out).toBe(`Successfully created signed file: ${out}\n`);
      expect(sha256(out)).toBe('8eb61c078a6083136a65e09d7048df88fabe7bbf6c6559b48e76d69c1a0502d2');
      expect((await kbctl(['igvm', '-n', out, 'measure', '-b'])).out).toBe(`${A10_NZ}\n`);
      const noAuthor = join(t.dir, 'noauthor.igvm');
      expect((await kbctl(['igvm', '-n', A10, 'sign', '--output', noAuthor, '--id-key', ID_KEY])).code).toBe(0);
      expect(sha256(noAuthor)).toBe('872bb2fa396ef78bf2e5c3f486e0d2d0e6b0c7bb1a8e8882763052dceca0b834');
    } finally {
      t.cleanup();
    }
  });

  it('sign → measure round trip with fresh keys, default zero mode', async () => {
    const t = tempDir('igvm-sign2');
    try {
      const key = join(t.dir, 'id.pem');
      writeFileSync(key, generateKeyPairSync('ec', { namedCurve: 'P-384' }).privateKey.export({ format: 'pem', type: 'sec1' }));
      const out = join(t.dir, 's.igvm');
      expect((await kbctl(['igvm', join(IGVM, 'snp-A12.igvm'), 'sign', '--output', out, '--id-key', key])).code).toBe(0);
      const m = await kbctl(['igvm', out, 'measure', '-b']);
      expect(m.code).toBe(0);
      expect(m.out).toBe(`${(await kbctl(['igvm', join(IGVM, 'snp-A12.igvm'), 'measure', '-b'])).out}`);
    } finally {
      t.cleanup();
    }
  });

  it('refuses a P-256 key, a non-SNP platform, and writes nothing', async () => {
    const t = tempDir('igvm-sign3');
    try {
      const key = join(t.dir, 'p256.pem');
      writeFileSync(key, generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ format: 'pem', type: 'sec1' }));
      const out = join(t.dir, 'never.igvm');
      const r = await kbctl(['igvm', A10, 'sign', '--output', out, '--id-key', key]);
      expect(r.code).toBe(1);
      expect(r.err).toContain('P-384');
      const s = await kbctl(['igvm', '-p', 'sev', join(IGVM, 'sev-X64.igvm'), 'sign', '--output', out, '--id-key', ID_KEY]);
      expect(s.code).toBe(1);
      expect(s.err).toContain('Signing is only supported for SEV-SNP');
      expect(() => readFileSync(out)).toThrow();
    } finally {
      t.cleanup();
    }
  });
});

describe('kbctl igvm … verify (QEMU + SNP_LAUNCH_FINISH view of the ID block)', () => {
  it('the signed vector verifies with -n, and not in the default mode (another digest)', async () => {
    const signed = join(IGVM, 'snp-A10-signed-author.igvm');
    const r = await kbctl(['igvm', '-n', signed, 'verify']);
    expect(r.code).toBe(0);
    expect(r.out).toBe(
      `ID block verifies (launch digest ${A10_NZ}, policy 0x30000)\nid_key_hash: hwt+NcU/inLQ0yL3WrKvgmJ5Kq9leWIs5BMcPyHyied8sFYKXjuQs5MuZ07HCcsU\nauthor_key: YxEcNLv8Ckk4+aAJvQdJgNgXIyPmFZnJ/TNtqGcySOHcqY0L6PdjdqEGuK/UwKBX\n`,
    );
    expect((await kbctl(['igvm', '-n', join(IGVM, 'snp-A10-signed-noauthor.igvm'), 'verify'])).out).toContain('author_key: (none');
    const d = await kbctl(['igvm', signed, 'verify']);
    expect(d.code).toBe(1);
    expect(d.err).toContain('ERR_SEV_MEASUREMENT');
  });

  it('a file without an ID block, or re-signed (two blocks), does not verify', async () => {
    expect((await kbctl(['igvm', A10, 'verify'])).err).toContain('has no SEV-SNP ID block');
    const t = tempDir('igvm-verify');
    try {
      const out = join(t.dir, 'twice.igvm');
      await kbctl(['igvm', '-n', join(IGVM, 'snp-A10-signed-author.igvm'), 'sign', '--output', out, '--id-key', ID_KEY]);
      const r = await kbctl(['igvm', '-n', out, 'verify']);
      expect(r.code).toBe(1);
      expect(r.err).toContain('QEMU accepts only one');
    } finally {
      t.cleanup();
    }
  });
});

describe('kbctl snp id-block (snp-create-id-block output)', () => {
  const LD = 'B28FLQi9p6cAqipgjFyqawDrrSl7bWioWkWx5mmlWLZ+G5HShKMB/mPE+gdQRn7t';

  it('prints the vector id-block and key digests, and an id-auth that verifies', async () => {
    const r = await kbctl(['snp', 'id-block', '--measurement', LD, '--idkey', ID_KEY, '--authorkey', AUTHOR_KEY]);
    expect(r.code).toBe(0);
    const [first, second, third, rest] = r.out.split('\n');
    const m = /^id-block=([A-Za-z0-9+/=]+),id-auth=([A-Za-z0-9+/=]+)$/.exec(first!)!;
    expect(m[1]).toBe('B28FLQi9p6cAqipgjFyqawDrrSl7bWioWkWx5mmlWLZ+G5HShKMB/mPE+gdQRn7tAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAABAAAAAAAAAAAAAwAAAAAA');
    expect(Buffer.from(m[2]!, 'base64').length).toBe(4096);
    expect(second).toBe('id_key_hash: hwt+NcU/inLQ0yL3WrKvgmJ5Kq9leWIs5BMcPyHyied8sFYKXjuQs5MuZ07HCcsU');
    expect(third).toBe('author_key: YxEcNLv8Ckk4+aAJvQdJgNgXIyPmFZnJ/TNtqGcySOHcqY0L6PdjdqEGuK/UwKBX');
    expect(rest).toBe('');
    const v = await kbctl(['snp', 'id-block-verify', '--id-block', m[1]!, '--id-auth', m[2]!, '--measurement', LD, '--policy', '0x30000']);
    expect(v.code).toBe(0);
    expect(v.out).toContain('id_key_hash: hwt+NcU/');
    const tampered = Buffer.from(m[1]!, 'base64');
    tampered[0] = tampered[0]! ^ 1;
    const bad = await kbctl(['snp', 'id-block-verify', '--id-block', tampered.toString('base64'), '--id-auth', m[2]!]);
    expect(bad.code).toBe(1);
    expect(bad.err).toContain('ERR_SEV_SIGNATURE');
    const other = await kbctl(['snp', 'id-block-verify', '--id-block', m[1]!, '--id-auth', m[2]!, '--measurement', Buffer.alloc(48).toString('base64')]);
    expect(other.err).toContain('ERR_SEV_MEASUREMENT');
  });

  it('refuses missing keys (exit 2), a wrong-length measurement (exit 2), a non-EC key (exit 1)', async () => {
    const miss = await kbctl(['snp', 'id-block', '--measurement', LD, '--idkey', ID_KEY]);
    expect(miss.code).toBe(2);
    expect(miss.err).toContain('missing key files for id block');
    const long = await kbctl(['snp', 'id-block', '--measurement', Buffer.alloc(49).toString('base64'), '--idkey', ID_KEY, '--authorkey', AUTHOR_KEY]);
    expect(long.code).toBe(2);
    const t = tempDir('idblock');
    try {
      const rsa = join(t.dir, 'rsa.pem');
      writeFileSync(rsa, generateKeyPairSync('rsa', { modulusLength: 1024 }).privateKey.export({ format: 'pem', type: 'pkcs8' }));
      const r = await kbctl(['snp', 'id-block', '--measurement', LD, '--idkey', rsa, '--authorkey', AUTHOR_KEY]);
      expect(r.code).toBe(1);
      expect(r.err).toContain('does not contain an EC private key');
    } finally {
      t.cleanup();
    }
  });
});

describe('help and load', () => {
  it.each(['igvm', 'snp id-block', 'snp id-block-verify'])('kbctl %s --help documents every flag and the exit codes', async (path) => {
    const [a, b] = path.split(' ');
    const node = tree.find((n) => n.name === a)!;
    const cmd = (b === undefined ? node : (node as Group).commands.find((c) => c.name === b)!) as Command;
    const r = await kbctl([...path.split(' '), '--help']);
    expect(r.code).toBe(0);
    expect(r.out).toContain('Exit status: 0');
    expect(r.out).toContain(`Usage: kbctl ${path}`);
    for (const [name, o] of Object.entries(cmd.options)) {
      expect(r.out).toContain(`--${name}`);
      if (o.short) expect(r.out).toContain(`-${o.short}, --${name}`);
    }
  });

  it('the offline command modules load neither gRPC nor the admin client', () => {
    const root = resolve(__dirname, '../../../..');
    const script =
      "require('./apps/kbctl/src/owner/igvm.ts'); require('./apps/kbctl/src/owner/snp-id-block.ts');" +
      'const loaded = Object.keys(require.cache); process.stdout.write(JSON.stringify(loaded.filter((p) => /grpc|[\\\\/]admin[\\\\/]/.test(p))));';
    const out = execFileSync(join(root, 'node_modules/.bin/tsx'), ['-e', script], { cwd: root, encoding: 'utf8' });
    expect(JSON.parse(out)).toEqual([]);
    // and the same probe does see what the admin commands load (the test can fail)
    const admin = execFileSync(join(root, 'node_modules/.bin/tsx'), ['-e', script.replace(/owner\/igvm/, 'admin/commands')], { cwd: root, encoding: 'utf8' });
    expect(JSON.parse(admin).length).toBeGreaterThan(0);
  });
});

describe('the simulated SNP Secure Processor agrees with kbctl igvm measure', () => {
  const sp = new SimulatedSnpFirmware(createPlatform({ name: 'sev-sim' }));
  it.each(['snp-A4.igvm', 'snp-A7.igvm', 'snp-A13.igvm', 'snp-A15.igvm', 'snp-features.igvm'])('%s, default and --native-zero', async (name) => {
    const path = join(IGVM, name);
    for (const nz of [[], ['-n']]) {
      const printed = (await kbctl(['igvm', ...nz, path, 'measure', '-b'])).out.trim();
      const { launch } = launchIgvm(sp, readFileSync(path), { nativeZero: nz.length > 0 });
      expect(launch.measurement!.toString('hex').toUpperCase()).toBe(printed);
    }
  });

  it('a file signed by kbctl igvm sign launches, its ID block accepted by SNP_LAUNCH_FINISH', async () => {
    const t = tempDir('igvm-sim');
    try {
      const out = join(t.dir, 'signed.igvm');
      expect((await kbctl(['igvm', join(IGVM, 'snp-A5.igvm'), 'sign', '--output', out, '--id-key', ID_KEY, '--author-key', AUTHOR_KEY])).code).toBe(0);
      const { launch } = launchIgvm(sp, readFileSync(out));
      expect(launch.measurement!.toString('hex').toUpperCase()).toBe((await kbctl(['igvm', out, 'measure', '-b'])).out.trim());
      expect(launch.idKeyDigest.toString('base64')).toBe('hwt+NcU/inLQ0yL3WrKvgmJ5Kq9leWIs5BMcPyHyied8sFYKXjuQs5MuZ07HCcsU');
      expect(() => launchIgvm(sp, readFileSync(out), { nativeZero: true })).toThrow(/BAD_MEASUREMENT/);
    } finally {
      t.cleanup();
    }
  });
});
