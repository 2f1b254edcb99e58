import fc from 'fast-check';
import { createHash } from 'node:crypto';
import { isSevError } from '../../src/errors';
import { parseOvmfFooterTable, parseOvmfSevMetadata, SectionType } from '../../src/measurement/ovmf';
import { buildSnpKernelHashesPage } from '../../src/measurement/sev-hashes';
import { describeVmsa } from '../../src/measurement/vmsa';
import { encodePageInfo, SnpPageType, SNP_VMSA_GPA } from '../../src/snp/page-info';
import {
  snpLaunchDigest,
  snpOvmfHash,
  snpSvsmLaunchDigest,
  snpSvsmVmsaPages,
  snpVmsaPages,
  type SnpLaunchDigestInput,
  type SnpLaunchStep,
} from '../../src/snp/launch-digest';
import { AMDSEV, OVMFX64, hex, measureFile } from '../measurement/vectors';

/**
 * SNP launch digests against sev-snp-measure @ 8f2b337e (VECTORS.md §A: A1–A16, A24, A25) and the derived
 * intermediates of §G (the A4 chain, the kernel-hashes page, the VMSA pages).
 */
const EMPTY = new Uint8Array(0);
const amdSev = measureFile(AMDSEV);
const x64 = measureFile(OVMFX64);
const svsmOvmf = measureFile('sev-snp-measure/fixtures/svsm_ovmf.fd');
const svsm = measureFile('sev-snp-measure/fixtures/svsm.bin');
const A3 = '086e2e9149ebf45abdc3445fba5b2da8270bdbb04094d7a2c37faaa4b24af3aa16aff8c374c2a55c467a50da6d466b74';
const DEVNULL = { kernel: EMPTY, initrd: EMPTY, cmdline: '' };
const CONSOLE = { kernel: EMPTY, initrd: EMPTY, cmdline: 'console=ttyS0 loglevel=7' };
const EPYC_V4 = { type: 'EPYC-v4' };
const VARS_SIZE = 540672;

function expectSevError(fn: () => unknown, code: string, message: RegExp): void {
  let caught: unknown;
  try {
    fn();
  } catch (e) {
    caught = e;
  }
  expect(isSevError(caught)).toBe(true);
  expect((caught as { code: string }).code).toBe(code);
  expect((caught as Error).message).toMatch(message);
}

