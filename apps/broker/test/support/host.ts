import { createHash, randomBytes } from 'node:crypto';
import type { keybroker } from '@kb/grpc-api';
import { PolicyFlag } from '@kb/sev';
import { SimulatedSecureProcessor, platformChain, type SimulatedPlatform } from '@kb/sev-sim';
import type { HostClient } from './grpc';

/** The firmware image every simulated launch measures (contents are irrelevant; only its digest is). */
export const FIRMWARE = randomBytes(32 * 1024);
export const VMSA = randomBytes(4096);

export function expectedDigest(policy: number, firmware = FIRMWARE): Buffer {
  const h = createHash('sha256').update(firmware);
  if (policy & PolicyFlag.ES) h.update(VMSA);
  return h.digest();
}

export interface LaunchOptions {
  policy: number;
  requests: keybroker.RequestDetails[];
  /** what the host claims in GetSecret (defaults: the truth) */
  claim?: Partial<Pick<keybroker.SecretRequest, 'Policy' | 'ApiMajor' | 'ApiMinor' | 'BuildId' | 'FwDigest' | 'LaunchMeasurement' | 'LaunchId'>>;
  /** firmware actually loaded (defaults to FIRMWARE) */
  firmware?: Buffer;
  /** policy the host really launches with (defaults to the bundle policy; differs in the binding attack) */
  launchPolicy?: number;
}

/**
 * A simulated SEV host doing what the kata shim / LaunchVM.py do up to GetSecret: GetBundle, LAUNCH_START with the
 * blob, LAUNCH_UPDATE, LAUNCH_MEASURE — returning the GetSecret request it would send (not sent).
 */
export async function prepareLaunch(client: HostClient, platform: SimulatedPlatform, o: LaunchOptions) {
  const sp = new SimulatedSecureProcessor(platform);
  const bundle = await client.getBundle({ CertificateChain: platformChain(platform).toString('base64'), Policy: o.policy });
  const launchPolicy = o.launchPolicy ?? o.policy;
  const handle = sp.launchStart({
    policy: launchPolicy,
    godhCert: Buffer.from(bundle.GuestOwnerPublicKey, 'base64'),
    launchBlob: Buffer.from(bundle.LaunchBlob, 'base64'),
  });
  sp.launchUpdateData(handle, o.firmware ?? FIRMWARE);
  if (launchPolicy & PolicyFlag.ES) sp.launchUpdateVmsa(handle, VMSA);
  const measurement = sp.launchMeasure(handle);
  const fw = platform.firmware;
  const request: keybroker.SecretRequest = {
    LaunchMeasurement: measurement.toString('base64'),
    LaunchId: bundle.LaunchId,
    Policy: launchPolicy,
    ApiMajor: fw.apiMajor,
    ApiMinor: fw.apiMinor,
    BuildId: fw.build,
    FwDigest: expectedDigest(launchPolicy).toString('base64'),
    LaunchDescription: 'test launch',
    SecretRequests: o.requests,
    ...o.claim,
  };
  return { bundle, request, sp, handle };
}

/** The whole launch: prepareLaunch, GetSecret, LAUNCH_SECRET, resume — returning what the guest then reads. */
export async function simulatedLaunch(client: HostClient, platform: SimulatedPlatform, o: LaunchOptions) {
  const { bundle, request, sp, handle } = await prepareLaunch(client, platform, o);
  const secret = await client.getSecret(request);
  sp.launchSecret(handle, Buffer.from(secret.LaunchSecretHeader, 'base64'), Buffer.from(secret.LaunchSecretData, 'base64'));
  sp.launchFinish(handle);
  return { bundle, secrets: sp.guestSecrets(handle), sp, handle };
}
