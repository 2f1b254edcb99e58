import type { keybroker } from '@kb/grpc-api';
import type { LaunchInfo } from '../backends/backend';
import { BrokerClient, type BrokerOptions } from '../broker-client';
import { expectedDigest, type DigestOptions } from '../domain/digest';
import { readDomainFiles } from '../domain/files';
import type { SevDomain } from '../domain/sev-domain';
import { LaunchError } from '../errors';
import type { Expectation, HostFacts, LaunchBroker, OpenedSession, ReleasedSecret } from './launch-broker';

export interface GrpcLaunchOptions {
  broker: BrokerOptions;
  secrets: keybroker.RequestDetails[];
  /** the expected launch digest, when given instead of computed */
  digest?: Buffer;
  digestOptions: DigestOptions;
  description?: string;
}

/** LaunchVM.py's broker side: the owner's expected digest computed here, GetBundle, GetSecret for the named secrets. */
export class GrpcLaunchBroker implements LaunchBroker {
  readonly description: string;
  readonly steps = { expect: 'digest', open: 'bundle', release: 'secret' };
  private readonly client: BrokerClient;

  constructor(private readonly opts: GrpcLaunchOptions) {
    this.client = new BrokerClient(opts.broker);
    this.description = `broker ${opts.broker.address}`;
  }

  expect(domain: SevDomain, xmlDir: string): Expectation {
    if (this.opts.digest) return { bytes: this.opts.digest, summary: `${this.opts.digest.toString('hex')} (given with --digest)` };
    const d = expectedDigest(domain, readDomainFiles(domain, xmlDir), this.opts.digestOptions);
    return { bytes: d.digest, summary: `${d.digest.toString('hex')} (${d.summary})` };
  }

  async open(domain: SevDomain, host: HostFacts): Promise<OpenedSession> {
    const res = await this.client.getBundle({ CertificateChain: host.certChain.toString('base64'), Policy: domain.policy });
    if (!res.LaunchId) throw new LaunchError('BUNDLE_REFUSED', 'the broker returned no LaunchId');
    return { godh: res.GuestOwnerPublicKey, session: res.LaunchBlob, launchId: res.LaunchId, policy: domain.policy };
  }

  async release(opened: OpenedSession, info: LaunchInfo, expected: Expectation, domain: SevDomain): Promise<ReleasedSecret> {
    const res = await this.client.getSecret({
      LaunchMeasurement: info.measurement,
      LaunchId: opened.launchId,
      Policy: opened.policy,
      ApiMajor: info.apiMajor,
      ApiMinor: info.apiMinor,
      BuildId: info.buildId,
      FwDigest: expected.bytes.toString('base64'),
      LaunchDescription: this.opts.description ?? `launchvm ${domain.name}`,
      SecretRequests: this.opts.secrets,
    });
    return { header: res.LaunchSecretHeader, data: res.LaunchSecretData, count: this.opts.secrets.length };
  }

  close(): void {
    this.client.close();
  }
}
