import { isSevError, launchMeasuredData, parseOvmfFooterTable, PolicyFlag, sevSecretArea, type MeasuredPiece, type SecretTableEntry } from '@kb/sev';
import { FirmwareError, type SimulatedSecureProcessor } from '@kb/sev-sim';
import { firmwareErrorText, HostSimError } from './errors';
import { SIM_HOST_CBITPOS, SIM_HOST_REDUCED_PHYS_BITS, type SevGuestConfig } from './guest-config';

/** QEMU run states (`query-status`) a simulated guest goes through. */
export type RunState = 'created' | 'prelaunch' | 'paused' | 'running' | 'shutdown';
/** QEMU `SevState` as `query-sev` reports it. */
export type SevState = 'uninit' | 'launch-update' | 'launch-secret' | 'running';

/** `query-sev` (QEMU SevInfo), with JavaScript field names. */
export interface SevInfo {
  enabled: true;
  apiMajor: number;
  apiMinor: number;
  buildId: number;
  policy: number;
  state: SevState;
  handle: number;
  sevType: 'sev';
}

/** Where the Linux efi_secret driver exposes each injected secret (securityfs). */
export const EFI_SECRET_DIR = '/sys/kernel/security/secrets/coco';

/**
 * One simulated guest. Its launch follows QEMU: LAUNCH_START with the owner's session, LAUNCH_UPDATE_DATA of the
 * firmware and the kernel hashes table, LAUNCH_UPDATE_VMSA per vCPU for SEV-ES, LAUNCH_MEASURE at machine-init-done
 * (so the measurement is ready while the guest waits paused), LAUNCH_SECRET on injection and LAUNCH_FINISH on the
 * first resume. The bytes measured come from @kb/sev's launchMeasuredData: the same code an owner uses to compute
 * the expected digest, so a launch from the inputs the owner expects measures exactly what the owner computed.
 */
export class SimulatedVm {
  private run: RunState = 'created';
  private sev: SevState = 'uninit';
  private handle = 0;
  private measurement?: Buffer;
  private injectedAt?: number;

  constructor(
    private readonly sp: SimulatedSecureProcessor,
    readonly config: Readonly<SevGuestConfig>,
  ) {}

  get name(): string {
    return this.config.name ?? 'guest';
  }

  get runState(): RunState {
    return this.run;
  }

  get sevState(): SevState {
    return this.sev;
  }

  /** Machine init: measure the launch and stop before the first instruction when `paused` (QEMU `-S`). */
  start(opts: { paused: boolean }): void {
    if (this.run !== 'created') throw new HostSimError('INVALID_STATE', `guest ${this.name} was already started`);
    const pieces = this.measuredPieces();
    const c = this.config;
    try {
      this.handle = this.sp.launchStart({ policy: c.policy, godhCert: c.godhCert, launchBlob: c.session });
    } catch (e) {
      this.run = 'shutdown';
      if (e instanceof FirmwareError) throw new HostSimError('LAUNCH_FAILED', `sev_launch_start: LAUNCH_START ${firmwareErrorText(e)}`, e.status);
      throw e;
    }
    this.sev = 'launch-update';
    try {
      for (const piece of pieces) {
        if (piece.kind === 'vmsa') this.sp.launchUpdateVmsa(this.handle, piece.data);
        else this.sp.launchUpdateData(this.handle, piece.data);
      }
      this.measurement = this.sp.launchMeasure(this.handle);
    } catch (e) {
      this.destroy();
      if (e instanceof FirmwareError) throw new HostSimError('LAUNCH_FAILED', `SEV: launch update failed ${firmwareErrorText(e)}`, e.status);
      throw e;
    }
    this.sev = 'launch-secret';
    this.run = 'prelaunch';
    if (!opts.paused) this.resume();
  }

  querySev(): SevInfo {
    if (this.sev === 'uninit' || this.run === 'shutdown') throw new HostSimError('INVALID_STATE', 'SEV: guest is not launched');
    const fw = this.sp.firmware;
    return {
      enabled: true,
      apiMajor: fw.apiMajor,
      apiMinor: fw.apiMinor,
      buildId: fw.build,
      policy: this.config.policy,
      state: this.sev,
      handle: this.handle,
      sevType: 'sev',
    };
  }

  /** `query-sev-launch-measure`: base64 of MEASURE ‖ MNONCE, available from machine-init-done on. */
  launchMeasurement(): string {
    if (!this.measurement || this.run === 'shutdown') throw new HostSimError('INVALID_STATE', 'SEV launch measurement is not available');
    return this.measurement.toString('base64');
  }