describe('snp: sev-snp-measure vectors (VECTORS.md §A)', () => {
  const cases: [string, Omit<SnpLaunchDigestInput, 'firmware'> & { firmware?: Uint8Array }, string][] = [
    [
      'A1',
      { vcpus: 1, vcpu: EPYC_V4, guestFeatures: 0x21, kernelHashes: DEVNULL, ovmfHash: Buffer.from(A3, 'hex') },
      '329c8ce0972ae52343b64d34a434a86f245dfd74f5ed7aae15d22efc78fb9683632b9b50e4e1d7fa41179ef98a7ef198',
    ],
    [
      'A2',
      { vcpus: 1, vcpu: EPYC_V4, guestFeatures: 0x1, kernelHashes: DEVNULL, ovmfHash: Buffer.from(A3, 'hex') },
      'ddc5224521617a536ee7ce9dd6224d1b58a8d4fda1c741f3ac99fc4bfa04ba6e9fc98646d4a07a9079397fa3852819b5',
    ],
    [
      'A4',
      { vcpus: 1, vcpu: EPYC_V4, guestFeatures: 0x21, kernelHashes: CONSOLE },
      '803f691094946e42068aaa3a8f9e26a5c89f36f7b73ecfb28c653360fe4b3aba7e534442e7e1e17895dfe778d0228977',
    ],
    [
      'A4 seeded',
      { vcpus: 1, vcpu: EPYC_V4, guestFeatures: 0x21, kernelHashes: CONSOLE, ovmfHash: Buffer.from(A3, 'hex') },
      '803f691094946e42068aaa3a8f9e26a5c89f36f7b73ecfb28c653360fe4b3aba7e534442e7e1e17895dfe778d0228977',
    ],
    [
      'A5',
      { vcpus: 1, vcpu: EPYC_V4, kernelHashes: CONSOLE },
      '6d287813eb5222d770f75005c664e34c204f385ce832cc2ce7d0d6f354454362f390ef83a92046c042e706363b4b08fa',
    ],
    [
      'A5 seeded',
      { vcpus: 1, vcpu: EPYC_V4, guestFeatures: 1n, kernelHashes: CONSOLE, ovmfHash: Buffer.from(A3, 'hex') },
      '6d287813eb5222d770f75005c664e34c204f385ce832cc2ce7d0d6f354454362f390ef83a92046c042e706363b4b08fa',
    ],
    [
      'A6',
      { vcpus: 1, vcpu: EPYC_V4, vmmType: 'ec2', guestFeatures: 0x21, kernelHashes: DEVNULL },
      '0ce9ccc06bab55eebe8abc234f3df6514883977a68a591b71052498ab52b2f1aa415db338033946ef93aa8278c0d67fb',
    ],
    [
      'A7',
      { vcpus: 1, vmmType: 'ec2', guestFeatures: 0x1, kernelHashes: DEVNULL },
      '0883bd0eeb716e65b7b977a321c278d1e51b33b5c655fab985443bbcc65c086b9c15e8a0bd8811050dec7e24964e5056',
    ],
    [
      'A8',
      { vcpus: 1, vmmType: 'gce', kernelHashes: DEVNULL },
      '5da7106cf14cf46b1725ebab123eb9e53bd46a1e9f400cd0c08e7827b04b688ea8b4e403c8404efed4397ea5d5d0722e',
    ],
    [
      'A9',
      { vcpus: 4, vmmType: 'gce', kernelHashes: DEVNULL },
      '5c5debf100fc339f90276e761ee1f1658d08922c3b20e2a2e6c7a6c3370b2452a15a00eae11886a93d6fd1e7ab81e29d',
    ],
    [
      'A10',
      { vcpus: 1, vcpu: EPYC_V4, guestFeatures: 0x21 },
      'e1e1ca029dd7973ab9513295be68198472dcd4fc834bd9af9b63f6e8a1674dbf281a9278a4a2ebe0eed9f22adbcd0e2b',
    ],
    ['A11', { vcpus: 1, vcpu: { sig: 0x800f12 } }, '19358ba9a7615534a9a1e2f0dfc29384dcd4dcb7062ff9c6013b26869a5fc6ecabe033c48dd6f6db5d6d76e7c5df632d'],
    [
      'A12',
      { vcpus: 4, vcpu: EPYC_V4, guestFeatures: 0x21, kernelHashes: DEVNULL },
      '4953b1fb416fa874980e8442b3706d345926d5f38879134e00813c5d7abcbe78eafe7b422907be0b4698e2414a631942',
    ],
    [
      'A13',
      { vcpus: 4, vcpu: { family: 23, model: 1, stepping: 2 }, kernelHashes: DEVNULL },
      '5061fffb019493a903613d56d54b94912a1a2f9e4502385f5c194616753720a92441310ba6c4933de877c36e23046ad5',
    ],
    [
      'A14',
      { firmware: x64, vcpus: 1, vcpu: EPYC_V4, guestFeatures: 0x21 },
      '28797ae0afaba4005a81e629acebfb59e6687949d6be44007cd5506823b0dd66f146aaae26ff291eed7b493d8a64c385',
    ],
    [
      'A15',
      { firmware: x64, vcpus: 1, vcpu: EPYC_V4, guestFeatures: 0x1 },
      'da0296de8193586a5512078dcd719eccecbd87e2b825ad4148c44f665dc87df21e5b49e21523a9ad993afdb6a30b4005',
    ],
  ];
  it.each(cases)('%s', (_id, input, expected) => {
    expect(hex(snpLaunchDigest({ firmware: amdSev, ...input }))).toBe(expected);
  });

  it('A3: snp:ovmf-hash is the digest after the firmware pages', () => {
    expect(hex(snpOvmfHash(amdSev))).toBe(A3);
  });

  it("A16: a kernel for an OVMF without SNP_KERNEL_HASHES is refused with sev-snp-measure's message", () => {
    expectSevError(
      () => snpLaunchDigest({ firmware: x64, vcpus: 1, vcpu: EPYC_V4, guestFeatures: 0x21, kernelHashes: DEVNULL }),
      'ERR_SEV_FIRMWARE',
      /^Kernel specified but OVMF metadata doesn't include SNP_KERNEL_HASHES section/,
    );
  });

  it("a seed that is not the firmware's own hash changes the digest (the firmware pages are really replaced)", () => {
    const other = Buffer.alloc(48, 1);
    const base = { firmware: amdSev, vcpus: 1, vcpu: EPYC_V4 };
    expect(hex(snpLaunchDigest({ ...base, ovmfHash: other }))).not.toBe(hex(snpLaunchDigest(base)));
    expect(hex(snpLaunchDigest({ ...base, ovmfHash: Buffer.from(A3, 'hex') }))).toBe(hex(snpLaunchDigest(base)));
  });
});

