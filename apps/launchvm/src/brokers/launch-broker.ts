import type { LaunchInfo, LaunchSecret } from '../backends/backend';
import type { SevDomain } from '../domain/sev-domain';

/** The host facts a launch session is opened with. */
export interface HostFacts {
  /** `sevctl export --full`: PDH|PEK|OCA|CEK|ASK|ARK */
  certChain: Buffer;
  /** the host CPU (the attestation service limits SEV-ES VMSAs to the models the owner allows) */
  cpuId?: CpuId;
}

export interface CpuId {
  family: number;
  model: number;
  stepping: number;
}

/** What step 1 established: the expected launch digest (gRPC) or the firmware hash (attestation service). */
export interface Expectation {
  bytes: Buffer;
  summary: string;
}

/** A launch session the broker opened: the values <dhCert>/<session> take, and what the secret call needs back. */
export interface OpenedSession {
  godh: string;
  session: string;
  launchId: string;
  /** the guest policy the session was made for */
  policy: number;
}

export interface ReleasedSecret extends LaunchSecret {
  /** how many secrets the table holds, when the client knows it */
  count?: number;
}

/**
 * The broker side of a launch, as launch.ts drives it. Two implementations: the keybroker gRPC API (GetBundle /
 * GetSecret, LaunchVM.py's flow, secrets named on the command line) and the attestation service's REST API
 * (/launch, /validate: the domain XML's <attestation> names the registered VM, the service decides the rest).
 */
export interface LaunchBroker {
  /** e.g. "broker 127.0.0.1:44444" */
  readonly description: string;
  /** the names of the three broker-side steps in the timed output */
  readonly steps: { expect: string; open: string; release: string };
  /** step 1: what the host reports as the firmware/launch digest in the release call */
  expect(domain: SevDomain, xmlDir: string): Expectation;
  open(domain: SevDomain, host: HostFacts): Promise<OpenedSession>;
  release(opened: OpenedSession, info: LaunchInfo, expected: Expectation, domain: SevDomain): Promise<ReleasedSecret>;
  close(): void;
}