  /**
   * `sev-inject-launch-secret`: header and secret as base64, gpa defaulting to the firmware's SEV_SECRET area as
   * QEMU does. A secret placed elsewhere is accepted by the firmware but never seen by the guest.
   */
  injectSecret(packetHeader: string, secret: string, gpa?: number): void {
    if (this.sev !== 'launch-secret' || this.run === 'shutdown') throw new HostSimError('INVALID_STATE', 'SEV: Not in correct state');
    const header = strictBase64(packetHeader, 'packet-header');
    const data = strictBase64(secret, 'secret');
    let at = gpa;
    if (at === undefined) {
      const area = this.secretArea();
      if (!area) throw new HostSimError('BAD_ARGUMENT', 'SEV: no secret area found in OVMF, gpa must be specified.');
      at = area.base;
    }
    try {
      this.sp.launchSecret(this.handle, header, data);
    } catch (e) {
      if (e instanceof FirmwareError) throw new HostSimError('INJECT_FAILED', `SEV: failed to inject secret ${firmwareErrorText(e)}`, e.status);
      throw e;
    }
    this.injectedAt = at;
  }

  /** `cont`: the first resume finishes the launch (LAUNCH_FINISH) and the guest boots. */
  resume(): void {
    if (this.run === 'running') return;
    if (this.run !== 'prelaunch' && this.run !== 'paused') throw new HostSimError('INVALID_STATE', `guest ${this.name} is ${this.run}, it cannot be resumed`);
    if (this.sev === 'launch-secret') {
      this.sp.launchFinish(this.handle);
      this.sev = 'running';
    }
    this.run = 'running';
  }

  /** `stop` */
  pause(): void {
    if (this.run === 'running') this.run = 'paused';
    else if (this.run !== 'paused' && this.run !== 'prelaunch')
      throw new HostSimError('INVALID_STATE', `guest ${this.name} is ${this.run}, it cannot be paused`);
  }

  /** Power off and decommission: the firmware forgets the guest's keys. Idempotent. */
  destroy(): void {
    if (this.handle) this.sp.decommission(this.handle);
    this.handle = 0;
    this.run = 'shutdown';
  }

  /** What the booted guest reads from its secret page (the efi_secret driver's view). */
  guestSecrets(): SecretTableEntry[] {
    if (this.run !== 'running' && this.run !== 'paused') throw new HostSimError('INVALID_STATE', `guest ${this.name} has not booted`);
    const area = this.secretArea();
    if (this.injectedAt === undefined || !area || this.injectedAt !== area.base) return [];
    return this.sp.guestSecrets(this.handle);
  }

  /** The files efi_secret would create: one per secret, named by its GUID. */
  efiSecretFiles(): { path: string; data: Buffer }[] {
    return this.guestSecrets().map((e) => ({ path: `${EFI_SECRET_DIR}/${e.guid}`, data: e.data }));
  }

  private secretArea() {
    try {
      const area = sevSecretArea(parseOvmfFooterTable(this.config.firmware));
      return area.base === 0 ? undefined : area;
    } catch (e) {
      if (isSevError(e)) return undefined;
      throw e;
    }
  }

  /** What QEMU would refuse at start-up is refused here too, before LAUNCH_START, as QEMU exits before running. */
  private measuredPieces(): MeasuredPiece[] {
    const c = this.config;
    if (c.cbitpos !== undefined && c.cbitpos !== SIM_HOST_CBITPOS) {
      throw new HostSimError('BAD_CONFIG', `sev-guest: cbitpos check failed, host '${SIM_HOST_CBITPOS}' requested '${c.cbitpos}'`);
    }
    if (c.reducedPhysBits !== undefined && c.reducedPhysBits !== SIM_HOST_REDUCED_PHYS_BITS) {
      throw new HostSimError('BAD_CONFIG', `sev-guest: reduced-phys-bits should be ${SIM_HOST_REDUCED_PHYS_BITS}, requested '${c.reducedPhysBits}'`);
    }
    const es = (c.policy & PolicyFlag.ES) !== 0;
    const kernelHashes = c.kernelHashes && c.kernel ? { kernel: c.kernel.kernel, initrd: c.kernel.initrd, cmdline: c.kernel.cmdline } : undefined;
    try {
      return es
        ? launchMeasuredData({ mode: 'seves', firmware: c.firmware, kernelHashes, vcpus: c.vcpus ?? 1, vcpu: c.vcpu, fpu: c.fpu ?? 'legacy' })
        : launchMeasuredData({ mode: 'sev', firmware: c.firmware, kernelHashes });
    } catch (e) {
      if (isSevError(e)) throw new HostSimError('BAD_CONFIG', `sev-guest: ${e.message}`);
      throw e;
    }
  }
}

function strictBase64(s: unknown, what: string): Buffer {
  if (typeof s !== 'string' || s.length === 0 || s.length % 4 !== 0 || !/^[A-Za-z0-9+/]*={0,2}$/.test(s)) {
    throw new HostSimError('BAD_ARGUMENT', `SEV: failed to decode ${what}: not base64`);
  }
  return Buffer.from(s, 'base64');
}
