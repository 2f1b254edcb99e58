import { readdirSync } from 'node:fs';
import * as path from 'node:path';
import { parseOvmfFooterTable, sevEsResetEip } from '../../src/measurement/ovmf';
import { cpuSignature, cpuSignatureForModel } from '../../src/measurement/vcpu-types';
import {
  BSP_RESET_EIP,
  MAX_VCPUS,
  SEV_ES_SAVE_AREA,
  buildSvsmVmsaPage,
  buildVmsaPage,
  buildVmsaPair,
  describeVmsa,
  encodeVmsa,
  initialVmsaState,
  vmsaPageSequence,
  type VmsaParams,
  type VmsaState,
} from '../../src/measurement/vmsa';
import { MEASURE_DIR, SEVCTL_DIR, SEVCTL_OVMF, measureFile } from './vectors';

const EPYC_V4 = cpuSignatureForModel('EPYC-v4');
const AP_EIP = 0x80b004;

/** derived/vmsa/*.bin (VECTORS.md §G) and the parameters that produce each. */
const DERIVED: Record<string, Omit<VmsaParams, 'eip'>> = {
  'qemu_epyc-v4_sevfeat0x0_init2': { vmmType: 'qemu', vcpuSig: EPYC_V4, sevFeatures: 0, fpu: 'init2' },
  'qemu_epyc-v4_sevfeat0x0_legacy-nofpu': { vmmType: 'qemu', vcpuSig: EPYC_V4, sevFeatures: 0, fpu: 'legacy' },
  'qemu_epyc-v4_sevfeat0x1': { vmmType: 'qemu', vcpuSig: EPYC_V4, sevFeatures: 0x1, fpu: 'init2' },
  'qemu_epyc-v4_sevfeat0x21': { vmmType: 'qemu', vcpuSig: EPYC_V4, sevFeatures: 0x21n, fpu: 'init2' },
  ec2_sevfeat0x1_rdx0x600: { vmmType: 'ec2', sevFeatures: 0x1, fpu: 'legacy' },
  gce_sevfeat0x1: { vmmType: 'gce', sevFeatures: 0x1, fpu: 'init2' },
};

describe('VMSA pages against derived/vmsa', () => {
  const files = readdirSync(path.join(MEASURE_DIR, 'derived/vmsa'));

  it('every file in derived/vmsa is covered by a case below', () => {
    const covered = new Set(['svsm_epyc-v4_eip0xffaea000.bin']);
    for (const prefix of Object.keys(DERIVED)) {
      covered.add(`${prefix}_bsp.bin`);
      covered.add(`${prefix}_ap-eip0x80b004.bin`);
    }
    expect(files.sort()).toEqual([...covered].sort());
  });

  it.each(Object.entries(DERIVED))('%s: BSP and AP byte-exact', (prefix, params) => {
    const pair = buildVmsaPair({ ...params, apResetEip: AP_EIP });
    expect(pair.bsp).toEqual(measureFile(`derived/vmsa/${prefix}_bsp.bin`));
    expect(pair.ap).toEqual(measureFile(`derived/vmsa/${prefix}_ap-eip0x80b004.bin`));
  });

  it('the generic encoder reproduces the SVSM page from the spec §4.6 register values', () => {
    const data = (selector: number, attrib: number, limit: number) => ({ selector, attrib, limit, base: 0n });
    const state: VmsaState = {
      es: data(0x10, 0xc93, 0xffffffff),
      cs: data(0x08, 0xc9b, 0xffffffff),
      ss: data(0x10, 0xc93, 0xffffffff),
      ds: data(0x10, 0xc93, 0xffffffff),
      fs: data(0x10, 0xc93, 0xffffffff),
      gs: data(0, 0x93, 0xffff),
      gdtr: data(0, 0, 0xffff),
      ldtr: data(0, 0x82, 0xffff),
      idtr: data(0, 0, 0xffff),
      tr: data(0, 0x8b, 0xffff),
      efer: 0x1000n,
      cr4: 0x40n,
      cr0: 0x11n,
      dr7: 0x400n,
      dr6: 0xffff0ff0n,
      rflags: 2n,
      rip: 0xffaea000n,
      g_pat: 0x0007040600070406n,
      rdx: BigInt(EPYC_V4),
      sev_features: 1n,
      xcr0: 1n,
      mxcsr: 0x1f80,
      x87_fcw: 0,
    };
    const page = measureFile('derived/vmsa/svsm_epyc-v4_eip0xffaea000.bin');
    expect(encodeVmsa(state)).toEqual(page);
    expect(describeVmsa(page)).toEqual({ state, otherNonZeroOffsets: [] });
    // and the SVSM builder (sev-snp-measure's fcw quirk: MXCSR set, FCW 0)
    expect(buildSvsmVmsaPage({ entryPoint: 0xffaea000, vcpuSig: EPYC_V4, fpu: 'init2' })).toEqual(page);
    expect(describeVmsa(buildSvsmVmsaPage({ entryPoint: 0xffaea000, vcpuSig: EPYC_V4, fpu: 'legacy' })).state).toEqual({ ...state, mxcsr: 0 });
    expect(() => buildSvsmVmsaPage({ entryPoint: 0xffaea000, vcpuSig: 2 ** 32, fpu: 'init2' })).toThrow(/vCPU signature must be a u32/);
  });
});

