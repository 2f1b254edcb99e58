import { status } from '@grpc/grpc-js';
import { platformChain } from '@kb/sev-sim';
import { openStore, PGLITE_MEMORY } from '@kb/store';
import { MASTER_KEY, policyFor, startTestBroker } from './support/broker';
import { failure } from './support/grpc';
import { expectedDigest, prepareLaunch } from './support/host';

const KEY = [{ Guid: '736869e5-84f0-4973-92ec-06879ce3da0b', Format: 'binary', SecretType: 'key', Id: 'default/key/disk' }];

// Issue #12 item 7: a database the broker cannot reach is "retry later" (UNAVAILABLE), not "a bug" (INTERNAL). The
// PostgreSQL outages (refused, reset, frozen) are in test/faults; here the embedded database is closed under a
// running broker, which every later statement meets as PGlite's "closed".
describe('an unreachable database', () => {
  it('hosts and the owner get UNAVAILABLE with a reference, and the broker keeps answering', async () => {
    const store = await openStore({ driver: 'pglite', dataDir: PGLITE_MEMORY, masterKey: MASTER_KEY });
    const t = await startTestBroker(store);
    try {
      await t.owner.call('putPolicy', { name: 'default', document_json: policyFor([expectedDigest(0x1)]) });
      await t.owner.call('putSecret', { id: 'default/key/disk', value: Buffer.from('disk passphrase'), policy_name: '' });
      const prepared = await prepareLaunch(t.host, t.platform, { policy: 0x1, requests: KEY });
      await store.close();

      const secret = await failure(t.host.getSecret(prepared.request));
      expect(secret.code).toBe(status.UNAVAILABLE);
      expect(secret.details).toMatch(/^the key broker cannot serve this request now; retry later \(ref [0-9a-f]{12}\)$/);
      const bundle = await failure(t.host.getBundle({ CertificateChain: platformChain(t.platform).toString('base64'), Policy: 0x1 }));
      expect(bundle.code).toBe(status.UNAVAILABLE);
      expect(bundle.details).toMatch(/retry later \(ref [0-9a-f]{12}\)$/);
      const admin = await failure(t.owner.call('listPolicies', { prefix: '', page_size: 0, page_token: '' }));
      expect(admin.code).toBe(status.UNAVAILABLE);
      expect(admin.details).toMatch(/retry later \(ref [0-9a-f]{12}\)$/);
      // still serving: a malformed request is answered as before
      expect((await failure(t.host.getSecret({ ...prepared.request, LaunchId: 'not-a-uuid' }))).code).toBe(status.INVALID_ARGUMENT);
    } finally {
      await t.close();
    }
  });
});
