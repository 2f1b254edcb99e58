import { parseIgvm } from '../../src/igvm/parser';
import { writeIgvm } from '../../src/igvm/writer';
import { measureIgvm } from '../../src/igvm/measure';
import { isIgvmError } from '../../src/igvm/errors';
import { isSevError } from '../../src/errors';
import { fixChecksum, pattern, snpFile, vmsaPage } from './build';
import { readVector } from './vectors';

const VMSA_GPA = 0xffffffff_f000n;

/** The variant (or SevError code) a parse fails with. */
function refusal(bytes: Buffer): string {
  try {
    parseIgvm(bytes);
  } catch (e) {
    if (isIgvmError(e)) return e.variant;
    return isSevError(e) ? e.code : `unexpected ${String(e)}`;
  }
  return 'accepted';
}

describe('malformed, truncated and overlapping files are refused with their codes', () => {
  const good = writeIgvm(snpFile([{ kind: 'vp_context', form: 'snp', gpa: VMSA_GPA, compatibilityMask: 1, vpIndex: 0, reserved: 0, data: vmsaPage(1) }]));
  // layout: fixed 24 | platform 24 | policy 24 | page 32 | vp 32 | data (page, vmsa)
  const PAGE_AT = 24 + 24 + 24;
  const VP_AT = PAGE_AT + 32;
  const DATA_AT = VP_AT + 32;

  it('the base file parses', () => {
    expect(refusal(good)).toBe('accepted');
    expect(good.readUInt32LE(12)).toBe(DATA_AT - 24);
  });

  it('every truncation is refused (as a header or size error), never a crash', () => {
    for (let n = 0; n < good.length; n++) {
      const r = refusal(good.subarray(0, n));
      expect(r).toBe('InvalidFixedHeader');
    }
    // a consistent total size but headers cut short: the section ends inside a body
    const cut = Buffer.from(good);
    cut.writeUInt32LE(good.readUInt32LE(12) - 8, 12);
    expect(refusal(fixChecksum(cut))).toBe('InvalidVariableHeaderSize');
    const stub = Buffer.from(good);
    stub.writeUInt32LE(good.readUInt32LE(12) - 28, 12); // 4 bytes of the VP header left: no room for type + length
    expect(refusal(fixChecksum(stub))).toBe('InvalidBinaryVariableHeaderSection');
  });

  it('a variable header offset inside the fixed header is refused', () => {
    const b = Buffer.from(good);
    b.writeUInt32LE(16, 8);
    expect(refusal(fixChecksum(b))).toBe('InvalidFixedHeader');
  });

  it('data overlapping the headers, or running past the end, is refused', () => {
    const intoHeaders = Buffer.from(good);
    intoHeaders.writeUInt32LE(PAGE_AT, PAGE_AT + 8 + 12); // PAGE_DATA file_offset → the variable headers
    expect(refusal(fixChecksum(intoHeaders))).toBe('InvalidDataSize');
    const vpZero = Buffer.from(good);
    vpZero.writeUInt32LE(0, VP_AT + 8 + 12); // VP_CONTEXT file_offset 0: igvm 0.4.0 underflows (§2.8)
    expect(refusal(fixChecksum(vpZero))).toBe('InvalidDataSize');
    const pastEnd = Buffer.from(good);
    pastEnd.writeUInt32LE(good.length - 100, VP_AT + 8 + 12);
    expect(refusal(fixChecksum(pastEnd))).toBe('InvalidDataSize');
  });

  it('data shared by two directives is accepted (igvm.md §2.11), and written once', () => {
    const shared = Buffer.from(good);
    shared.writeUInt32LE(good.readUInt32LE(VP_AT + 8 + 12), PAGE_AT + 8 + 12); // the page points at the VMSA's bytes
    const m = parseIgvm(fixChecksum(shared));
    expect(writeIgvm(m).length).toBe(good.length - 4096);
  });

  it('version 2 headers: page size, architecture and AArch64 platforms', () => {
    const v2 = writeIgvm({ ...snpFile([]), formatVersion: 2, architecture: 0 });
    expect(refusal(v2)).toBe('accepted');
    const ps = Buffer.from(v2);
    ps.writeUInt32LE(0x2000, 0x1c);
    expect(refusal(fixChecksum(ps))).toBe('UnsupportedPageSize');
    const arch = Buffer.from(v2);
    arch.writeUInt32LE(7, 0x18);
    expect(refusal(fixChecksum(arch))).toBe('InvalidFixedHeader');
    const arm = Buffer.from(v2);
    arm.writeUInt32LE(1, 0x18);
    expect(refusal(fixChecksum(arm))).toBe('PlatformArchUnsupported');
  });

  it('relocation headers: overlap, zero alignment, and no VBS VP context to match (igvm.md §2.6)', () => {
    const reloc = (gpa: bigint, alignment = 0x1000n) => ({
      kind: 'relocatable_region' as const,
      compatibilityMask: 1,
      vpIndex: 0,
      vtl: 0,
      flags: 0,
      relocationAlignment: alignment,
      regionGpa: gpa,
      regionSize: 0x2000n,
      minimumGpa: 0n,
      maximumGpa: 0x100000n,
    });
    const base = snpFile([]);
    expect(refusal(writeIgvm({ ...base, initializations: [reloc(0x10000n)] }))).toBe('NoMatchingVpContext');
    expect(refusal(writeIgvm({ ...base, initializations: [reloc(0x10000n), reloc(0x11000n)] }))).toBe('RelocationRegionsOverlap');
    expect(refusal(writeIgvm({ ...base, initializations: [reloc(0x10000n, 0n)] }))).toBe('InvalidRelocationRegion');
    const ptr = { kind: 'page_table_relocation' as const, compatibilityMask: 1, vpIndex: 0, vtl: 0, gpa: 0x20000n, size: 0x2000n, usedSize: 0x3000n };
    expect(refusal(writeIgvm({ ...base, initializations: [ptr] }))).toBe('UnalignedSize');
    expect(
      refusal(
        writeIgvm({
          ...base,
          initializations: [
            { ...ptr, usedSize: 0x1000n },
            { ...ptr, gpa: 0x40000n, usedSize: 0x1000n },
          ],
        }),
      ),
    ).toBe('MultiplePageTableRelocationHeaders');
  });

  it('VP contexts: a native context with a non-zero tail, a TDX mask', () => {
    const native = {
      ...snpFile([]),
      platforms: [
        { compatibilityMask: 1, highestVtl: 0, platformType: 2, platformVersion: 1, sharedGpaBoundary: 0n },
        { compatibilityMask: 2, highestVtl: 0, platformType: 4, platformVersion: 1, sharedGpaBoundary: 0n },
        { compatibilityMask: 4, highestVtl: 0, platformType: 3, platformVersion: 1, sharedGpaBoundary: 0n },
      ],
    };
    const ctx = (mask: number, data: Buffer) => ({
      kind: 'vp_context' as const,
      form: 'native' as const,
      gpa: 0n,
      compatibilityMask: mask,
      vpIndex: 0,
      reserved: 0,
      data,
    });
    const ok = Buffer.alloc(4096);
    pattern(2, 0xe0).copy(ok);
    expect(refusal(writeIgvm({ ...native, directives: [...native.directives, ctx(2, ok)] }))).toBe('accepted');
    const tail = Buffer.from(ok);
    tail[0xe0] = 1;
    expect(refusal(writeIgvm({ ...native, directives: [...native.directives, ctx(2, tail)] }))).toBe('InvalidContext');
    expect(refusal(writeIgvm({ ...native, directives: [...native.directives, ctx(4, ok)] }))).toBe('InvalidVpContextPlatformType');
    const vsm = {
      ...native,
      platforms: [...native.platforms, { compatibilityMask: 8, highestVtl: 2, platformType: 1, platformVersion: 1, sharedGpaBoundary: 0n }],
    };
    expect(refusal(writeIgvm({ ...vsm, directives: [...vsm.directives, ctx(8, ok)] }))).toBe('UnsupportedVpContext');
  });

  it('VBS_MEASUREMENT and REQUIRED_MEMORY round-trip; their reserved fields and alignment are checked', () => {
    const vbs = { kind: 'vbs_measurement' as const, body: pattern(5, 864) };
    const req = { kind: 'required_memory' as const, gpa: 0x100000n, compatibilityMask: 1, numberOfBytes: 0x2000, flags: 1 };
    const f = snpFile([vbs, req]);
    expect(parseIgvm(writeIgvm(f))).toEqual(f);
    expect(refusal(writeIgvm(snpFile([{ ...req, numberOfBytes: 0x2001 }])))).toBe('UnalignedSize');
    expect(refusal(writeIgvm(snpFile([{ ...req, gpa: 0x100800n }])))).toBe('UnalignedAddress');
    const bytes = writeIgvm(snpFile([req]));
    const at = 24 + 24 + 24 + 32; // fixed, platform, policy, first page → the REQUIRED_MEMORY header
    expect(bytes.readUInt32LE(at)).toBe(0x305);
    bytes.writeUInt32LE(1, at + 8 + 20); // reserved
    expect(refusal(fixChecksum(bytes))).toBe('ReservedNotZero');
  });
});