describe('VMSA pages against sevctl (legacy flavour, family 25 model 1 stepping 1)', () => {
  const apResetEip = sevEsResetEip(parseOvmfFooterTable(measureFile(SEVCTL_OVMF)));
  const pair = buildVmsaPair({
    apResetEip,
    vmmType: 'qemu',
    vcpuSig: cpuSignature(25, 1, 1),
    sevFeatures: 0,
    fpu: 'legacy',
  });

  it('builds vmsa0.bin and vmsa1.bin byte-exact', () => {
    expect(apResetEip).toBe(0x80b004);
    expect(pair.bsp).toEqual(measureFile(`${SEVCTL_DIR}/vmsa0.bin`));
    expect(pair.ap).toEqual(measureFile(`${SEVCTL_DIR}/vmsa1.bin`));
  });

  it.each(['vmsa0', 'vmsa1'])('describeVmsa(%s.bin) agrees with sevctl `vmsa show`', (name) => {
    const show = JSON.parse(measureFile(`${SEVCTL_DIR}/${name}-show.txt`).toString('utf8')) as Record<string, unknown>;
    const { state, otherNonZeroOffsets } = describeVmsa(measureFile(`${SEVCTL_DIR}/${name}.bin`));
    expect(otherNonZeroOffsets).toEqual([]);
    for (const seg of ['es', 'cs', 'ss', 'ds', 'fs', 'gs', 'gdtr', 'ldtr', 'idtr', 'tr'] as const) {
      expect({ ...state[seg], base: Number(state[seg].base) }).toEqual(show[seg]);
    }
    for (const reg of ['efer', 'cr4', 'cr0', 'dr7', 'dr6', 'rflags', 'rip', 'g_pat', 'rdx', 'xcr0'] as const) {
      expect(Number(state[reg])).toBe(show[reg]);
    }
    expect([state.sev_features, state.mxcsr, state.x87_fcw]).toEqual([0n, 0, 0]);
  });
});