describe('snp:svsm (VECTORS.md A24, A25; spec §4.6)', () => {
  it.each([
    ['A24', 4, '27d154c27b7b359c935e250ec6fee72aa0ae8c1225e3b0e1cf46a9567e938066d7d6f94bbdc4a857818bdb79277a44b2'],
    ['A25', 2, '9b94745036aafddf4f7f8b00c7513abb5b7703178cb95aaa57928bd963d68d3bfcb715d6019b9167ee2517b11b0d9be7'],
  ])('%s: %d vCPUs', (_id, vcpus, expected) => {
    expect(hex(snpSvsmLaunchDigest({ firmware: svsmOvmf, svsm, varsSize: VARS_SIZE, vcpus, vcpu: EPYC_V4 }))).toBe(expected);
  });

  it('the SVSM VMSA equals the derived page (mxcsr 0x1F80, fcw 0, rip = SVSM load address)', () => {
    const pages = snpSvsmVmsaPages({ firmware: svsmOvmf, svsm, varsSize: VARS_SIZE, vcpus: 2, vcpu: EPYC_V4 });
    expect(pages).toHaveLength(2);
    expect(pages[0]).toEqual(measureFile('derived/vmsa/svsm_epyc-v4_eip0xffaea000.bin'));
    expect(pages[1]).toEqual(pages[0]);
    const { state } = describeVmsa(pages[0]!);
    expect(state.rip).toBe(0xffaea000n);
    expect([state.mxcsr, state.x87_fcw, state.sev_features]).toEqual([0x1f80, 0, 1n]);
  });

  it('--vmsa-fpu legacy zeroes MXCSR too, and only the VMSA pages change', () => {
    const base = { firmware: svsmOvmf, svsm, varsSize: VARS_SIZE, vcpus: 1, vcpu: EPYC_V4 };
    const legacy = snpSvsmVmsaPages({ ...base, fpu: 'legacy' })[0]!;
    expect(describeVmsa(legacy).state.mxcsr).toBe(0);
    const steps: SnpLaunchStep[] = [];
    const d = snpSvsmLaunchDigest({ ...base, fpu: 'legacy', onStep: (s) => steps.push(s) });
    const before = steps[steps.length - 2]!.ld;
    const expected = createHash('sha384')
      .update(encodePageInfo(before, createHash('sha384').update(legacy).digest(), SnpPageType.VMSA, SNP_VMSA_GPA))
      .digest();
    expect(d).toEqual(expected);
    expect(hex(d)).not.toBe(hex(snpSvsmLaunchDigest(base)));
  });

  it('the OVMF_VARS size moves the SVSM image, so it enters the digest; bad sizes are refused', () => {
    const base = { firmware: svsmOvmf, svsm, vcpus: 1, vcpu: EPYC_V4 };
    expect(hex(snpSvsmLaunchDigest({ ...base, varsSize: VARS_SIZE + 4096 }))).not.toBe(hex(snpSvsmLaunchDigest({ ...base, varsSize: VARS_SIZE })));
    expectSevError(() => snpSvsmLaunchDigest({ ...base, varsSize: 1000 }), 'ERR_SEV_ARGUMENT', /OVMF_VARS size must be a positive multiple of 4096/);
    expectSevError(() => snpSvsmLaunchDigest({ ...base, varsSize: 0 }), 'ERR_SEV_ARGUMENT', /OVMF_VARS size/);
  });

  it('an SVSM image without SVSM_INFO is refused', () => {
    expectSevError(
      () => snpSvsmLaunchDigest({ firmware: svsmOvmf, svsm: amdSev, varsSize: VARS_SIZE, vcpus: 1, vcpu: EPYC_V4 }),
      'ERR_SEV_FIRMWARE',
      /no SVSM_INFO entry .*not a Coconut-SVSM image/,
    );
  });
});

