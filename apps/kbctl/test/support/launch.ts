import { createHash, randomBytes } from 'node:crypto';
import { credentials, type ServiceError } from '@grpc/grpc-js';
import { keybroker } from '@kb/grpc-api';
import { PolicyFlag } from '@kb/sev';
import { platformChain, SimulatedSecureProcessor, type SimulatedPlatform } from '@kb/sev-sim';

/**
 * Just enough of a SEV host to show that what kbctl stores reaches a guest: the keybroker calls a kata shim makes
 * and the firmware side from the simulated Secure Processor.
 */
export const FIRMWARE = randomBytes(16 * 1024);
const VMSA = randomBytes(4096);

export function expectedDigest(policy: number): Buffer {
  const h = createHash('sha256').update(FIRMWARE);
  if (policy & PolicyFlag.ES) h.update(VMSA);
  return h.digest();
}

export class HostClient {
  private readonly c: keybroker.KeyBrokerServiceClient;
  constructor(address: string) {
    this.c = new keybroker.KeyBrokerServiceClient(address, credentials.createInsecure());
  }
  private call<Req, Res>(m: 'getBundle' | 'getSecret' | 'getOnlineSecret', req: Req): Promise<Res> {
    return new Promise((resolve, reject) =>
      (this.c[m] as Function).call(this.c, req, (err: ServiceError | null, res: Res) => (err ? reject(err) : resolve(res))),
    );
  }
  getBundle = (r: keybroker.BundleRequest) => this.call<keybroker.BundleRequest, keybroker.BundleResponse>('getBundle', r);
  getSecret = (r: keybroker.SecretRequest) => this.call<keybroker.SecretRequest, keybroker.SecretResponse>('getSecret', r);
  getOnlineSecret = (r: keybroker.OnlineSecretRequest) => this.call<keybroker.OnlineSecretRequest, keybroker.OnlineSecretResponse>('getOnlineSecret', r);
  close(): void {
    this.c.close();
  }
}

export async function simulatedLaunch(
  host: HostClient,
  platform: SimulatedPlatform,
  o: { policy: number; requests: keybroker.RequestDetails[]; description?: string },
) {
  const sp = new SimulatedSecureProcessor(platform);
  const bundle = await host.getBundle({ CertificateChain: platformChain(platform).toString('base64'), Policy: o.policy });
  const handle = sp.launchStart({
    policy: o.policy,
    godhCert: Buffer.from(bundle.GuestOwnerPublicKey, 'base64'),
    launchBlob: Buffer.from(bundle.LaunchBlob, 'base64'),
  });
  sp.launchUpdateData(handle, FIRMWARE);
  if (o.policy & PolicyFlag.ES) sp.launchUpdateVmsa(handle, VMSA);
  const fw = platform.firmware;
  const res = await host.getSecret({
    LaunchMeasurement: sp.launchMeasure(handle).toString('base64'),
    LaunchId: bundle.LaunchId,
    Policy: o.policy,
    ApiMajor: fw.apiMajor,
    ApiMinor: fw.apiMinor,
    BuildId: fw.build,
    FwDigest: expectedDigest(o.policy).toString('base64'),
    LaunchDescription: o.description ?? 'kbctl test',
    SecretRequests: o.requests,
  });
  sp.launchSecret(handle, Buffer.from(res.LaunchSecretHeader, 'base64'), Buffer.from(res.LaunchSecretData, 'base64'));
  sp.launchFinish(handle);
  return { bundle, secrets: sp.guestSecrets(handle) };
}
