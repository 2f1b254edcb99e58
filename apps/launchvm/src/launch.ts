import { describePolicy, PolicyFlag } from '@kb/sev';
import type { keybroker } from '@kb/grpc-api';
import type { HypervisorBackend, LaunchInfo } from './backends/backend';
import type { BrokerOptions } from './broker-client';
import { AttestationLaunchBroker } from './brokers/attestation';
import { GrpcLaunchBroker } from './brokers/grpc';
import type { LaunchBroker } from './brokers/launch-broker';
import type { DigestOptions } from './domain/digest';
import { localCpuId } from './domain/host-cpu';
import { parseDomainDocument, readSevDomain, withLaunchSession, type SevDomain } from './domain/sev-domain';
import { LaunchError } from './errors';
import { ExitCode, EXIT_CODE_HELP } from './exit-codes';
import { StepFailure, StepRunner, type Output } from './steps';

export interface LaunchRequest {
  xml: string;
  /** relative paths in the XML are taken from here */
  xmlDir: string;
  broker: BrokerOptions;
  /** `sevctl export --full` file contents; the simulated backend supplies its own when absent */
  certChain?: Buffer;
  secrets: keybroker.RequestDetails[];
  /** the expected launch digest, when given instead of computed */
  digest?: Buffer;
  digestOptions: DigestOptions;
  description?: string;
  /** for a domain with <attestation>: the service's CA (https with a private CA); the timeout is broker.timeoutSeconds */
  attestationCaFile?: string;
}

/**
 * The broker side for this domain: its <attestation> service when it names one (then nothing on the command line may
 * name secrets or digests: the registration decides them), else the keybroker gRPC API.
 */
function brokerFor(req: LaunchRequest, domain: SevDomain): LaunchBroker {
  if (!domain.attestation) return new GrpcLaunchBroker(req);
  const given = [
    req.secrets.length > 0 && '--secret',
    req.digest && '--digest',
    req.digestOptions.vcpu && '--cpu-*',
    req.description !== undefined && '--description',
  ].filter(Boolean);
  if (given.length) {
    throw new LaunchError(
      'USAGE',
      `the domain names its attestation service (<attestation service='${domain.attestation.service}'>), which decides the secrets and the expected digest: drop ${given.join(', ')}`,
    );
  }
  return new AttestationLaunchBroker(domain.attestation, { caFile: req.attestationCaFile, timeoutSeconds: req.broker.timeoutSeconds });
}

const STEPS = 9;
const b64 = /^[A-Za-z0-9+/]*={0,2}$/;

function decodeB64(what: string, s: unknown, failure: LaunchError['failure'], exact?: number): Buffer {
  if (typeof s !== 'string' || s.length === 0 || s.length % 4 !== 0 || !b64.test(s)) throw new LaunchError(failure, `${what} is not base64`);
  const b = Buffer.from(s, 'base64');
  if (exact !== undefined && b.length !== exact) throw new LaunchError(failure, `${what} is ${b.length} bytes, not ${exact}`);
  return b;
}

/** Step 1's name, known before the domain is read: what it will be for the domain (the <attestation> check is cheap). */
function peekStep(req: LaunchRequest): string {
  try {
    return readSevDomain(parseDomainDocument(req.xml)).attestation ? 'firmware' : 'digest';
  } catch {
    return 'digest';
  }
}

const hex = (n: number) => `0x${n.toString(16)}`;
const short = (b: Buffer) => `${b.toString('hex').slice(0, 16)}…`;

/**
 * The launch, LaunchVM.py's order: expected digest, GetBundle, <dhCert>/<session> into the XML, define, start
 * paused, read the measurement, GetSecret, inject, resume. Returns the exit code. Once anything was defined or
 * started, any failure (or a signal) destroys it before returning: a paused guest with a half-done launch is
 * never left behind.
 */
