import type { VcpuSpec, VmsaFpu } from '@kb/sev';

/**
 * What QEMU takes from its command line for an SEV / SEV-ES guest (`-object sev-guest`, `-bios`/pflash unit 0,
 * `-kernel/-initrd/-append`, `-smp`, `-cpu`), as data. File contents, not paths: the simulated host measures bytes.
 */
export interface SevGuestConfig {
  name?: string;
  /** pflash unit 0 or the `-bios` image; the VARS image is never measured, so it has no place here. */
  firmware: Uint8Array;
  /** Direct kernel boot. */
  kernel?: { kernel: Uint8Array; initrd?: Uint8Array; cmdline?: string };
  /** QEMU `kernel-hashes=on`: measure the kernel, initrd and cmdline hashes table. QEMU's default is off. */
  kernelHashes?: boolean;
  /** vCPUs present at launch (`-smp`): one VMSA each for SEV-ES. Default 1. */
  vcpus?: number;
  /** The guest vCPU model (`-cpu`), needed for SEV-ES because its signature lands in every VMSA. */
  vcpu?: VcpuSpec;
  /** VMSA FPU flavour: 'legacy' (KVM_SEV_ES_INIT, QEMU ≥ 9.1 default) or 'init2' (KVM_SEV_INIT2). Default 'legacy'. */
  fpu?: VmsaFpu;
  /** SEV guest policy; bit 2 (ES) makes it an SEV-ES guest. */
  policy: number;
  /** The guest owner's PDH certificate (decoded `dh-cert-file`). */
  godhCert: Uint8Array;
  /** The launch blob (decoded `session-file`). */
  session: Uint8Array;
  /** `cbitpos` / `reduced-phys-bits` as given; checked against the simulated host like QEMU does. */
  cbitpos?: number;
  reducedPhysBits?: number;
}

/** The C-bit position and physical address reduction of the simulated host (those of EPYC Rome/Milan). */
export const SIM_HOST_CBITPOS = 47;
export const SIM_HOST_REDUCED_PHYS_BITS = 1;
