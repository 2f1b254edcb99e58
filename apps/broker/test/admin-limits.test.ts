import { createHash } from 'node:crypto';
import { status } from '@grpc/grpc-js';
import type { admin } from '@kb/grpc-api';
import type { Store } from '@kb/store';
import { DRIVERS, startTestBroker, testDatabase, type TestBroker } from './support/broker';
import { failure } from './support/grpc';

const digest = (i: number) => createHash('sha256').update(`digest ${i}`).digest('hex');
/** A valid policy document of about `bytes` bytes (a long digest allow-list). */
function policyOfSize(bytes: number, seed = 0): string {
  const n = Math.floor((bytes - 40) / 67);
  const doc = JSON.stringify({ version: 1, allowedDigests: Array.from({ length: n }, (_, i) => digest(seed * 100_000 + i)) });
  return doc;
}

/**
 * The admin API's size caps, id checks before any read, and paged lists (admin/limits.ts). The caller only ever sees
 * our own messages: nothing of the database's error text.
 */
describe.each(DRIVERS)('admin inputs are bounded, reads validated, lists paged (%s)', (driver) => {
  let db: Awaited<ReturnType<typeof testDatabase>>;
  let store: Store;
  let t: TestBroker;

  beforeAll(async () => {
    db = await testDatabase(driver);
    store = await db.open();
    t = await startTestBroker(store);
  }, 120_000);

  afterAll(async () => {
    await t?.close();
    await store?.close();
    await db?.drop();
  });

  const answer = async (method: string, req: unknown) => {
    const e = await failure(t.owner.call(method, req));
    return `${status[e.code]}: ${e.details}`;
  };

  it('a policy document is at most 64 KiB: one just under is stored, one over is INVALID_ARGUMENT, a 6.7 MB one never reaches the handler', async () => {
    const under = policyOfSize(64 * 1024 - 100);
    expect(Buffer.byteLength(under)).toBeLessThanOrEqual(64 * 1024);
    await t.owner.call('putPolicy', { name: 'big-ok', document_json: under });
    const over = policyOfSize(64 * 1024 + 200);
    expect(await answer('putPolicy', { name: 'big-over', document_json: over })).toBe(
      `INVALID_ARGUMENT: document_json must be at most 65536 bytes (64 KiB), got ${Buffer.byteLength(over)}`,
    );
    expect(await answer('putPolicy', { name: 'huge', document_json: policyOfSize(6_700_000) })).toMatch(/^RESOURCE_EXHAUSTED: /);
    expect(await store.getPolicy('big-over')).toBeUndefined();
    expect(await store.getPolicy('huge')).toBeUndefined();
    expect((await t.owner.call<admin.Policy>('getPolicy', { name: 'big-ok' })).document_json).toBe(under);
  });

  it('keysets name at most 64 secrets; imported PEMs are at most 16 KiB', async () => {
    const ids = Array.from({ length: 65 }, (_, i) => `s/${i}`);
    expect(await answer('putKeyset', { id: 'k', secret_ids: ids, policy_name: '' })).toBe('INVALID_ARGUMENT: a keyset names at most 64 secrets');
    expect(await answer('createReportKey', { id: 'r', policy_name: '', private_key_pem: 'x'.repeat(16 * 1024 + 1) })).toBe(
      'INVALID_ARGUMENT: private_key_pem must be at most 16384 characters',
    );
  });

  it('every read and delete checks its id before the database: our message, never the database’s', async () => {
    const reads = [
      'getPolicy',
      'deletePolicy',
      'getSecretInfo',
      'deleteSecret',
      'getKeyset',
      'deleteKeyset',
      'getResourceInfo',
      'deleteResource',
      'getReportKey',
      'deleteReportKey',
    ];
    const bad = ['', 'with space', 'nul\u0000inside', 'x'.repeat(257), 'é', 'tab\there'];
    const seen = new Set<string>();
    for (const m of reads) for (const name of bad) seen.add(await answer(m, { name }));
    expect([...seen]).toEqual(['INVALID_ARGUMENT: name must be 1–256 printable ASCII characters without spaces']);
    expect(await answer('revokeConnection', { client_id: "1' OR '1'='1" })).toBe('INVALID_ARGUMENT: client_id must be a UUID');
    expect(await answer('listAudit', { since: '', launch_id: 'a\u0000b', ref_id: '', limit: 1, page_token: '' })).toBe(
      'INVALID_ARGUMENT: launch_id must be at most 256 characters without control characters',
    );
    expect(await answer('listAudit', { since: '', launch_id: '', ref_id: 'r'.repeat(300), limit: 1, page_token: '' })).toMatch(
      /^INVALID_ARGUMENT: ref_id must be/,
    );
    for (const prefix of ['has space', 'x'.repeat(300), '\u0000']) {
      expect(await answer('listSecrets', { prefix, page_size: 0, page_token: '' })).toBe(
        'INVALID_ARGUMENT: prefix must be 1–256 printable ASCII characters without spaces',
      );
    }
    // a valid id that does not exist is NOT_FOUND, as before
    expect(await answer('getPolicy', { name: 'no-such-policy' })).toBe("NOT_FOUND: policy 'no-such-policy' does not exist");
  });

  it('lists page: page_size entries (default 100, at most 1000) in key order, with a token for the rest; nothing repeats or goes missing', async () => {
    const ids = Array.from({ length: 230 }, (_, i) => `page/${String(i).padStart(3, '0')}`);
    for (const id of ids) await store.putSecret({ id, value: Buffer.from('v'), policyName: null }, new Date());
    const pages: number[] = [];
    const got: string[] = [];
    let page_token = '';
    do {
      const r = await t.owner.call<admin.ListSecretsResponse>('listSecrets', { prefix: 'page/', page_size: 0, page_token });
      pages.push(r.secrets.length);
      got.push(...r.secrets.map((s) => s.id));
      page_token = r.next_page_token;
    } while (page_token);
    expect(pages).toEqual([100, 100, 30]);
    expect(got).toEqual(ids);
    // page_size, capped at 1000
    expect((await t.owner.call<admin.ListSecretsResponse>('listSecrets', { prefix: 'page/', page_size: 7, page_token: '' })).secrets).toHaveLength(7);
    expect((await t.owner.call<admin.ListSecretsResponse>('listSecrets', { prefix: 'page/', page_size: 5000, page_token: '' })).secrets).toHaveLength(230);
    // a token is bound to its listing and prefix
    const first = await t.owner.call<admin.ListSecretsResponse>('listSecrets', { prefix: 'page/', page_size: 10, page_token: '' });
    expect(await answer('listSecrets', { prefix: 'page/0', page_size: 10, page_token: first.next_page_token })).toBe(
      'INVALID_ARGUMENT: page_token was given for another prefix',
    );
    expect(await answer('listPolicies', { prefix: 'page/', page_size: 10, page_token: first.next_page_token })).toMatch(
      /^INVALID_ARGUMENT: page_token is not a token of this listing/,
    );
    expect(await answer('listSecrets', { prefix: 'page/', page_size: 10, page_token: 'garbage!' })).toMatch(
      /^INVALID_ARGUMENT: page_token is not a token of this listing/,
    );
    // an entry deleted between pages is simply not there; nothing shifts
    await store.deleteSecret('page/010');
    const second = await t.owner.call<admin.ListSecretsResponse>('listSecrets', { prefix: 'page/', page_size: 10, page_token: first.next_page_token });
    expect(second.secrets.map((s) => s.id)).toEqual(
      ids
        .slice(10, 20)
        .filter((i) => i !== 'page/010')
        .concat(ids[20]!),
    );
  });

  it('a page also stops at 1 MiB, so large policies never exceed the client’s 4 MiB limit', async () => {
    for (let i = 0; i < 24; i++) await t.owner.call('putPolicy', { name: `large/${String(i).padStart(2, '0')}`, document_json: policyOfSize(60_000, i + 1) });
    const sizes: number[] = [];
    const names: string[] = [];
    let page_token = '';
    do {
      const r = await t.owner.call<admin.ListPoliciesResponse>('listPolicies', { prefix: 'large/', page_size: 0, page_token });
      sizes.push(r.policies.reduce((n, p) => n + p.document_json.length, 0));
      names.push(...r.policies.map((p) => p.name));
      page_token = r.next_page_token;
    } while (page_token);
    expect(sizes.length).toBeGreaterThan(1);
    for (const s of sizes) expect(s).toBeLessThanOrEqual(1024 * 1024);
    expect(names).toEqual(Array.from({ length: 24 }, (_, i) => `large/${String(i).padStart(2, '0')}`));
  });

  it('ListAudit pages too: at most 1000 entries a page, newest first, entries sharing a timestamp neither repeated nor skipped', async () => {
    const at = new Date('2030-01-01T00:00:00.000Z');
    const entries = Array.from({ length: 2300 }, (_, i) => ({
      event: 'paging',
      outcome: 'test',
      refId: `paging-${i}`,
      at: new Date(at.getTime() + Math.floor(i / 700)),
    }));
    await store.appendAudits(entries);
    const pages: number[] = [];
    const refs: string[] = [];
    let page_token = '';
    do {
      const r = await t.owner.call<admin.ListAuditResponse>('listAudit', { since: at.toISOString(), launch_id: '', ref_id: '', limit: 10_000, page_token });
      pages.push(r.entries.length);
      refs.push(...r.entries.map((e) => e.ref_id));
      page_token = r.next_page_token;
    } while (page_token);
    expect(pages).toEqual([1000, 1000, 300]);
    expect(new Set(refs).size).toBe(2300);
    // newest first: the last written of the latest millisecond first, the first written of the earliest last
    expect([refs[0], refs[refs.length - 1]]).toEqual(['paging-2299', 'paging-0']);
    // limit bounds the whole answer: no token once it is reached
    const limited = await t.owner.call<admin.ListAuditResponse>('listAudit', { since: at.toISOString(), launch_id: '', ref_id: '', limit: 5, page_token: '' });
    expect([limited.entries.length, limited.next_page_token]).toEqual([5, '']);
  });
});
