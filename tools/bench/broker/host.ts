/** A minimal simulated host: its gRPC channel, and the launch steps around the simulated Secure Processor. */
import { credentials, Metadata, type ServiceError } from '@grpc/grpc-js';
import { keybroker } from '@kb/grpc-api';
import { SimulatedSecureProcessor } from '@kb/sev-sim';
import { CALL_DEADLINE_MS, DIGEST, HOST_LAUNCH, POLICY, SECRET_GUID, SECRET_ID } from './constants';
import { spFinish, spStart } from '../host-sp';

/** One simulated host: its own gRPC channel and connection (no subchannel sharing between hosts). */
export class Host {
  private readonly client: keybroker.KeyBrokerServiceClient;
  constructor(address: string) {
    this.client = new keybroker.KeyBrokerServiceClient(address, credentials.createInsecure(), { 'grpc.use_local_subchannel_pool': 1 });
  }
  getBundle(req: keybroker.BundleRequest): Promise<keybroker.BundleResponse> {
    return new Promise((resolve, reject) =>
      this.client.getBundle(req, new Metadata(), { deadline: Date.now() + CALL_DEADLINE_MS }, (err: ServiceError | null, res?: keybroker.BundleResponse) =>
        err || !res ? reject(err ?? new Error('GetBundle: empty response')) : resolve(res),
      ),
    );
  }
  getSecret(req: keybroker.SecretRequest): Promise<keybroker.SecretResponse> {
    return new Promise((resolve, reject) =>
      this.client.getSecret(req, new Metadata(), { deadline: Date.now() + CALL_DEADLINE_MS }, (err: ServiceError | null, res?: keybroker.SecretResponse) =>
        err || !res ? reject(err ?? new Error('GetSecret: empty response')) : resolve(res),
      ),
    );
  }
  close(): void {
    this.client.close();
  }
}

export interface Prepared {
  handle: number;
  request: keybroker.SecretRequest;
  response?: keybroker.SecretResponse;
}

/** The host up to GetSecret: GetBundle, then LAUNCH_START / LAUNCH_UPDATE_DATA / LAUNCH_MEASURE on the simulated SP. */
export async function prepareLaunch(host: Host, sp: SimulatedSecureProcessor, bundleRequest: keybroker.BundleRequest): Promise<Prepared> {
  return launchUpToSecret(sp, await host.getBundle(bundleRequest));
}

/** LAUNCH_START / LAUNCH_UPDATE_DATA / LAUNCH_MEASURE with a bundle, and the GetSecret request the host would send. */
export function launchUpToSecret(sp: SimulatedSecureProcessor, bundle: keybroker.BundleResponse): Prepared {
  const { handle, measurement, firmware } = spStart(sp, HOST_LAUNCH, b64(bundle.GuestOwnerPublicKey), b64(bundle.LaunchBlob));
  return { handle, request: secretRequest(bundle, measurement, firmware) };
}

/** The GetSecret request of a host whose SP measured `measurement` after GetBundle gave it `bundle`. */
export function secretRequest(
  bundle: keybroker.BundleResponse,
  measurement: Buffer,
  fw: { apiMajor: number; apiMinor: number; build: number },
): keybroker.SecretRequest {
  return {
    LaunchMeasurement: measurement.toString('base64'),
    LaunchId: bundle.LaunchId,
    Policy: POLICY,
    ApiMajor: fw.apiMajor,
    ApiMinor: fw.apiMinor,
    BuildId: fw.build,
    FwDigest: DIGEST.toString('base64'),
    LaunchDescription: 'bench',
    SecretRequests: [{ Guid: SECRET_GUID, Format: 'binary', SecretType: 'key', Id: SECRET_ID }],
  };
}

/** LAUNCH_SECRET + LAUNCH_FINISH, then checks that the guest reads the secret; frees the simulated guest. */
export function finishLaunch(sp: SimulatedSecureProcessor, p: Prepared, res: keybroker.SecretResponse): void {
  spFinish(sp, HOST_LAUNCH, p.handle, b64(res.LaunchSecretHeader), b64(res.LaunchSecretData));
}

export function b64(s: string): Buffer {
  return Buffer.from(s, 'base64');
}