describe('§G intermediates', () => {
  it('the A4 chain: the digest after every step', () => {
    const steps: SnpLaunchStep[] = [];
    snpLaunchDigest({ firmware: amdSev, vcpus: 1, vcpu: EPYC_V4, guestFeatures: 0x21, kernelHashes: CONSOLE, onStep: (s) => steps.push(s) });
    const rows = steps.map((s) => {
      const what = s.kind === 'section' ? `${s.section.type}@${s.section.gpa.toString(16)}+${s.section.size.toString(16)}:${s.pageType}` : s.kind;
      return [what, hex(s.ld)];
    });
    expect(rows).toEqual([
      ['firmware', A3],
      [`${SectionType.SNP_SEC_MEM}@800000+9000:3`, '411a1360ae4001ab44e1c8a5f14115068566f56b565be90042aa16cc26de1492ef3025f10b7cdd14911ae69aaea7881a'],
      [`${SectionType.SNP_SEC_MEM}@80a000+3000:3`, 'e0b2ff7ad80630d6c56ba3d43c7dd1cccca220d9cc60092fe69e5f31a6ab4e9537aa477497f03636ae29b18630df8477'],
      [`${SectionType.SNP_SECRETS}@80d000+1000:5`, '230c05427474c0649ea31849fe3144dbbef0921570105732b69ff5463dee1fe8612dee2db0866719377099718ecb46d8'],
      [`${SectionType.CPUID}@80e000+1000:6`, '17af371be37e5a8f0f3d83cd4195cfb47b60caabf8c209e6c68ab44d6484381a057812c0760811d53f47b522a16e5574'],
      [`${SectionType.SVSM_CAA}@80f000+1000:3`, '1de7f0d81360fb802b5e2a7327f58ed1a2c9d1947a2e3cf0ae34184e6e1b4cb102da9ac69f421cded3105d12d523e4e9'],
      [`${SectionType.SNP_KERNEL_HASHES}@810000+1000:1`, 'ce06e9d69b176848cf5cbf7c89096ee2e45937a2721e168519ecbec9e0cc7b33df8b16c10c6004379d579d2ff03f528e'],
      [`${SectionType.SNP_SEC_MEM}@811000+f000:3`, '36fcd572bd473b23cdcce6f078026377e7b2d18ede30fe022d371f062ac1fbd73ba70c6286951b488c864e3ff9392f43'],
      ['vmsa', '803f691094946e42068aaa3a8f9e26a5c89f36f7b73ecfb28c653360fe4b3aba7e534442e7e1e17895dfe778d0228977'],
    ]);
  });

  it('the kernel-hashes page for A4 (table at 0xc00) is the derived page', () => {
    const page = buildSnpKernelHashesPage(CONSOLE, 0xc00);
    expect(page).toEqual(measureFile('derived/snp_kernel_hashes_page_offset0xc00_kernel-devnull_initrd-devnull_append-console.bin'));
    expect(hex(createHash('sha384').update(page).digest())).toMatch(/^adbef9bc.*fd27$/);
    expectSevError(() => buildSnpKernelHashesPage(CONSOLE, 4096 - 175), 'ERR_SEV_FIRMWARE', /does not fit its page/);
  });

  it.each([
    ['QEMU gf 0x1', { vcpu: EPYC_V4 }, 'qemu_epyc-v4_sevfeat0x1_bsp', 'qemu_epyc-v4_sevfeat0x1_ap-eip0x80b004'],
    ['QEMU gf 0x21', { vcpu: EPYC_V4, guestFeatures: 0x21 }, 'qemu_epyc-v4_sevfeat0x21_bsp', 'qemu_epyc-v4_sevfeat0x21_ap-eip0x80b004'],
    ['EC2', { vmmType: 'ec2' as const }, 'ec2_sevfeat0x1_rdx0x600_bsp', 'ec2_sevfeat0x1_rdx0x600_ap-eip0x80b004'],
    ['GCE', { vmmType: 'gce' as const }, 'gce_sevfeat0x1_bsp', 'gce_sevfeat0x1_ap-eip0x80b004'],
  ])('%s VMSA pages equal the derived ones', (_what, extra, bsp, ap) => {
    const pages = snpVmsaPages({ firmware: amdSev, vcpus: 3, ...extra });
    expect(pages[0]).toEqual(measureFile(`derived/vmsa/${bsp}.bin`));
    expect(pages[1]).toEqual(measureFile(`derived/vmsa/${ap}.bin`));
    expect(pages[2]).toEqual(pages[1]);
  });

  it('--vmsa-fpu legacy: the SNP VMSA equals the INIT2 one with MXCSR and FCW zero', () => {
    const init2 = snpVmsaPages({ firmware: amdSev, vcpus: 1, vcpu: EPYC_V4 })[0]!;
    const [legacy] = snpVmsaPages({ firmware: amdSev, vcpus: 1, vcpu: EPYC_V4, fpu: 'legacy' });
    const patched = Buffer.from(init2);
    patched.writeUInt32LE(0, 0x408);
    patched.writeUInt16LE(0, 0x410);
    expect(init2.readUInt32LE(0x408)).toBe(0x1f80);
    expect(legacy).toEqual(patched);
    expect(hex(snpLaunchDigest({ firmware: amdSev, vcpus: 1, vcpu: EPYC_V4, fpu: 'legacy' }))).not.toBe(
      '19358ba9a7615534a9a1e2f0dfc29384dcd4dcb7062ff9c6013b26869a5fc6ecabe033c48dd6f6db5d6d76e7c5df632d',
    );
  });

  it('EC2 measures the CPUID page after all other sections; GCE measures SEC_MEM as UNMEASURED', () => {
    const order = (vmmType: 'ec2' | 'gce' | 'qemu') => {
      const steps: SnpLaunchStep[] = [];
      snpLaunchDigest({ firmware: amdSev, vcpus: 1, vcpu: EPYC_V4, vmmType, onStep: (s) => steps.push(s) });
      return steps.flatMap((s) => (s.kind === 'section' ? [`${s.section.type}:${s.pageType}`] : []));
    };
    expect(order('qemu')).toEqual(['1:3', '1:3', '2:5', '3:6', '4:3', '16:3', '1:3']);
    expect(order('ec2')).toEqual(['1:3', '1:3', '2:5', '4:3', '16:3', '1:3', '3:6']);
    expect(order('gce')).toEqual(['1:4', '1:4', '2:5', '3:6', '4:3', '16:3', '1:4']);
  });
});

