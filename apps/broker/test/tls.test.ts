import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { credentials, Metadata, status, type ServiceError } from '@grpc/grpc-js';
import { admin, keybroker } from '@kb/grpc-api';
import { platformChain } from '@kb/sev-sim';
import type { Store } from '@kb/store';
import { ADMIN_TOKEN, startTestBroker, testDatabase, type TestBroker } from './support/broker';
import { selfSignedCert } from './support/tls-cert';

/** TLS is opt-in on both listeners (every existing simple-kbs client dials plaintext). */
describe('TLS listeners', () => {
  const dir = mkdtempSync(join(tmpdir(), 'kb-tls-'));
  let store: Store;
  let t: TestBroker;

  beforeAll(async () => {
    const db = await testDatabase('pglite');
    store = await db.open();
    const tls = selfSignedCert(dir);
    t = await startTestBroker(store, { tlsCert: tls.cert, tlsKey: tls.key, adminTlsCert: tls.cert, adminTlsKey: tls.key });
  });

  afterAll(async () => {
    await t?.close();
    await store?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const call = <R>(client: object, method: string, req: unknown, md = new Metadata()) =>
    new Promise<R>((resolve, reject) =>
      (client as Record<string, Function>)[method]!.call(client, req, md, { deadline: Date.now() + 10_000 }, (e: ServiceError | null, r: R) =>
        e ? reject(e) : resolve(r),
      ),
    );

  it('serves keybroker and admin over TLS to clients trusting the certificate', async () => {
    const creds = credentials.createSsl(readFileSync(join(dir, 'cert.pem')));
    const host = new keybroker.KeyBrokerServiceClient(t.broker.address, creds);
    const owner = new admin.BrokerAdminClient(t.broker.adminAddress, creds);
    try {
      const b = await call<keybroker.BundleResponse>(host, 'getBundle', { CertificateChain: platformChain(t.platform).toString('base64'), Policy: 1 });
      expect(Buffer.from(b.LaunchBlob, 'base64')).toHaveLength(128);
      const md = new Metadata();
      md.set('authorization', `Bearer ${ADMIN_TOKEN}`);
      await expect(call(owner, 'listPolicies', { prefix: '', page_size: 0, page_token: '' }, md)).resolves.toEqual({ policies: [], next_page_token: '' });
    } finally {
      host.close();
      owner.close();
    }
  });

  it('does not answer plaintext clients', async () => {
    const host = new keybroker.KeyBrokerServiceClient(t.broker.address, credentials.createInsecure());
    try {
      const err = await call(host, 'getBundle', { CertificateChain: 'AAAA', Policy: 1 }).catch((e: ServiceError) => e);
      expect((err as ServiceError).code).toBe(status.UNAVAILABLE);
    } finally {
      host.close();
    }
  });
});
