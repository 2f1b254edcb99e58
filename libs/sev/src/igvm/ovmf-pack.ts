/**
 * Packs a QEMU/OVMF SEV-SNP guest into IGVM directives (../shared/specs/igvm.md §6.1), so that igvmmeasure
 * --native-zero over the result gives the sev-snp-measure `snp` digest of the same guest (§6.2 lists where the two
 * flows can legitimately differ). It reuses the OVMF footer table / SEV metadata parser and the kernel hashes table
 * of measurement/; the VMSA pages are inputs (the SNP VMSA builder lives with the SNP launch digest).
 */
import { SevError } from '../errors';
import { parseOvmfFooterTable, parseOvmfSevMetadata, SectionType, sevHashTableArea } from '../measurement/ovmf';
import { buildPaddedSevHashTable, type KernelHashesInput } from '../measurement/sev-hashes';
import { SNP_VMSA_GPA } from '../snp/page-info';
import { IGVM_PAGE_SIZE, PageDataFlag, PageDataType, PlatformType, type IgvmDirective, type IgvmFile } from './layout';

export interface OvmfSnpGuest {
  /** the OVMF image (a multiple of 4096 bytes), mapped to end at 4 GiB */
  firmware: Uint8Array;
  vmm: 'qemu' | 'ec2' | 'gce';
  vcpus: number;
  /** the 4096-byte BSP VMSA page, and the AP page for vCPUs 1..n−1 (launch-digest.md §1.5) */
  bspVmsa: Uint8Array;
  apVmsa?: Uint8Array;
  /** direct kernel boot: the kernel hashes page is a data page (needs SNP_KERNEL_HASHES) */
  kernelHashes?: KernelHashesInput;
  /** GUEST_POLICY for `sign` (default 0x30000); it does not enter the digest */
  policy?: bigint;
}

const PAGE = IGVM_PAGE_SIZE;
const SNP_MASK = 1;

export function packOvmfSnpGuest(g: OvmfSnpGuest): IgvmFile {
  const fw = Buffer.from(g.firmware);
  if (fw.length === 0 || fw.length % PAGE !== 0)
    throw new SevError('ERR_SEV_LENGTH', `the firmware must be a non-empty multiple of ${PAGE} bytes, got ${fw.length}`);
  if (!Number.isInteger(g.vcpus) || g.vcpus < 1) throw new SevError('ERR_SEV_ARGUMENT', 'at least one vCPU');
  if (g.vcpus > 1 && !g.apVmsa) throw new SevError('ERR_SEV_ARGUMENT', 'more than one vCPU needs the AP VMSA page');
  const table = parseOvmfFooterTable(fw);
  const sections = parseOvmfSevMetadata(fw, table);
  if (g.kernelHashes && !sections.some((s) => s.type === SectionType.SNP_KERNEL_HASHES)) {
    throw new SevError('ERR_SEV_FIRMWARE', "Kernel specified but OVMF metadata doesn't include SNP_KERNEL_HASHES section");
  }
  const page = (gpa: number | bigint, extra: Partial<Extract<IgvmDirective, { kind: 'page_data' }>> = {}): IgvmDirective => ({
    kind: 'page_data',
    gpa: BigInt(gpa),
    compatibilityMask: SNP_MASK,
    flags: 0,
    dataType: PageDataType.NORMAL,
    ...extra,
  });
  const dataless = (gpa: number, size: number, flags = 0): IgvmDirective[] =>
    Array.from({ length: Math.ceil(size / PAGE) }, (_, i) => page(gpa + i * PAGE, { flags }));

  // §6.1 step 2: firmware pages, NORMAL with data, at 4 GiB − |fw|.
  const base = 0x1_0000_0000 - fw.length;
  const directives: IgvmDirective[] = [];
  for (let o = 0; o < fw.length; o += PAGE) directives.push(page(base + o, { data: Buffer.from(fw.subarray(o, o + PAGE)) }));

  // Step 3: metadata sections in file order (launch-digest.md §4.2 step 2).
  const cpuid: IgvmDirective[] = [];
  for (const s of sections) {
    switch (s.type) {
      case SectionType.SNP_SEC_MEM:
        directives.push(...dataless(s.gpa, s.size, g.vmm === 'gce' ? PageDataFlag.UNMEASURED : 0));
        break;
      case SectionType.SNP_SECRETS:
        directives.push(page(s.gpa, { dataType: PageDataType.SECRETS })); // one page, as sev-snp-measure
        break;
      case SectionType.CPUID: {
        const d = page(s.gpa, { dataType: PageDataType.CPUID_DATA });
        if (g.vmm === 'ec2')
          cpuid.push(d); // EC2 measures CPUID pages after all other metadata
        else directives.push(d);
        break;
      }
      case SectionType.SVSM_CAA:
        directives.push(...dataless(s.gpa, s.size));
        break;
      case SectionType.SNP_KERNEL_HASHES:
        if (g.kernelHashes) {
          const data = Buffer.alloc(PAGE);
          buildPaddedSevHashTable(g.kernelHashes).copy(data, sevHashTableArea(table).base & 0xfff);
          directives.push(page(s.gpa, { data }));
        } else directives.push(...dataless(s.gpa, s.size));
        break;
    }
  }
  directives.push(...cpuid);

  // Step 4: one VP context per vCPU at KVM's VMSA GPA, BSP first.
  for (let i = 0; i < g.vcpus; i++) {
    const data = Buffer.from(i === 0 ? g.bspVmsa : g.apVmsa!);
    if (data.length !== PAGE) throw new SevError('ERR_SEV_LENGTH', `a VMSA page is ${PAGE} bytes, got ${data.length}`);
    directives.push({ kind: 'vp_context', form: 'snp', gpa: SNP_VMSA_GPA, compatibilityMask: SNP_MASK, vpIndex: i, reserved: 0, data });
  }
  return {
    formatVersion: 1,
    platforms: [{ compatibilityMask: SNP_MASK, highestVtl: 0, platformType: PlatformType.SEV_SNP, platformVersion: 1, sharedGpaBoundary: 0n }],
    initializations: [{ kind: 'guest_policy', policy: g.policy ?? 0x30000n, compatibilityMask: SNP_MASK }],
    directives,
  };
}
