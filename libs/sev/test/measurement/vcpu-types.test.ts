import { isSevError } from '../../src/errors';
import { QEMU_CPU_SIGNATURES, cpuSignature, cpuSignatureForModel, resolveVcpuSignature, type VcpuSpec } from '../../src/measurement/vcpu-types';

describe('vCPU signature', () => {
  it('matches sev-snp-measure tests/test_vcpu_types.py', () => {
    expect(cpuSignature(14, 1, 2)).toBe(0x0e12);
    expect(cpuSignature(23, 1, 2)).toBe(0x800f12);
  });

  it('matches the spec §1.5 model table and the sevctl VMSA rdx (family 25, model 1, stepping 1)', () => {
    const expected: Record<string, number> = {
      EPYC: 0x00800f12,
      'EPYC-v1': 0x00800f12,
      'EPYC-v2': 0x00800f12,
      'EPYC-v3': 0x00800f12,
      'EPYC-v4': 0x00800f12,
      'EPYC-IBPB': 0x00800f12,
      'EPYC-Rome': 0x00830f10,
      'EPYC-Rome-v1': 0x00830f10,
      'EPYC-Rome-v2': 0x00830f10,
      'EPYC-Rome-v3': 0x00830f10,
      'EPYC-Milan': 0x00a00f11,
      'EPYC-Milan-v1': 0x00a00f11,
      'EPYC-Milan-v2': 0x00a00f11,
      'EPYC-Genoa': 0x00a10f10,
      'EPYC-Genoa-v1': 0x00a10f10,
      'EPYC-Turin': 0x00b00f00,
    };
    expect({ ...QEMU_CPU_SIGNATURES }).toEqual(expected);
    for (const [name, sig] of Object.entries(expected)) expect(cpuSignatureForModel(name)).toBe(sig);
    expect(cpuSignature(25, 1, 1)).toBe(0xa00f11);
  });

  it('encodes the extended family and model fields at their CPUID bit positions', () => {
    expect(cpuSignature(0xf, 0, 0)).toBe(0x00000f00);
    expect(cpuSignature(0xf + 0xff, 0xff, 0xf)).toBe(0x0fff0fff);
    expect(cpuSignature(0x10, 0x12, 3)).toBe(0x00110f23);
  });

  it('rejects out-of-range fields and unknown models instead of masking them', () => {
    for (const [f, m, s] of [
      [0x10f, 0, 0],
      [23, 0x100, 0],
      [23, 1, 16],
      [-1, 1, 2],
      [23.5, 1, 2],
    ] as const) {
      expect(() => cpuSignature(f, m, s)).toThrow(expect.objectContaining({ code: 'ERR_SEV_RANGE' }));
    }
    expect(() => cpuSignatureForModel('EPYC-v9')).toThrow(/unknown QEMU vCPU model "EPYC-v9"; known: EPYC,/);
    expect(() => cpuSignatureForModel('toString')).toThrow(expect.objectContaining({ code: 'ERR_SEV_ARGUMENT' }));
  });

  it('resolves exactly one of sig, type or family/model/stepping', () => {
    expect(resolveVcpuSignature({ sig: 0xa00f11 })).toBe(0xa00f11);
    expect(resolveVcpuSignature({ type: 'EPYC-Milan' })).toBe(0xa00f11);
    expect(resolveVcpuSignature({ family: 25, model: 1, stepping: 1 })).toBe(0xa00f11);
    const bad = [{}, { sig: 1, type: 'EPYC' }, { sig: 1, family: 25, model: 1, stepping: 1 }, { family: 25, model: 1 }] as unknown as VcpuSpec[];
    for (const spec of bad) {
      let caught: unknown;
      try {
        resolveVcpuSignature(spec);
      } catch (e) {
        caught = e;
      }
      expect(isSevError(caught, 'ERR_SEV_ARGUMENT')).toBe(true);
    }
    expect(() => resolveVcpuSignature({ sig: 2 ** 32 })).toThrow(expect.objectContaining({ code: 'ERR_SEV_RANGE' }));
  });
});
