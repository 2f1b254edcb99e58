import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { packOvmfSnpGuest } from '../../src/igvm/ovmf-pack';
import { writeIgvm } from '../../src/igvm/writer';
import { parseIgvm } from '../../src/igvm/parser';
import { measureIgvm } from '../../src/igvm/measure';
import { FIXTURE_DIR, readVector, SNP_A, VMSA_DIR } from './vectors';

const AMDSEV = readFileSync(join(FIXTURE_DIR, 'ovmf_AmdSev_suffix.bin'));
const vmsa = (name: string) => readFileSync(join(VMSA_DIR, name));
const expected = (a: string) => SNP_A.find((v) => v[0] === `snp-${a}.igvm`)!;
const EMPTY_KERNEL = { kernel: new Uint8Array(0), initrd: new Uint8Array(0), cmdline: '' };

/**
 * igvm.md §6: a QEMU/OVMF SNP guest packed as IGVM directives measures (igvmmeasure --native-zero) to the
 * sev-snp-measure digest of the same guest, and serializes to the very file shared/vectors/igvm holds.
 */
describe('OVMF SNP guests packed as IGVM give the sev-snp-measure digest (igvm.md §6.1)', () => {
  const cases: [string, Parameters<typeof packOvmfSnpGuest>[0]][] = [
    ['A11', { firmware: AMDSEV, vmm: 'qemu', vcpus: 1, bspVmsa: vmsa('qemu_epyc-v4_sevfeat0x1_bsp.bin') }],
    [
      'A13',
      {
        firmware: AMDSEV,
        vmm: 'qemu',
        vcpus: 4,
        bspVmsa: vmsa('qemu_epyc-v4_sevfeat0x1_bsp.bin'),
        apVmsa: vmsa('qemu_epyc-v4_sevfeat0x1_ap-eip0x80b004.bin'),
        kernelHashes: EMPTY_KERNEL,
      },
    ],
    ['A7', { firmware: AMDSEV, vmm: 'ec2', vcpus: 1, bspVmsa: vmsa('ec2_sevfeat0x1_rdx0x600_bsp.bin'), kernelHashes: EMPTY_KERNEL }],
    ['A8', { firmware: AMDSEV, vmm: 'gce', vcpus: 1, bspVmsa: vmsa('gce_sevfeat0x1_bsp.bin'), kernelHashes: EMPTY_KERNEL }],
  ];

  it.each(cases)('%s', (id, guest) => {
    const [file, nativeZero, dflt] = expected(id);
    const bytes = writeIgvm(packOvmfSnpGuest(guest));
    const m = parseIgvm(bytes);
    expect(measureIgvm(m, { nativeZero: true }).digest.toString('hex')).toBe(nativeZero);
    expect(measureIgvm(m).digest.toString('hex')).toBe(dflt);
    expect(bytes.equals(readVector(file))).toBe(true);
  });

  it('refuses a kernel for firmware without SNP_KERNEL_HASHES and an AP-less multi-vCPU guest', () => {
    const x64 = readFileSync(join(FIXTURE_DIR, 'ovmf_OvmfX64_suffix.bin'));
    expect(() => packOvmfSnpGuest({ firmware: x64, vmm: 'qemu', vcpus: 1, bspVmsa: Buffer.alloc(4096), kernelHashes: EMPTY_KERNEL })).toThrow(
      /doesn't include SNP_KERNEL_HASHES/,
    );
    expect(() => packOvmfSnpGuest({ firmware: AMDSEV, vmm: 'qemu', vcpus: 2, bspVmsa: Buffer.alloc(4096) })).toThrow(
      expect.objectContaining({ code: 'ERR_SEV_ARGUMENT' }),
    );
  });
});
