/**
 * @kb/sev-host-sim — a simulated SEV host on the simulated Secure Processor (@kb/sev-sim): guests launched, measured,
 * injected and resumed the way QEMU and libvirt report them, a QMP server, a QEMU-like command line (sim-qemu) and
 * the guest-side view of the injected secrets. Its root is synthetic: a broker accepts it only when told to.
 */
export { HostSimError, isHostSimError, firmwareErrorText, type HostSimErrorCode } from './errors';
export { SIM_HOST_CBITPOS, SIM_HOST_REDUCED_PHYS_BITS, type SevGuestConfig } from './guest-config';
export { SimulatedVm, EFI_SECRET_DIR, type RunState, type SevInfo, type SevState } from './vm';
export { SimulatedHypervisor, type SevCapabilities } from './hypervisor';
export { writeEfiSecretFiles } from './efi-secret';
export { syntheticOvmf, SYNTHETIC_OVMF_DEFAULTS, type SyntheticOvmfOptions } from './synthetic-ovmf';
export { QmpServer, SIM_QMP_PACKAGE, type QmpServerOptions } from './qmp/server';
export { parseQemuArgs, parseKeyValueList, type QemuInvocation } from './qemu/args';
export { startSimQemu, loadOrCreatePlatform, SIM_QEMU_USAGE, SIM_HOST_CPU_MODEL, type RunningSimQemu } from './qemu/run';
// The simulated SEV-SNP guest and its KBS protocol client (issue #17)
export * from './snp-guest';