describe('measurement refusals (igvm.md §3.3, §3.6)', () => {
  const vp = (gpa: bigint, cr0 = 0x31n) => ({
    kind: 'vp_context' as const,
    form: 'snp' as const,
    gpa,
    compatibilityMask: 1,
    vpIndex: 0,
    reserved: 0,
    data: vmsaPage(3, cr0),
  });
  const variant = (f: () => unknown) => {
    try {
      f();
    } catch (e) {
      return isIgvmError(e) ? e.variant : String(e);
    }
    return 'ok';
  };

  it('--check-kvm accepts one VMSA at 0xFFFFFFFFF000 with cr0 0x31 or 0x30, and refuses the rest', () => {
    expect(variant(() => measureIgvm(snpFile([vp(VMSA_GPA)]), { checkKvm: true }))).toBe('ok');
    expect(variant(() => measureIgvm(snpFile([vp(VMSA_GPA, 0x30n)]), { checkKvm: true }))).toBe('ok');
    expect(variant(() => measureIgvm(snpFile([vp(VMSA_GPA), vp(VMSA_GPA)]), { checkKvm: true }))).toBe('InvalidVmsaCount');
    expect(variant(() => measureIgvm(snpFile([vp(0x1000n)]), { checkKvm: true }))).toBe('InvalidVmsaGpa');
    expect(variant(() => measureIgvm(snpFile([vp(VMSA_GPA, 0x11n)]), { checkKvm: true }))).toBe('InvalidVmsaCr0');
    const area = { kind: 'parameter_area' as const, numberOfBytes: 0x1000n, parameterAreaIndex: 0 };
    const insert = { kind: 'parameter_insert' as const, gpa: 0x5000n, compatibilityMask: 1, parameterAreaIndex: 0 };
    expect(variant(() => measureIgvm(snpFile([area, vp(VMSA_GPA), insert]), { checkKvm: true }))).toBe('InvalidVmsaOrder');
    // PAGE_DATA after the VMSA is not checked (§3.6), and without --check-kvm all of these measure
    expect(
      variant(() => measureIgvm(snpFile([vp(VMSA_GPA), { kind: 'page_data', gpa: 0x9000n, compatibilityMask: 1, flags: 0, dataType: 0 }]), { checkKvm: true })),
    ).toBe('ok');
    expect(variant(() => measureIgvm(snpFile([area, vp(0x1000n, 0x11n), vp(VMSA_GPA), insert])))).toBe('ok');
  });

  it('a 2 MiB page with data cannot be measured (igvmmeasure panics; we refuse)', () => {
    const big = { kind: 'page_data' as const, gpa: 0x200000n, compatibilityMask: 1, flags: 1, dataType: 0, data: pattern(4) };
    const file = parseIgvm(writeIgvm(snpFile([big])));
    expect(variant(() => measureIgvm(file))).toBe('LargePageWithData');
    expect(variant(() => measureIgvm(file, { platform: 'sev-snp', nativeZero: true }))).toBe('LargePageWithData');
  });

  it('a data page full of zeros is NORMAL even with --native-zero (§3.3)', () => {
    const zeros = snpFile([{ kind: 'page_data', gpa: 0x8000n, compatibilityMask: 1, flags: 0, dataType: 0, data: Buffer.alloc(4096) }]);
    const none = snpFile([{ kind: 'page_data', gpa: 0x8000n, compatibilityMask: 1, flags: 0, dataType: 0 }]);
    expect(measureIgvm(zeros, { nativeZero: true }).digest.equals(measureIgvm(none).digest)).toBe(true);
    expect(measureIgvm(zeros, { nativeZero: true }).digest.equals(measureIgvm(none, { nativeZero: true }).digest)).toBe(false);
  });

  it('the writer refuses a file without any file data', () => {
    const f = parseIgvm(readVector('parse/ok-minimal.igvm'));
    expect(() => writeIgvm({ ...f, directives: [] })).toThrow(expect.objectContaining({ code: 'ERR_SEV_ARGUMENT' }));
  });
});
