import { credentials, Metadata, type ServiceError } from '@grpc/grpc-js';
import { admin, keybroker } from '@kb/grpc-api';

/** Promise wrappers over the generated clients, as a host (keybroker) and an owner (admin) would call them. */
export class HostClient {
  readonly raw: keybroker.KeyBrokerServiceClient;
  constructor(address: string) {
    this.raw = new keybroker.KeyBrokerServiceClient(address, credentials.createInsecure());
  }
  getBundle(req: keybroker.BundleRequest): Promise<keybroker.BundleResponse> {
    return call(this.raw, 'getBundle', req);
  }
  getSecret(req: keybroker.SecretRequest): Promise<keybroker.SecretResponse> {
    return call(this.raw, 'getSecret', req);
  }
  getOnlineSecret(req: keybroker.OnlineSecretRequest): Promise<keybroker.OnlineSecretResponse> {
    return call(this.raw, 'getOnlineSecret', req);
  }
  close(): void {
    this.raw.close();
  }
}

export class OwnerClient {
  readonly raw: admin.BrokerAdminClient;
  private readonly md = new Metadata();
  constructor(address: string, token: string) {
    this.raw = new admin.BrokerAdminClient(address, credentials.createInsecure());
    this.md.set('authorization', `Bearer ${token}`);
  }
  call<Res = unknown>(method: string, req: unknown): Promise<Res> {
    return call(this.raw, method, req, this.md);
  }
  close(): void {
    this.raw.close();
  }
}

function call<Res>(client: object, method: string, req: unknown, md = new Metadata()): Promise<Res> {
  const fn = (client as Record<string, Function>)[method]!;
  return new Promise((resolve, reject) => {
    fn.call(client, req, md, { deadline: Date.now() + 30_000 }, (err: ServiceError | null, res: Res) => (err ? reject(err) : resolve(res)));
  });
}

/** Resolves to the grpc error of a call expected to fail. */
export async function failure(p: Promise<unknown>): Promise<ServiceError> {
  try {
    await p;
  } catch (e) {
    return e as ServiceError;
  }
  throw new Error('expected the call to fail');
}
