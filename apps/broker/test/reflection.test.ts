import { dirname, join } from 'node:path';
import { credentials, loadPackageDefinition, Metadata, status, type Client, type ClientDuplexStream, type ServiceError } from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import { ADMIN_TOKEN, startTestBroker, testDatabase, type TestBroker } from './support/broker';

/** The reflection client grpcurl is: grpc.reflection.v1 (and v1alpha, which older grpcurl uses) from the protos @grpc/reflection ships. */
type Version = 'v1' | 'v1alpha';
const protoOf = (v: Version) => join(dirname(require.resolve('@grpc/reflection/package.json')), `build/proto/grpc/reflection/${v}/reflection.proto`);
const reflection = loadPackageDefinition(
  loadSync([protoOf('v1'), protoOf('v1alpha')], { keepCase: true, longs: String, enums: String, defaults: true, oneofs: true }),
) as unknown as {
  grpc: { reflection: Record<Version, { ServerReflection: new (address: string, creds: ReturnType<typeof credentials.createInsecure>) => Client }> };
};

interface ReflectionResponse {
  list_services_response?: { service: { name: string }[] };
  file_descriptor_response?: { file_descriptor_proto: Buffer[] };
  error_response?: { error_code: number; error_message: string };
}

/** One ServerReflectionInfo stream carrying one request; resolves to the single answer or the call's error. */
function ask(address: string, request: Record<string, unknown>, md = new Metadata(), version: Version = 'v1'): Promise<ReflectionResponse> {
  const client = new reflection.grpc.reflection[version].ServerReflection(address, credentials.createInsecure());
  const stream = (client as unknown as { ServerReflectionInfo(md: Metadata): ClientDuplexStream<unknown, ReflectionResponse> }).ServerReflectionInfo(md);
  return new Promise<ReflectionResponse>((resolve, reject) => {
    stream.once('data', (r: ReflectionResponse) => {
      resolve(r);
      stream.end();
    });
    stream.once('error', reject);
    stream.write(request);
  }).finally(() => client.close());
}

const list = async (address: string, md?: Metadata) =>
  ((await ask(address, { list_services: '' }, md)).list_services_response?.service ?? []).map((s) => s.name).sort();
const bearer = (token: string) => {
  const md = new Metadata();
  md.set('authorization', `Bearer ${token}`);
  return md;
};

describe('server reflection (what grpcurl list shows)', () => {
  let tb: TestBroker;
  let close: () => Promise<void>;

  beforeAll(async () => {
    const db = await testDatabase('pglite');
    const store = await db.open();
    tb = await startTestBroker(store);
    close = async () => {
      await tb.close();
      await store.close();
    };
  }, 60_000);
  afterAll(() => close?.());

  it('lists the health service beside the key broker on the guest port, without a token', async () => {
    expect(await list(tb.broker.address)).toEqual(['grpc.health.v1.Health', 'keybroker.KeyBrokerService']);
  });

  it('describes grpc.health.v1.Health (what grpcurl describe needs)', async () => {
    const r = await ask(tb.broker.address, { file_containing_symbol: 'grpc.health.v1.Health' });
    expect(r.error_response).toBeUndefined();
    expect(Buffer.concat(r.file_descriptor_response!.file_descriptor_proto).toString('latin1')).toContain('grpc.health.v1');
  });

  it('refuses reflection on the admin port without the token, or with a wrong one', async () => {
    const attempts: [Metadata, Version][] = [
      [new Metadata(), 'v1'],
      [bearer('not-the-admin-token-at-all'), 'v1'],
      [bearer(ADMIN_TOKEN.slice(0, -1)), 'v1'],
      [new Metadata(), 'v1alpha'],
    ];
    for (const [md, version] of attempts) {
      const err = (await ask(tb.broker.adminAddress, { list_services: '' }, md, version).then(
        () => {
          throw new Error('reflection answered without a valid token');
        },
        (e: ServiceError) => e,
      )) as ServiceError;
      expect(err.code).toBe(status.UNAUTHENTICATED);
      expect(err.details).toBe('a valid admin bearer token is required');
    }
  });

  it('serves reflection on the admin port with the token', async () => {
    expect(await list(tb.broker.adminAddress, bearer(ADMIN_TOKEN))).toEqual(['kb.admin.v1.BrokerAdmin']);
    expect(
      ((await ask(tb.broker.adminAddress, { list_services: '' }, bearer(ADMIN_TOKEN), 'v1alpha')).list_services_response?.service ?? []).map((x) => x.name),
    ).toEqual(['kb.admin.v1.BrokerAdmin']);
    const r = await ask(tb.broker.adminAddress, { file_containing_symbol: 'kb.admin.v1.BrokerAdmin' }, bearer(ADMIN_TOKEN));
    expect(r.file_descriptor_response?.file_descriptor_proto.length).toBeGreaterThan(0);
  });
});