describe('refusals and progress', () => {
  it('QEMU needs a vCPU model; EC2 and GCE do not', () => {
    expectSevError(() => snpLaunchDigest({ firmware: amdSev, vcpus: 1 }), 'ERR_SEV_ARGUMENT', /SNP with QEMU needs the guest vCPU model/);
  });

  it.each([0, 4097, 1.5])('vCPU count %p is refused before hashing', (vcpus) => {
    let progressed = false;
    expectSevError(
      () => snpLaunchDigest({ firmware: amdSev, vcpus, vcpu: EPYC_V4, onProgress: () => (progressed = true) }),
      'ERR_SEV_RANGE',
      /vCPU count must be an integer in 1\.\.4096/,
    );
    expect(progressed).toBe(false);
  });

  it('a firmware that is not whole pages, or has no reset block, is refused', () => {
    expectSevError(() => snpOvmfHash(amdSev.subarray(1)), 'ERR_SEV_FIRMWARE', /multiple of 4096/);
    expectSevError(() => snpLaunchDigest({ firmware: amdSev.subarray(1), vcpus: 1, vcpu: EPYC_V4 }), 'ERR_SEV_FIRMWARE', /multiple of 4096/);
    // Seeded, the firmware is only read for its table and metadata (which sit at its end), as in sev-snp-measure.
    const seeded = { vcpus: 1, vcpu: EPYC_V4, ovmfHash: Buffer.from(A3, 'hex') };
    expect(snpLaunchDigest({ firmware: amdSev.subarray(1), ...seeded })).toEqual(snpLaunchDigest({ firmware: amdSev, ...seeded }));
    expectSevError(() => snpLaunchDigest({ firmware: Buffer.alloc(4096), vcpus: 1, vcpu: EPYC_V4 }), 'ERR_SEV_FIRMWARE', /no OVMF footer table/);
  });

  it('a seed of the wrong length is refused', () => {
    expectSevError(
      () => snpLaunchDigest({ firmware: amdSev, vcpus: 1, vcpu: EPYC_V4, ovmfHash: Buffer.alloc(32) }),
      'ERR_SEV_LENGTH',
      /OVMF hash must be 48 bytes/,
    );
  });

  it('a kernel-hashes section larger than one page cannot take a kernel (sev-snp-measure asserts 4096)', () => {
    // The AmdSev fixture with its SNP_KERNEL_HASHES size doubled (0x1000 → 0x2000).
    const fw = Buffer.from(amdSev);
    const sections = parseOvmfSevMetadata(fw, parseOvmfFooterTable(fw));
    const i = sections.findIndex((s) => s.type === SectionType.SNP_KERNEL_HASHES);
    const start =
      fw.length -
      parseOvmfFooterTable(fw)
        .entries.find((e) => e.guid === 'dc886566-984a-4798-a75e-5585a7bf67cc')!
        .data.readUInt32LE(0);
    fw.writeUInt32LE(0x2000, start + 16 + 12 * i + 4);
    expect(parseOvmfSevMetadata(fw, parseOvmfFooterTable(fw))[i]!.size).toBe(0x2000);
    let progressed = false;
    const onProgress = () => (progressed = true);
    expectSevError(
      () => snpLaunchDigest({ firmware: fw, vcpus: 1, vcpu: EPYC_V4, kernelHashes: DEVNULL, onProgress }),
      'ERR_SEV_FIRMWARE',
      /exactly one 4 KiB page/,
    );
    expect(progressed).toBe(false); // refused before any page was hashed
    // Without a kernel the section is simply two ZERO pages.
    expect(snpLaunchDigest({ firmware: fw, vcpus: 1, vcpu: EPYC_V4 })).toHaveLength(48);
  });

  it('progress runs to the total over firmware and VMSA bytes', () => {
    const seen: [number, number][] = [];
    snpLaunchDigest({ firmware: svsmOvmf, vcpus: 2, vcpu: EPYC_V4, onProgress: (d, t) => seen.push([d, t]) });
    const total = svsmOvmf.length + 2 * 4096;
    expect(seen.length).toBeGreaterThan(2);
    expect(seen[seen.length - 1]!).toEqual([total, total]);
    expect(seen.every(([d, t], k) => t === total && (k === 0 || d >= seen[k - 1]![0]))).toBe(true);
  });
});

describe('properties', () => {
  it('over random firmware bodies: seeding with snpOvmfHash changes nothing, and the seed is the first step', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 3 }), fc.integer({ min: 0, max: 0xffffffff }), fc.integer({ min: 1, max: 3 }), (extraPages, fill, vcpus) => {
        const body = Buffer.alloc(extraPages * 4096);
        for (let o = 0; o < body.length; o += 4) body.writeUInt32LE((fill + o) >>> 0, o);
        const firmware = Buffer.concat([body, amdSev]);
        const steps: SnpLaunchStep[] = [];
        const full = snpLaunchDigest({ firmware, vcpus, vcpu: EPYC_V4, onStep: (s) => steps.push(s) });
        const seed = snpOvmfHash(firmware);
        expect(steps[0]).toEqual({ kind: 'firmware', gpa: 0x1_0000_0000 - firmware.length, pages: extraPages + 1, ld: seed });
        expect(snpLaunchDigest({ firmware, vcpus, vcpu: EPYC_V4, ovmfHash: seed })).toEqual(full);
        expect(steps.filter((s) => s.kind === 'vmsa')).toHaveLength(vcpus);
      }),
      { numRuns: 25 },
    );
  });
});