describe('VMSA builder rules (spec §1.5, §1.6)', () => {
  const qemu: VmsaParams = { eip: BSP_RESET_EIP, vmmType: 'qemu', vcpuSig: EPYC_V4, sevFeatures: 0, fpu: 'legacy' };

  it('puts the values at the named offsets', () => {
    const page = buildVmsaPage({ ...qemu, eip: 0x80b004, fpu: 'init2', sevFeatures: 0x20 });
    expect(page.readBigUInt64LE(SEV_ES_SAVE_AREA.cs + 8)).toBe(0x800000n);
    expect(page.readBigUInt64LE(SEV_ES_SAVE_AREA.rip)).toBe(0xb004n);
    expect(page.readBigUInt64LE(SEV_ES_SAVE_AREA.rdx)).toBe(0x800f12n);
    expect(page.readBigUInt64LE(SEV_ES_SAVE_AREA.sev_features)).toBe(0x20n);
    expect(page.readUInt32LE(SEV_ES_SAVE_AREA.mxcsr)).toBe(0x1f80);
    expect(page.readUInt16LE(SEV_ES_SAVE_AREA.x87_fcw)).toBe(0x37f);
  });

  it('the legacy and init2 flavours differ only in mxcsr and x87_fcw', () => {
    const legacy = initialVmsaState(qemu);
    const init2 = initialVmsaState({ ...qemu, fpu: 'init2' });
    expect({ ...init2, mxcsr: 0, x87_fcw: 0 }).toEqual(legacy);
    expect([init2.mxcsr, init2.x87_fcw]).toEqual([0x1f80, 0x37f]);
  });

  it('EC2 and GCE ignore the vCPU signature and the FPU flavour', () => {
    for (const vmmType of ['ec2', 'gce'] as const) {
      const a = buildVmsaPage({ ...qemu, vmmType, vcpuSig: undefined });
      expect(buildVmsaPage({ ...qemu, vmmType, fpu: 'init2', vcpuSig: 0x1234 })).toEqual(a);
      expect(a.readBigUInt64LE(SEV_ES_SAVE_AREA.rdx)).toBe(0x600n);
    }
  });

  it('rejects missing or out-of-range inputs with SevErrors', () => {
    const argument = expect.objectContaining({ code: 'ERR_SEV_ARGUMENT' });
    const range = expect.objectContaining({ code: 'ERR_SEV_RANGE' });
    expect(() => buildVmsaPage({ ...qemu, vcpuSig: undefined })).toThrow(argument);
    expect(() => buildVmsaPage({ ...qemu, eip: 2 ** 32 })).toThrow(range);
    expect(() => buildVmsaPage({ ...qemu, sevFeatures: -1 })).toThrow(range);
    expect(() => buildVmsaPage({ ...qemu, sevFeatures: 1n << 64n })).toThrow(/sev_features must be a u64/);
    expect(() => buildVmsaPage({ ...qemu, vmmType: 'krun' as 'qemu' })).toThrow(/unknown VMM type "krun"/);
    expect(() => buildVmsaPage({ ...qemu, fpu: 'x' as 'legacy' })).toThrow(/unknown VMSA FPU flavour/);
    const bad = { ...initialVmsaState(qemu), x87_fcw: 0x10000 };
    expect(() => encodeVmsa(bad)).toThrow(range);
  });

  it('sequences BSP then identical AP pages, with libvirt-style length checks', () => {
    const bsp = Buffer.alloc(4096, 1);
    const ap = Buffer.alloc(4096, 2);
    expect(vmsaPageSequence({ bsp }, 1)).toEqual([bsp]);
    expect(vmsaPageSequence({ bsp, ap }, 3)).toEqual([bsp, ap, ap]);
    expect(() => vmsaPageSequence({ bsp }, 2)).toThrow(/2 vCPUs need an AP VMSA page/);
    const length = expect.objectContaining({ code: 'ERR_SEV_LENGTH' });
    expect(() => vmsaPageSequence({ bsp: Buffer.alloc(4095), ap }, 2)).toThrow(length);
    expect(() => vmsaPageSequence({ bsp, ap: Buffer.alloc(4097) }, 2)).toThrow(length);
    for (const n of [0, -1, 1.5, MAX_VCPUS + 1]) {
      expect(() => vmsaPageSequence({ bsp, ap }, n)).toThrow(expect.objectContaining({ code: 'ERR_SEV_RANGE' }));
    }
  });
});
