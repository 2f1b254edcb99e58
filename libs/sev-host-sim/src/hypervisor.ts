import { assertPolicyRange, isSevError, MAX_VCPUS } from '@kb/sev';
import { platformChain, SimulatedSecureProcessor, type SimulatedPlatform } from '@kb/sev-sim';
import { HostSimError } from './errors';
import { SIM_HOST_CBITPOS, SIM_HOST_REDUCED_PHYS_BITS, type SevGuestConfig } from './guest-config';
import { SimulatedVm } from './vm';

/** `query-sev-capabilities` (QEMU SevCapability), with JavaScript field names. */
export interface SevCapabilities {
  pdh: string;
  certChain: string;
  cbitpos: number;
  reducedPhysBits: number;
}

/**
 * A simulated SEV host: one simulated Secure Processor shared by its guests, as on a real machine. Its platform
 * root is synthetic, so brokers accept its certificate chain only when told to trust that root explicitly.
 */
export class SimulatedHypervisor {
  readonly sp: SimulatedSecureProcessor;
  private readonly vms = new Set<SimulatedVm>();

  constructor(readonly platform: SimulatedPlatform) {
    this.sp = new SimulatedSecureProcessor(platform);
  }

  /** PDH‖PEK‖OCA‖CEK‖ASK‖ARK: what `sevctl export --full` writes on this host. */
  certChain(): Buffer {
    return platformChain(this.platform);
  }

  capabilities(): SevCapabilities {
    return {
      pdh: this.platform.pdh.raw.toString('base64'),
      // SEV_PDH_CERT_EXPORT's chain buffer: PEK‖OCA‖CEK (the PDH is returned on its own)
      certChain: Buffer.concat([this.platform.pek.raw, this.platform.oca.raw, this.platform.cek.raw]).toString('base64'),
      cbitpos: SIM_HOST_CBITPOS,
      reducedPhysBits: SIM_HOST_REDUCED_PHYS_BITS,
    };
  }

  /** A guest from launch inputs, not started yet: `start({ paused: true })` is QEMU with `-S`. */
  createVm(config: SevGuestConfig): SimulatedVm {
    try {
      assertPolicyRange(config.policy);
    } catch (e) {
      if (isSevError(e)) throw new HostSimError('BAD_CONFIG', `sev-guest: ${e.message}`);
      throw e;
    }
    const vcpus = config.vcpus ?? 1;
    if (!Number.isSafeInteger(vcpus) || vcpus < 1 || vcpus > MAX_VCPUS) throw new HostSimError('BAD_CONFIG', `invalid vCPU count ${vcpus}`);
    if (!(config.firmware instanceof Uint8Array) || config.firmware.length === 0) throw new HostSimError('BAD_CONFIG', 'no firmware image');
    if (config.firmware.length % 16 !== 0) throw new HostSimError('BAD_CONFIG', `firmware image of ${config.firmware.length} bytes is not a multiple of 16`);
    if (!config.godhCert?.length || !config.session?.length) throw new HostSimError('BAD_CONFIG', 'sev-guest: dh-cert-file and session-file are required');
    const vm = new SimulatedVm(this.sp, { ...config, vcpus });
    this.vms.add(vm);
    return vm;
  }

  guests(): SimulatedVm[] {
    return [...this.vms].filter((vm) => vm.runState !== 'shutdown');
  }
}