export async function launch(req: LaunchRequest, backend: HypervisorBackend, io: Output, signal?: AbortSignal): Promise<number> {
  const steps = new StepRunner(STEPS, io, signal);
  let broker: LaunchBroker | undefined;
  let touched = false;
  let name = '(unnamed)';
  try {
    const doc = await steps.run(
      peekStep(req),
      'CONFIG',
      () => {
        const doc = parseDomainDocument(req.xml);
        const domain = readSevDomain(doc);
        name = domain.name; // failures reading its files below already name the domain
        broker = brokerFor(req, domain);
        return { doc, domain, expected: broker.expect(domain, req.xmlDir) };
      },
      ({ expected }) => expected.summary,
    );
    const { domain, expected } = doc;
    const b = broker!;
    name = domain.name;
    const es = (domain.policy & PolicyFlag.ES) !== 0;
    const policyText = domain.policyGiven
      ? `${es ? 'SEV-ES' : 'SEV'} policy ${hex(domain.policy)} (${describePolicy(domain.policy).join(' ') || 'debug allowed'})`
      : 'policy from the registration';
    io.out(`launchvm: '${name}', ${policyText}, ${backend.description}, ${b.description}`);

    const bundle = await steps.run(
      b.steps.open,
      'BUNDLE_REFUSED',
      async () => {
        const chain = req.certChain ?? backend.hostCertChain?.();
        if (!chain) throw new LaunchError('CONFIG', 'the host certificate chain is needed: --cert-chain FILE (as `sevctl export --full` writes it)');
        // only the attestation service asks for the CPU (it limits SEV-ES VMSAs to the owner's models)
        const cpuId = domain.attestation ? ((await backend.hostCpuId?.()) ?? localCpuId()) : undefined;
        const res = await b.open(domain, { certChain: chain, cpuId });
        decodeB64('GuestOwnerPublicKey', res.godh, 'BUNDLE_REFUSED');
        decodeB64('LaunchBlob', res.session, 'BUNDLE_REFUSED');
        return res;
      },
      (res) => `launch id ${res.launchId}${domain.policyGiven ? '' : `, policy ${hex(res.policy)}`}`,
    );

    const { launchXml, launchDomain } = await steps.run(
      'session',
      'CONFIG',
      () => {
        const launchXml = withLaunchSession(doc.doc, bundle.godh, bundle.session, domain.attestation ? { policy: bundle.policy } : undefined);
        return { launchXml, launchDomain: readSevDomain(parseDomainDocument(launchXml)) };
      },
      () => `<dhCert> and <session>${domain.attestation ? " (and the session's <policy>)" : ''} set in <launchSecurity>`,
    );

    touched = true;
    await steps.run(
      'define',
      'HYPERVISOR',
      () => backend.define(launchDomain, launchXml),
      (s) => s,
    );
    await steps.run(
      'start',
      'HYPERVISOR',
      () => backend.start(),
      (s) => s,
    );

    const info = await steps.run(
      'measure',
      'MEASUREMENT',
      async (): Promise<LaunchInfo> => {
        const i = await backend.launchInfo();
        decodeB64('the launch measurement', i.measurement, 'MEASUREMENT', 48);
        if (i.policy !== bundle.policy) {
          throw new LaunchError('MEASUREMENT', `the hypervisor reports policy ${hex(i.policy)}, but the domain and the bundle say ${hex(bundle.policy)}`);
        }
        return i;
      },
      (i) => `API ${i.apiMajor}.${i.apiMinor} build ${i.buildId}, policy ${hex(i.policy)}, measurement ${short(Buffer.from(i.measurement, 'base64'))}`,
    );

    const secret = await steps.run(
      b.steps.release,
      'SECRET_REFUSED',
      async () => {
        const res = await b.release(bundle, info, expected, launchDomain);
        const header = decodeB64('the secret header', res.header, 'SECRET_REFUSED', 52);
        const data = decodeB64('the secret table', res.data, 'SECRET_REFUSED');
        return { header: res.header, data: res.data, count: res.count, sizes: [header.length, data.length] as const };
      },
      (s) =>
        `${s.count === undefined ? 'secret table' : `${s.count} secret${s.count === 1 ? '' : 's'}`} released (header ${s.sizes[0]} B, encrypted table ${s.sizes[1]} B)`,
    );

    await steps.run(
      'inject',
      'INJECT',
      () => backend.inject({ header: secret.header, data: secret.data }),
      (s) => s,
    );
    await steps.run(
      'resume',
      'RESUME',
      () => backend.resume(),
      (s) => s,
    );

    io.out(`launchvm: launched '${name}' in ${steps.elapsed()}`);
    for (const line of backend.summary()) io.out(`  ${line}`);
    return ExitCode.OK;
  } catch (e) {
    if (!(e instanceof StepFailure)) throw e;
    let code: number = ExitCode[e.failure];
    let what = EXIT_CODE_HELP[e.failure];
    if (touched) {
      try {
        const done = await backend.cleanup();
        io.err(`launchvm: cleanup: ${done.length ? done.join('; ') : 'nothing was left to undo'}`);
      } catch (c) {
        io.err(`launchvm: CLEANUP FAILED: ${(c as Error).message}`);
        code = ExitCode.CLEANUP;
        what = EXIT_CODE_HELP.CLEANUP;
      }
    }
    io.err(`launchvm: launch of '${name}' failed at step '${e.step}' (exit ${code}: ${what})`);
    return code;
  } finally {
    broker?.close();
    await backend.close().catch(() => undefined);
  }
}
