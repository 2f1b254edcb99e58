import fc from 'fast-check';
import { randomBytes } from 'node:crypto';
import { measureIgvm } from '../../src/igvm/measure';
import { parseIgvm } from '../../src/igvm/parser';
import { PageDataFlag, type IgvmDirective } from '../../src/igvm/layout';
import { sharedPageBuffer, shutdownPageHashPool, warmPageHashPool } from '../../src/snp/page-hashes';
import { snpLaunchDigest, snpOvmfHash, snpSvsmLaunchDigest } from '../../src/snp/launch-digest';
import { readVector, SNP_A } from '../igvm/vectors';
import { snpFile, vmsaPage } from '../igvm/build';
import { hex, measureFile } from '../measurement/vectors';

/**
 * The digest functions with their page hashes on worker threads (`threads: 1`, the pool ready) and on the calling
 * thread (`threads: 0`): the VECTORS.md / igvm MANIFEST digests either way, and identical progress.
 */
const svsmOvmf = measureFile('sev-snp-measure/fixtures/svsm_ovmf.fd');
const svsm = measureFile('sev-snp-measure/fixtures/svsm.bin');
const EPYC_V4 = { type: 'EPYC-v4' };
const VARS_SIZE = 540672;

beforeAll(async () => expect(await warmPageHashPool(1)).toBe(true));
afterAll(() => shutdownPageHashPool());

describe('SNP digests with worker-thread page hashes (launch-digest.md §4.1)', () => {
  it.each([
    ['A24', 4, '27d154c27b7b359c935e250ec6fee72aa0ae8c1225e3b0e1cf46a9567e938066d7d6f94bbdc4a857818bdb79277a44b2'],
    ['A25', 2, '9b94745036aafddf4f7f8b00c7513abb5b7703178cb95aaa57928bd963d68d3bfcb715d6019b9167ee2517b11b0d9be7'],
  ])('snp:svsm %s (3.5 MiB OVMF + 1.1 MiB SVSM) is the vector with and without workers', (_, vcpus, expected) => {
    for (const threads of [1, 0, undefined]) {
      expect(hex(snpSvsmLaunchDigest({ firmware: svsmOvmf, svsm, varsSize: VARS_SIZE, vcpus, vcpu: EPYC_V4, threads }))).toBe(expected);
    }
  });

  it('images in shared memory (sharedPageBuffer, read by the workers in place) give the vectors too', () => {
    const [fw, sv] = [sharedPageBuffer(svsmOvmf), sharedPageBuffer(svsm)];
    expect(fw.buffer).toBeInstanceOf(SharedArrayBuffer);
    expect(fw.equals(svsmOvmf)).toBe(true);
    const digest = snpSvsmLaunchDigest({ firmware: fw, svsm: sv, varsSize: VARS_SIZE, vcpus: 4, vcpu: EPYC_V4, threads: 1 });
    expect(hex(digest)).toBe('27d154c27b7b359c935e250ec6fee72aa0ae8c1225e3b0e1cf46a9567e938066d7d6f94bbdc4a857818bdb79277a44b2');
    expect(snpOvmfHash(fw, undefined, { threads: 1 }).equals(snpOvmfHash(svsmOvmf, undefined, { threads: 0 }))).toBe(true);
  });

  it('snp and snp:ovmf-hash agree across paths, seeded or not, with the same progress calls', () => {
    const input = { firmware: svsmOvmf, vcpus: 2, vcpu: EPYC_V4 };
    const runs = [1, 0].map((threads) => {
      const progress: [number, number][] = [];
      const digest = snpLaunchDigest({ ...input, threads, onProgress: (d, t) => progress.push([d, t]) });
      const seed = snpOvmfHash(svsmOvmf, undefined, { threads });
      return { digest: hex(digest), seeded: hex(snpLaunchDigest({ ...input, ovmfHash: seed, threads })), progress };
    });
    expect(runs[0]).toEqual(runs[1]);
    expect(runs[0]!.seeded).toBe(runs[0]!.digest);
    expect(runs[0]!.progress.length).toBeGreaterThan(3);
  });

  it.each(SNP_A)('IGVM %s gives its igvmmeasure digests with and without workers', (name, nativeZero, dflt) => {
    const file = parseIgvm(readVector(name));
    for (const threads of [1, 0]) {
      expect(hex(measureIgvm(file, { nativeZero: true, threads }).digest)).toBe(nativeZero);
      expect(hex(measureIgvm(file, { threads }).digest)).toBe(dflt);
    }
  });

  it('IGVM: data pages interleaved with other directives and masks are taken in order', () => {
    const directive = fc.oneof(
      fc.record({ kind: fc.constant('data' as const), mask: fc.constantFrom(1, 2), unmeasured: fc.boolean() }),
      fc.record({ kind: fc.constant('zero' as const), mask: fc.constant(1), unmeasured: fc.constant(false) }),
      fc.record({ kind: fc.constant('insert' as const), mask: fc.constant(1), unmeasured: fc.constant(false) }),
    );
    fc.assert(
      fc.property(fc.array(directive, { minLength: 40, maxLength: 160 }), (ds) => {
        const directives: IgvmDirective[] = ds.map((d, i) => {
          const gpa = BigInt(0x10_0000 + i * 0x1000);
          if (d.kind === 'insert') return { kind: 'parameter_insert', gpa, compatibilityMask: 1, parameterAreaIndex: 0 };
          const data = d.kind === 'data' ? { data: randomBytes(4096) } : {};
          return { kind: 'page_data', gpa, compatibilityMask: d.mask, flags: d.unmeasured ? PageDataFlag.UNMEASURED : 0, dataType: 0, ...data };
        });
        directives.push({ kind: 'vp_context', form: 'snp', gpa: 0xffff_ffff_f000n, compatibilityMask: 1, vpIndex: 0, reserved: 0, data: vmsaPage(3) });
        const file = snpFile(directives);
        const pages: number[] = [];
        const [par, seq] = [1, 0].map((threads) => hex(measureIgvm(file, { threads, onProgress: (done) => pages.push(done) }).digest));
        expect(par).toBe(seq);
        expect(pages.length).toBe(2 * measureIgvm(file, { threads: 0 }).pages);
      }),
      { numRuns: 15 },
    );
  });
});
