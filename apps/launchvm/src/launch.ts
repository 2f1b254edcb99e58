import { describePolicy, PolicyFlag } from '@kb/sev';
import type { keybroker } from '@kb/grpc-api';
import type { HypervisorBackend, LaunchInfo } from './backends/backend';
import { BrokerClient, type BrokerOptions } from './broker-client';
import { expectedDigest, type DigestOptions } from './domain/digest';
import { readDomainFiles } from './domain/files';
import { parseDomainDocument, readSevDomain, withLaunchSession } from './domain/sev-domain';
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
}

const STEPS = 9;
const b64 = /^[A-Za-z0-9+/]*={0,2}$/;

function decodeB64(what: string, s: unknown, failure: LaunchError['failure'], exact?: number): Buffer {
  if (typeof s !== 'string' || s.length === 0 || s.length % 4 !== 0 || !b64.test(s)) throw new LaunchError(failure, `${what} is not base64`);
  const b = Buffer.from(s, 'base64');
  if (exact !== undefined && b.length !== exact) throw new LaunchError(failure, `${what} is ${b.length} bytes, not ${exact}`);
  return b;
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
  const broker = new BrokerClient(req.broker);
  let touched = false;
  let name = '(unnamed)';
  try {
    const { doc, domain, digest } = await steps.run(
      'digest',
      'CONFIG',
      () => {
        const doc = parseDomainDocument(req.xml);
        const domain = readSevDomain(doc);
        name = domain.name; // failures reading its files below already name the domain
        if (req.digest) return { doc, domain, digest: { digest: req.digest, summary: 'given with --digest' } };
        return { doc, domain, digest: expectedDigest(domain, readDomainFiles(domain, req.xmlDir), req.digestOptions) };
      },
      ({ digest: d }) => `${d.digest.toString('hex')} (${d.summary})`,
    );
    name = domain.name;
    const es = (domain.policy & PolicyFlag.ES) !== 0;
    io.out(`launchvm: '${name}', ${es ? 'SEV-ES' : 'SEV'} policy ${hex(domain.policy)} (${describePolicy(domain.policy).join(' ') || 'debug allowed'}), ${backend.description}, broker ${req.broker.address}`);

    const bundle = await steps.run(
      'bundle',
      'BUNDLE_REFUSED',
      async () => {
        const chain = req.certChain ?? backend.hostCertChain?.();
        if (!chain) throw new LaunchError('CONFIG', 'the host certificate chain is needed: --cert-chain FILE (as `sevctl export --full` writes it)');
        const res = await broker.getBundle({ CertificateChain: chain.toString('base64'), Policy: domain.policy });
        decodeB64('GuestOwnerPublicKey', res.GuestOwnerPublicKey, 'BUNDLE_REFUSED');
        decodeB64('LaunchBlob', res.LaunchBlob, 'BUNDLE_REFUSED');
        if (!res.LaunchId) throw new LaunchError('BUNDLE_REFUSED', 'the broker returned no LaunchId');
        return res;
      },
      (res) => `launch id ${res.LaunchId}`,
    );

    const { launchXml, launchDomain } = await steps.run(
      'session',
      'CONFIG',
      () => {
        const launchXml = withLaunchSession(doc, bundle.GuestOwnerPublicKey, bundle.LaunchBlob);
        return { launchXml, launchDomain: readSevDomain(parseDomainDocument(launchXml)) };
      },
      () => '<dhCert> and <session> set in <launchSecurity>',
    );

    touched = true;
    await steps.run('define', 'HYPERVISOR', () => backend.define(launchDomain, launchXml), (s) => s);
    await steps.run('start', 'HYPERVISOR', () => backend.start(), (s) => s);

    const info = await steps.run(
      'measure',
      'MEASUREMENT',
      async (): Promise<LaunchInfo> => {
        const i = await backend.launchInfo();
        decodeB64('the launch measurement', i.measurement, 'MEASUREMENT', 48);
        if (i.policy !== domain.policy) {
          throw new LaunchError('MEASUREMENT', `the hypervisor reports policy ${hex(i.policy)}, but the domain and the bundle say ${hex(domain.policy)}`);
        }
        return i;
      },
      (i) => `API ${i.apiMajor}.${i.apiMinor} build ${i.buildId}, policy ${hex(i.policy)}, measurement ${short(Buffer.from(i.measurement, 'base64'))}`,
    );

    const secret = await steps.run(
      'secret',
      'SECRET_REFUSED',
      async () => {
        const res = await broker.getSecret({
          LaunchMeasurement: info.measurement,
          LaunchId: bundle.LaunchId,
          Policy: domain.policy,
          ApiMajor: info.apiMajor,
          ApiMinor: info.apiMinor,
          BuildId: info.buildId,
          FwDigest: digest.digest.toString('base64'),
          LaunchDescription: req.description ?? `launchvm ${name}`,
          SecretRequests: req.secrets,
        });
        const header = decodeB64('LaunchSecretHeader', res.LaunchSecretHeader, 'SECRET_REFUSED', 52);
        const data = decodeB64('LaunchSecretData', res.LaunchSecretData, 'SECRET_REFUSED');
        return { header: res.LaunchSecretHeader, data: res.LaunchSecretData, sizes: [header.length, data.length] as const };
      },
      (s) => `${req.secrets.length} secret${req.secrets.length === 1 ? '' : 's'} released (header ${s.sizes[0]} B, encrypted table ${s.sizes[1]} B)`,
    );

    await steps.run('inject', 'INJECT', () => backend.inject({ header: secret.header, data: secret.data }), (s) => s);
    await steps.run('resume', 'RESUME', () => backend.resume(), (s) => s);

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
    broker.close();
    await backend.close().catch(() => undefined);
  }
}
