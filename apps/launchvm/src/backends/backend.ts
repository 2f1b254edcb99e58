import type { CpuId } from '../brokers/launch-broker';
import type { SevDomain } from '../domain/sev-domain';

/** What the hypervisor reports about a paused SEV launch (libvirt domlaunchsecinfo, QMP query-sev + measure). */
export interface LaunchInfo {
  /** base64 of MEASURE ‖ MNONCE (48 bytes) */
  measurement: string;
  apiMajor: number;
  apiMinor: number;
  buildId: number;
  policy: number;
}

/** The launch secret as GetSecret returns it: both base64, handed to the hypervisor unchanged. */
export interface LaunchSecret {
  header: string;
  data: string;
}

/**
 * One way of running a guest: libvirt through virsh, QEMU over QMP, or the in-process simulated host. The launch
 * flow calls these in order; `cleanup` is called after any failure and must undo whatever got done, so no paused
 * guest with a half-done launch and no stale definition is left behind.
 */
export interface HypervisorBackend {
  /** e.g. "libvirt qemu:///system" */
  readonly description: string;
  /** The host certificate chain (`sevctl export --full`), when the backend knows it itself (the simulator). */
  hostCertChain?(): Buffer;
  /** The host CPU, when the backend knows it itself (the simulator, libvirt's capabilities); else /proc/cpuinfo. */
  hostCpuId?(): CpuId | undefined | Promise<CpuId | undefined>;
  /** Create the guest from the domain XML that now carries <dhCert> and <session>; nothing runs yet. */
  define(domain: SevDomain, xml: string): Promise<string>;
  /** Start it paused: LAUNCH_START … LAUNCH_MEASURE happen here; no guest instruction runs. */
  start(): Promise<string>;
  launchInfo(): Promise<LaunchInfo>;
  inject(secret: LaunchSecret): Promise<string>;
  resume(): Promise<string>;
  /** After a failure: destroy a started guest, remove a defined one. Lines describe what was done. */
  cleanup(): Promise<string[]>;
  /** After success: where the guest now lives. */
  summary(): string[];
  /** Release what the launch process itself holds (connections, temp files); the guest keeps running. */
  close(): Promise<void>;
}
