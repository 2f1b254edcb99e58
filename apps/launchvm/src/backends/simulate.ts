import { isHostSimError, loadOrCreatePlatform, SIM_HOST_CPU_MODEL, SimulatedHypervisor, writeEfiSecretFiles, type SimulatedVm } from '@kb/sev-host-sim';
import { createPlatform, type SimulatedPlatform } from '@kb/sev-sim';
import { readDomainFiles } from '../domain/files';
import { readSevDomain, parseDomainDocument, type SevDomain } from '../domain/sev-domain';
import { LaunchError } from '../errors';
import type { HypervisorBackend, LaunchInfo, LaunchSecret } from './backend';
import { resolveVcpuSignature, type VcpuSpec } from '@kb/sev';
import type { CpuId } from '../brokers/launch-broker';
import { cpuIdFromSignature } from '../domain/host-cpu';

export interface SimulateOptions {
  /** persisted simulated platform (created on first use); an ephemeral one when absent */
  platformDir?: string;
  platform?: SimulatedPlatform;
  /** where the booted guest's efi_secret files are written */
  guestDir?: string;
  xmlDir: string;
}

/**
 * The vCPU the simulated host gives the guest, from the XML only (what the owner believes is the digest's business):
 * a custom model as named, the host's own (Milan-like) for host-passthrough.
 */
function simulatedGuestCpu(d: SevDomain): VcpuSpec | undefined {
  if (d.cpu.mode === 'host-passthrough' || d.cpu.mode === 'maximum') return { type: SIM_HOST_CPU_MODEL };
  return d.cpu.model ? { type: d.cpu.model } : undefined;
}

/**
 * The simulated SEV host in-process, standing in for libvirt: it defines the guest from the same domain XML libvirt
 * would get (so the <dhCert>/<session> edit is exercised), and reports and injects through the same calls.
 */
export class SimulatedBackend implements HypervisorBackend {
  readonly description: string;
  readonly hypervisor: SimulatedHypervisor;
  private vm?: SimulatedVm;
  private secretFiles: string[] = [];

  constructor(private readonly opts: SimulateOptions) {
    const platform = opts.platform ?? (opts.platformDir ? loadOrCreatePlatform(opts.platformDir) : createPlatform({ name: 'sev-sim' }));
    this.hypervisor = new SimulatedHypervisor(platform);
    this.description = `simulated SEV host (synthetic root '${platform.name}', not AMD hardware)`;
  }

  hostCertChain(): Buffer {
    return this.hypervisor.certChain();
  }

  /** The simulated host's CPU (Milan-like, what host-passthrough guests get). */
  hostCpuId(): CpuId {
    return cpuIdFromSignature(resolveVcpuSignature({ type: SIM_HOST_CPU_MODEL }));
  }

  async define(_domain: SevDomain, xml: string): Promise<string> {
    const d = readSevDomain(parseDomainDocument(xml));
    const files = readDomainFiles(d, this.opts.xmlDir);
    this.vm = this.sim('HYPERVISOR', () =>
      this.hypervisor.createVm({
        name: d.name,
        firmware: files.firmware,
        kernel: files.kernel ? { kernel: files.kernel, initrd: files.initrd, cmdline: d.cmdline } : undefined,
        kernelHashes: d.kernelHashes,
        vcpus: d.vcpus,
        vcpu: simulatedGuestCpu(d),
        // what QEMU >= 9.1 does by default (KVM_SEV_ES_INIT): the host decides this, not the owner
        fpu: 'legacy',
        policy: d.policy,
        godhCert: Buffer.from(d.dhCert ?? '', 'base64'),
        session: Buffer.from(d.session ?? '', 'base64'),
        cbitpos: d.cbitpos,
        reducedPhysBits: d.reducedPhysBits,
      }),
    );
    return `guest '${d.name}' defined on the simulated host`;
  }

  async start(): Promise<string> {
    const vm = this.need();
    this.sim('HYPERVISOR', () => vm.start({ paused: true }));
    return `paused (${vm.runState}, SEV state ${vm.sevState})`;
  }

  async launchInfo(): Promise<LaunchInfo> {
    const vm = this.need();
    return this.sim('MEASUREMENT', () => {
      const i = vm.querySev();
      return { measurement: vm.launchMeasurement(), apiMajor: i.apiMajor, apiMinor: i.apiMinor, buildId: i.buildId, policy: i.policy };
    });
  }

  async inject(secret: LaunchSecret): Promise<string> {
    const vm = this.need();
    this.sim('INJECT', () => vm.injectSecret(secret.header, secret.data));
    return 'secret injected (LAUNCH_SECRET)';
  }

  async resume(): Promise<string> {
    const vm = this.need();
    this.sim('RESUME', () => vm.resume());
    if (this.opts.guestDir) this.secretFiles = writeEfiSecretFiles(this.opts.guestDir, vm.efiSecretFiles());
    return 'running (LAUNCH_FINISH)';
  }

  async cleanup(): Promise<string[]> {
    if (!this.vm || this.vm.runState === 'shutdown' || this.vm.runState === 'created') return [];
    this.vm.destroy();
    return [`destroyed simulated guest '${this.vm.name}'`];
  }

  summary(): string[] {
    const vm = this.need();
    const lines = vm.efiSecretFiles().map((f) => `guest reads ${f.path} (${f.data.length} bytes)`);
    if (lines.length === 0) lines.push('the guest found no injected secret');
    if (this.secretFiles.length) lines.push(`the guest's efi_secret files are under ${this.opts.guestDir}`);
    lines.push('the simulated guest ends with this process');
    return lines;
  }

  /** The running guest, for callers that embed launchvm (tests, the demo). */
  guest(): SimulatedVm | undefined {
    return this.vm;
  }

  async close(): Promise<void> {}

  private need(): SimulatedVm {
    if (!this.vm) throw new LaunchError('INTERNAL', 'no simulated guest defined');
    return this.vm;
  }

  private sim<T>(failure: LaunchError['failure'], fn: () => T): T {
    try {
      return fn();
    } catch (e) {
      if (isHostSimError(e)) throw new LaunchError(e.code === 'BAD_CONFIG' ? 'CONFIG' : failure, e.message);
      throw e;
    }
  }
}
