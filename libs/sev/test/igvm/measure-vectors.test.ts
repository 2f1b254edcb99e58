import { readdirSync } from 'node:fs';
import { checkIdBlock, measureIgvm } from '../../src/igvm/measure';
import { parseIgvm } from '../../src/igvm/parser';
import { isIgvmError } from '../../src/igvm/errors';
import { IGVM_DIR, PARSE_ERRORS, readVector, SNP_A } from './vectors';

const measureHex = (name: string, opts: Parameters<typeof measureIgvm>[1] = {}) => measureIgvm(parseIgvm(readVector(name)), opts).digest.toString('hex');

describe('igvmmeasure digests of shared/vectors/igvm (MANIFEST §1–§3)', () => {
  it.each(SNP_A)('%s: --native-zero gives the sev-snp-measure A vector, default the NORMAL-zero digest', (name, nativeZero, dflt) => {
    expect(measureHex(name, { nativeZero: true })).toBe(nativeZero);
    expect(measureHex(name)).toBe(dflt);
  });

  it.each(SNP_A)('%s: --check-kvm refuses the QEMU-flavour VMSA (cr0 0x10)', (name) => {
    expect(() => measureIgvm(parseIgvm(readVector(name)), { checkKvm: true })).toThrow(
      expect.objectContaining({ variant: 'InvalidVmsaCr0', code: 'ERR_IGVM_MEASURE' }),
    );
  });

  it('SEV-ES and SEV files give sev-snp-measure seves/sev digests (MANIFEST §2)', () => {
    expect(measureHex('sev-es-X64-1vcpu.igvm', { platform: 'sev-es' })).toBe('24527f02fdadc908f11d7cf099d3570e49304a93bda7687e256b5a183876a648');
    expect(measureHex('sev-es-AmdSev-2vcpu.igvm', { platform: 'sev-es' })).toBe('8502e4764318e5cd06edca228f7cfd6089a4f93f20e07e6e3b6498b3f5d69248');
    expect(measureHex('sev-X64.igvm', { platform: 'sev' })).toBe('b4c021e085fb83ceffe6571a3d357b4a98773c83c474e47f76c876708fe316da');
  });

  it('a platform absent from the file is refused', () => {
    expect(() => measureHex('sev-X64.igvm')).toThrow(expect.objectContaining({ variant: 'PlatformNotInFile' }));
    expect(() => measureHex('snp-A10.igvm', { platform: 'sev' })).toThrow(/not compatible with the specified platform/);
  });

  it('snp-features.igvm: every directive kind (MANIFEST §3)', () => {
    const f = parseIgvm(readVector('snp-features.igvm'));
    const m = measureIgvm(f);
    expect(m.digest.toString('hex')).toBe('1518ad394337af09c140fd97feb8c70ff2eca3043b77c06dbcec67f303f5f2418f36ccc2d56f99f01bc674731516fd9c');
    expect(m.pages).toBe(522);
    expect(measureIgvm(f, { nativeZero: true }).digest.toString('hex')).toBe(
      'e73f5e6c530b30bb45a41b7b992af8c32170770cefc872af58576ebde7c44723d6a276ca89249bf10cd527a0ad7270a0',
    );
    expect(measureIgvm(f, { platform: 'sev-es' }).digest.toString('hex')).toBe('833455f3f02d401c6f68f59e6fc25c284af3012dd5da8457f65eab9517a27d1d');
    expect(() => measureIgvm(f, { checkKvm: true })).toThrow(expect.objectContaining({ variant: 'InvalidVmsaCr0' }));
  });

  it('verbose ranges cover every measured page once, merged by type and contiguity', () => {
    const ranges: { gpa: bigint; length: bigint; kind: string }[] = [];
    const m = measureIgvm(parseIgvm(readVector('snp-features.igvm')), { onRange: (r) => ranges.push({ ...r }) });
    expect(ranges.reduce((s, r) => s + r.length, 0n)).toBe(BigInt(m.pages) * 4096n);
    expect(ranges.find((r) => r.gpa === 0x200000n)).toEqual({ gpa: 0x200000n, length: 0x200000n, kind: 'Normal' });
  });

  it('progress counts every measured page, and its total is exact on every platform', () => {
    const f = parseIgvm(readVector('snp-features.igvm'));
    for (const platform of ['sev-snp', 'sev-es'] as const) {
      const seen: [number, number][] = [];
      const m = measureIgvm(f, { platform, onProgress: (d, t) => seen.push([d, t]) });
      expect(seen).toHaveLength(m.pages);
      expect(seen.at(-1)).toEqual([m.pages, m.pages]);
    }
  });

  it('signed A10 files: the ID block matches only the --native-zero digest (MANIFEST §4)', () => {
    for (const name of ['snp-A10-signed-author.igvm', 'snp-A10-signed-noauthor.igvm']) {
      const f = parseIgvm(readVector(name));
      const nz = measureIgvm(f, { nativeZero: true });
      expect(nz.digest.toString('hex')).toBe(SNP_A.find((a) => a[0] === 'snp-A10.igvm')![1]);
      expect(() => checkIdBlock(nz)).not.toThrow();
      const d = measureIgvm(f);
      expect(d.digest.toString('hex')).toMatch(/^a38fed69/);
      expect(() => checkIdBlock(d)).toThrow(expect.objectContaining({ variant: 'IdBlockMismatch', code: 'ERR_IGVM_ID_BLOCK' }));
      expect(() => checkIdBlock(d)).toThrow(/Expected: E1E1CA029DD7973A/);
    }
  });
});

describe('parser conformance (MANIFEST §5)', () => {
  it('lists every parse/ vector in the table', () => {
    const files = readdirSync(`${IGVM_DIR}/parse`)
      .filter((f) => f.startsWith('err-'))
      .map((f) => f.replace(/\.igvm$/, ''));
    expect(files.sort()).toEqual(PARSE_ERRORS.map((e) => e[0]).sort());
  });

  it.each(PARSE_ERRORS)('parse/%s.igvm is refused with %s', (name, variant) => {
    let err: unknown;
    try {
      parseIgvm(readVector(`parse/${name}.igvm`));
    } catch (e) {
      err = e;
    }
    expect(isIgvmError(err)).toBe(true);
    expect((err as { variant: string }).variant).toBe(variant);
    expect((err as { code: string }).code).toMatch(/^ERR_IGVM_/);
  });

  it.each([
    ['ok-minimal', '0008ec48544088b72890fe9c997274f54b71b8667527c0a48ddf10053cce7020f95a9b43650c800db58b39bbaaa198a2'],
    ['ok-data-not-in-checksum', '6907a70276fbb81096c9914edd2682c94e83c26c559a9527c42bad06d671a83d78925d51db83d5eae9e8102cd1a6849d'],
    ['ok-lenient', '7ed7ca80bf796b5b6d1ee689449bf6f1b7bf4f43cf32a68a33957bd35deb5abb3f00e8bc0cf557960bb5cbfed1401da2'],
  ])('parse/%s.igvm is accepted and measures as expected', (name, digest) => {
    expect(measureHex(`parse/${name}.igvm`)).toBe(digest);
    expect(measureHex(`parse/${name}.igvm`, { nativeZero: true })).toBe(digest);
  });
});
