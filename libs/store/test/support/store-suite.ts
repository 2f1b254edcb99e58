/**
 * The behaviour every driver must share. Each driver's test file opens a store and a raw SQL channel to the same
 * database, then calls storeSuite.
 */
import { generateKeyPairSync, randomBytes, randomUUID } from 'node:crypto';
import fc from 'fast-check';
import type { Store } from '../../src/open';
import type { ConnectionInput } from '../../src/connections';
import type { LaunchSessionInput } from '../../src/launch-sessions';

export type RawQuery = (sql: string, params?: unknown[]) => Promise<Record<string, unknown>[]>;

export interface Harness {
  store: Store;
  raw: RawQuery;
}

const T0 = new Date('2030-01-01T00:00:00.000Z');
const at = (seconds: number) => new Date(T0.getTime() + seconds * 1000);

export function sessionInput(overrides: Partial<LaunchSessionInput> = {}): LaunchSessionInput {
  return {
    tek: randomBytes(16),
    tik: randomBytes(16),
    sevPolicy: 0x0003,
    chipId: 'chip-0',
    generation: 'milan',
    chainSha256: randomBytes(32),
    createdAt: T0,
    expiresAt: at(300),
    ...overrides,
  };
}

export function connectionInput(overrides: Partial<ConnectionInput> = {}): ConnectionInput {
  return {
    key: randomBytes(32),
    launchId: randomUUID(),
    sevPolicy: 0x0007,
    apiMajor: 1,
    apiMinor: 51,
    buildId: 3,
    launchDigest: randomBytes(32),
    chipId: 'chip-0',
    createdAt: T0,
    expiresAt: at(3600),
    ...overrides,
  };
}

export function bytesOf(value: unknown): Buffer {
  if (!(value instanceof Uint8Array)) throw new Error(`expected bytea, got ${typeof value}`);
  return Buffer.from(value);
}

export async function codeOf(promise: Promise<unknown>): Promise<string | undefined> {
  try {
    await promise;
    return undefined;
  } catch (e) {
    if ((e as Error).name !== 'StoreError') throw e;
    return (e as { code: string }).code;
  }
}

const TABLES =
  'audit_log, connections, launch_sessions, release_counts, keysets, secrets, resources, report_keys, kbs_resources, kbs_sessions, policies, vm_registrations, vm_launches';

export function storeSuite(harness: () => Harness): void {
  let store: Store;
  let raw: RawQuery;

  beforeEach(async () => {
    ({ store, raw } = harness());
    await raw(`TRUNCATE ${TABLES}`);
  });

  describe('policies', () => {
    it('create, get, list, replace (keeping createdAt), delete', async () => {
      const created = await store.putPolicy('tenant', { allowedDigests: ['aa'], minApi: [0, 17] }, at(0));
      expect(created).toEqual({ name: 'tenant', document: { allowedDigests: ['aa'], minApi: [0, 17] }, createdAt: at(0), updatedAt: at(0) });
      await store.putPolicy('other', [1, 'two', { three: true }], at(1));
      expect(await store.listPolicyNames()).toEqual(['other', 'tenant']);

      const replaced = await store.putPolicy('tenant', { allowedDigests: [] }, at(5));
      expect(replaced).toEqual({ name: 'tenant', document: { allowedDigests: [] }, createdAt: at(0), updatedAt: at(5) });
      expect(await store.getPolicy('tenant')).toEqual(replaced);

      expect(await store.deletePolicy('tenant')).toBe(true);
      expect(await store.deletePolicy('tenant')).toBe(false);
      expect(await store.getPolicy('tenant')).toBeUndefined();
      expect(await store.listPolicyNames()).toEqual(['other']);
      expect((await store.getPolicy('other'))?.document).toEqual([1, 'two', { three: true }]);
    });

    it('refuses documents that are not plain JSON and empty names', async () => {
      expect(await codeOf(store.putPolicy('p', { key: Buffer.from('k') } as never))).toBe('ERR_STORE_ARGUMENT');
      expect(await codeOf(store.putPolicy('p', undefined as never))).toBe('ERR_STORE_ARGUMENT');
      expect(await codeOf(store.putPolicy('p', null))).toBe('ERR_STORE_ARGUMENT');
      expect(await codeOf(store.putPolicy('', {}))).toBe('ERR_STORE_ARGUMENT');
      expect(await store.listPolicyNames()).toEqual([]);
    });

    it.each(['secret', 'keyset', 'resource', 'report key'])('delete while a %s uses it → ERR_STORE_IN_USE, then allowed', async (kind) => {
      await store.putPolicy('p', {});
      const removeUser = await attachPolicyUser(store, kind, 'p');
      const error = await store.deletePolicy('p').catch((e: Error) => e);
      expect(error).toMatchObject({ name: 'StoreError', code: 'ERR_STORE_IN_USE' });
      expect((error as Error).message).not.toMatch(/violates|delete from|params/i);
      expect(await store.getPolicy('p')).toBeDefined();
      await removeUser();
      expect(await store.deletePolicy('p')).toBe(true);
    });

    it('items naming a missing policy → ERR_STORE_NOT_FOUND', async () => {
      expect(await codeOf(store.putSecret({ id: 's', value: Buffer.from('v'), policyName: 'nope' }))).toBe('ERR_STORE_NOT_FOUND');
      expect(await codeOf(store.putResource({ id: 'r', bytes: Buffer.from('v'), policyName: 'nope' }))).toBe('ERR_STORE_NOT_FOUND');
      expect(await codeOf(store.putKeyset({ id: 'k', secretIds: [], policyName: 'nope' }))).toBe('ERR_STORE_NOT_FOUND');
      expect(await store.listSecretIds()).toEqual([]);
    });
  });

  describe('secrets, resources, report keys', () => {
    it('secrets: create, get, list, replace, delete; values round-trip as Buffers', async () => {
      await store.putPolicy('p', {});
      const s = await store.putSecret({ id: 'default/key/key_id1', value: Buffer.from('c2VjcmV0'), policyName: 'p' }, at(0));
      expect(s).toEqual({ id: 'default/key/key_id1', value: Buffer.from('c2VjcmV0'), policyName: 'p', createdAt: at(0), updatedAt: at(0) });
      await store.putSecret({ id: 'default/key/key_id0', value: Buffer.alloc(0) });
      expect(await store.listSecretIds()).toEqual(['default/key/key_id0', 'default/key/key_id1']);
      expect((await store.getSecret('default/key/key_id0'))?.value).toEqual(Buffer.alloc(0));

      const replaced = await store.putSecret({ id: 'default/key/key_id1', value: Buffer.from('new') }, at(9));
      expect(replaced).toMatchObject({ policyName: null, createdAt: at(0), updatedAt: at(9) });
      expect((await store.getSecret('default/key/key_id1'))?.value.toString()).toBe('new');

      expect(await store.deleteSecret('default/key/key_id1')).toBe(true);
      expect(await store.deleteSecret('default/key/key_id1')).toBe(false);
      expect(await store.getSecret('default/key/key_id1')).toBeUndefined();
    });

    it('arbitrary secret bytes and ids round-trip', async () => {
      await fc.assert(
        fc.asyncProperty(
          fc.string({ minLength: 1, maxLength: 40 }).filter((s) => !s.includes('\0')),
          fc.uint8Array({ maxLength: 300 }),
          async (id, bytes) => {
            await store.putSecret({ id, value: Buffer.from(bytes) });
            expect((await store.getSecret(id))?.value.equals(Buffer.from(bytes))).toBe(true);
          },
        ),
        { numRuns: 25 },
      );
    });

    it('resources keep their bytes in the database', async () => {
      const bytes = randomBytes(4096);
      expect(await store.putResource({ id: 'default/resource/blob', bytes })).toMatchObject({ id: 'default/resource/blob', bytes, policyName: null });
      expect((await store.getResource('default/resource/blob'))?.bytes.equals(bytes)).toBe(true);
      expect(await store.listResourceIds()).toEqual(['default/resource/blob']);
      expect(await store.deleteResource('default/resource/blob')).toBe(true);
      expect(await store.getResource('default/resource/blob')).toBeUndefined();
    });

    it('report keys must be PKCS#8 DER', async () => {
      const der = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ format: 'der', type: 'pkcs8' });
      await store.putReportKey({ id: 'report-1', privateKeyPkcs8: der });
      expect((await store.getReportKey('report-1'))?.privateKeyPkcs8.equals(der)).toBe(true);
      expect(await codeOf(store.putReportKey({ id: 'report-2', privateKeyPkcs8: Buffer.from('not a key') }))).toBe('ERR_STORE_ARGUMENT');
      expect(await store.listReportKeyIds()).toEqual(['report-1']);
      expect(await store.deleteReportKey('report-1')).toBe(true);
    });

    it('a report key signs the launch description only when asked (default: signed empty)', async () => {
      const der = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ format: 'der', type: 'pkcs8' });
      expect((await store.putReportKey({ id: 'r-default', privateKeyPkcs8: der })).signLaunchDescription).toBe(false);
      expect((await store.getReportKey('r-default'))?.signLaunchDescription).toBe(false);
      await store.putReportKey({ id: 'r-sign', privateKeyPkcs8: der, signLaunchDescription: true });
      const got = await store.getReportKey('r-sign');
      expect(got?.signLaunchDescription).toBe(true);
      expect(got?.privateKeyPkcs8.equals(der)).toBe(true);
      await store.putReportKey({ id: 'r-sign', privateKeyPkcs8: der });
      expect((await store.getReportKey('r-sign'))?.signLaunchDescription).toBe(false);
      await store.deleteReportKey('r-default');
      await store.deleteReportKey('r-sign');
    });
  });

  describe('keysets', () => {
    it('list existing secrets only; a listed secret cannot be deleted', async () => {
      await store.putSecret({ id: 'a', value: Buffer.from('1') });
      await store.putSecret({ id: 'b', value: Buffer.from('2') });
      expect(await codeOf(store.putKeyset({ id: 'KEYSET-1', secretIds: ['a', 'missing'] }))).toBe('ERR_STORE_NOT_FOUND');
      expect(await store.getKeyset('KEYSET-1')).toBeUndefined();

      const ks = await store.putKeyset({ id: 'KEYSET-1', secretIds: ['b', 'a'] }, at(0));
      expect(ks).toEqual({ id: 'KEYSET-1', secretIds: ['b', 'a'], policyName: null, createdAt: at(0), updatedAt: at(0) });
      expect(await codeOf(store.deleteSecret('a'))).toBe('ERR_STORE_IN_USE');
      expect(await store.getSecret('a')).toBeDefined();

      await store.putKeyset({ id: 'KEYSET-1', secretIds: ['b'] }, at(1));
      expect(await store.deleteSecret('a')).toBe(true);
      expect(await store.deleteKeyset('KEYSET-1')).toBe(true);
      expect(await store.deleteSecret('b')).toBe(true);
    });

    it('may be empty', async () => {
      await store.putKeyset({ id: 'EMPTY', secretIds: [] });
      expect((await store.getKeyset('EMPTY'))?.secretIds).toEqual([]);
      expect(await store.listKeysetIds()).toEqual(['EMPTY']);
    });
  });

  describe('encryption at rest', () => {
    it('no plaintext in any sealed column; each is version | IV | ciphertext | tag', async () => {
      const marker = Buffer.from(`PLAINTEXT-${randomUUID()}`);
      const tek = randomBytes(16);
      const key = randomBytes(32);
      await store.putSecret({ id: 's', value: marker });
      await store.putResource({ id: 'r', bytes: marker });
      const der = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ format: 'der', type: 'pkcs8' });
      await store.putReportKey({ id: 'k', privateKeyPkcs8: der });
      const session = await store.createLaunchSession(sessionInput({ tek, tik: tek }));
      const conn = await store.createConnection(connectionInput({ key }));

      const columns: [string, string, Buffer][] = [
        ['secrets', 'value_enc', marker],
        ['resources', 'bytes_enc', marker],
        ['report_keys', 'private_key_enc', der],
        ['launch_sessions', 'keys_enc', Buffer.concat([tek, tek])],
        ['connections', 'key_enc', key],
      ];
      for (const [table, column, plain] of columns) {
        const rows = await raw(`SELECT ${column} AS v FROM ${table}`);
        expect(rows).toHaveLength(1);
        const stored = bytesOf(rows[0]!.v);
        expect(stored.length).toBe(1 + 12 + plain.length + 16);
        expect(stored[0]).toBe(1);
        expect(stored.includes(plain.subarray(0, 16))).toBe(false);
      }
      // Nothing else in those rows carries the secrets either.
      const dump = JSON.stringify(await raw(`SELECT * FROM secrets`)) + JSON.stringify(await raw(`SELECT * FROM connections`));
      expect(dump).not.toContain(marker.toString());
      expect(dump).not.toContain(key.toString('hex'));
      expect(session.id).toBeDefined();
      expect(conn.clientId).toBeDefined();
    });

    it('a ciphertext copied to another row, or tampered with, fails with ERR_STORE_DECRYPT', async () => {
      await store.putSecret({ id: 'victim', value: Buffer.from('victim secret') });
      await store.putSecret({ id: 'attacker', value: Buffer.from('attacker secret') });
      await raw(`UPDATE secrets SET value_enc = (SELECT value_enc FROM secrets WHERE id = 'victim') WHERE id = 'attacker'`);
      expect(await codeOf(store.getSecret('attacker'))).toBe('ERR_STORE_DECRYPT');
      expect((await store.getSecret('victim'))?.value.toString()).toBe('victim secret');

      // Same id, other table: the table name is bound too.
      await store.putResource({ id: 'victim', bytes: Buffer.from('resource') });
      await raw(`UPDATE resources SET bytes_enc = (SELECT value_enc FROM secrets WHERE id = 'victim') WHERE id = 'victim'`);
      expect(await codeOf(store.getResource('victim'))).toBe('ERR_STORE_DECRYPT');

      await raw(`UPDATE secrets SET value_enc = set_byte(value_enc, 20, get_byte(value_enc, 20) # 1) WHERE id = 'victim'`);
      expect(await codeOf(store.getSecret('victim'))).toBe('ERR_STORE_DECRYPT');
    });

    it('swapped connection keys fail to open', async () => {
      const a = await store.createConnection(connectionInput());
      const b = await store.createConnection(connectionInput());
      await raw(`UPDATE connections SET key_enc = (SELECT key_enc FROM connections WHERE client_id = $1) WHERE client_id = $2`, [a.clientId, b.clientId]);
      expect(await codeOf(store.getValidConnection(b.clientId, at(1)))).toBe('ERR_STORE_DECRYPT');
      expect((await store.getValidConnection(a.clientId, at(1)))?.key.equals(a.key)).toBe(true);
    });
  });

  describe('launch sessions', () => {
    it('create, count, consume once (keys erased), then nothing', async () => {
      const input = sessionInput();
      const created = await store.createLaunchSession(input);
      expect(created).toEqual({
        id: expect.stringMatching(/^[0-9a-f-]{36}$/),
        sevPolicy: input.sevPolicy,
        chipId: 'chip-0',
        generation: 'milan',
        chainSha256: input.chainSha256,
        createdAt: T0,
        expiresAt: at(300),
        consumedAt: null,
      });
      expect(created).not.toHaveProperty('tek');
      expect(await store.countPendingSessions(at(1))).toBe(1);

      const consumed = await store.consumeLaunchSession(created.id, at(10));
      expect(consumed).toEqual({ ...created, consumedAt: at(10), tek: input.tek, tik: input.tik });
      expect(await store.consumeLaunchSession(created.id, at(11))).toBeUndefined();
      expect(await store.countPendingSessions(at(12))).toBe(0);
      const [row] = await raw(`SELECT keys_enc, consumed_at FROM launch_sessions WHERE id = $1`, [created.id]);
      expect(row!.keys_enc).toBeNull();
      expect(new Date(row!.consumed_at as string).getTime()).toBe(at(10).getTime());
    });

    it('exactly one of 50 concurrent consumers wins', async () => {
      const { id } = await store.createLaunchSession(sessionInput());
      const results = await Promise.all(Array.from({ length: 50 }, (_, i) => store.consumeLaunchSession(id, at(1 + i / 1000))));
      const winners = results.filter((r) => r !== undefined);
      expect(winners).toHaveLength(1);
      expect(winners[0]!.tek).toHaveLength(16);
    });

    it('an expired session is not handed out, at or after expiresAt', async () => {
      const { id } = await store.createLaunchSession(sessionInput({ expiresAt: at(60) }));
      expect(await store.consumeLaunchSession(id, at(60))).toBeUndefined();
      expect(await store.consumeLaunchSession(id, at(61))).toBeUndefined();
      expect(await store.countPendingSessions(at(59))).toBe(1);
      expect(await store.countPendingSessions(at(60))).toBe(0);
      // Not consumed by the refused attempts: still there (until purged) for an earlier clock.
      expect(await store.consumeLaunchSession(id, at(59))).toBeDefined();
    });

    it('unknown and malformed ids are simply absent', async () => {
      expect(await store.consumeLaunchSession(randomUUID(), at(1))).toBeUndefined();
      expect(await store.consumeLaunchSession('not-a-uuid', at(1))).toBeUndefined();
      expect(await store.consumeLaunchSession("'; DROP TABLE launch_sessions; --", at(1))).toBeUndefined();
    });

    it('accepts the id in any case', async () => {
      const { id } = await store.createLaunchSession(sessionInput());
      expect(await store.consumeLaunchSession(id.toUpperCase(), at(1))).toMatchObject({ id });
    });

    it('purge deletes expired sessions, consumed or not, and keeps live ones', async () => {
      const live = await store.createLaunchSession(sessionInput({ expiresAt: at(600) }));
      const expired = await store.createLaunchSession(sessionInput({ expiresAt: at(60) }));
      const consumedExpired = await store.createLaunchSession(sessionInput({ expiresAt: at(60) }));
      await store.consumeLaunchSession(consumedExpired.id, at(1));
      expect(await store.purgeExpiredSessions(at(100))).toBe(2);
      const ids = (await raw(`SELECT id FROM launch_sessions`)).map((r) => r.id);
      expect(ids).toEqual([live.id]);
      expect(expired.id).not.toBe(live.id);
    });

    it('refuses duplicates and malformed input', async () => {
      const { id } = await store.createLaunchSession(sessionInput());
      expect(await codeOf(store.createLaunchSession(sessionInput({ id })))).toBe('ERR_STORE_CONFLICT');
      expect(await codeOf(store.createLaunchSession(sessionInput({ tek: randomBytes(15) })))).toBe('ERR_STORE_ARGUMENT');
      expect(await codeOf(store.createLaunchSession(sessionInput({ chainSha256: randomBytes(31) })))).toBe('ERR_STORE_ARGUMENT');
      expect(await codeOf(store.createLaunchSession(sessionInput({ sevPolicy: 2 ** 32 })))).toBe('ERR_STORE_ARGUMENT');
      expect(await codeOf(store.createLaunchSession(sessionInput({ id: 'abc' })))).toBe('ERR_STORE_ARGUMENT');
      expect(await codeOf(store.createLaunchSession(sessionInput({ expiresAt: T0 })))).toBe('ERR_STORE_ARGUMENT');
      expect(await store.countPendingSessions(at(1))).toBe(1);
    });

    it('with an audit entry, writes the session and its entry together, or neither', async () => {
      const entry = (refId: string) => ({ event: 'bundle', outcome: 'issued', peer: 'ipv4:127.0.0.1:1', refId, detail: { policy: 1, nul: 'a' } });
      const { id } = await store.createLaunchSession(sessionInput({ id: randomUUID() }), { ...entry('b-1'), launchId: null, at: at(2) });
      expect(await raw('SELECT event, outcome, peer, at, detail FROM audit_log WHERE ref_id = $1', ['b-1'])).toEqual([
        { event: 'bundle', outcome: 'issued', peer: 'ipv4:127.0.0.1:1', at: at(2), detail: { policy: 1, nul: 'a' } },
      ]);
      expect((await store.consumeLaunchSession(id, at(1)))?.id).toBe(id); // the session is an ordinary one
      // a taken id: no session, and no audit row either
      expect(await codeOf(store.createLaunchSession(sessionInput({ id }), entry('b-2')))).toBe('ERR_STORE_CONFLICT');
      expect(await raw('SELECT id FROM audit_log WHERE ref_id = $1', ['b-2'])).toEqual([]);
      // a malformed entry is refused before anything is written
      expect(await codeOf(store.createLaunchSession(sessionInput(), { event: 'bundle', outcome: '' }))).toBe('ERR_STORE_ARGUMENT');
      expect(await store.countPendingSessions(at(1))).toBe(0);
    });

    it('stores the full u32 policy range', async () => {
      const { id } = await store.createLaunchSession(sessionInput({ sevPolicy: 0xffffffff }));
      expect((await store.consumeLaunchSession(id, at(1)))?.sevPolicy).toBe(0xffffffff);
    });
  });

  describe('VM launches (openVmLaunch: session, binding and audit entry in one statement)', () => {
    const doc = (n: number) => Buffer.from(JSON.stringify({ policy: n }));
    const issued = (refId: string) => ({ event: 'vm-launch', outcome: 'issued', peer: 'ipv4:127.0.0.1:1', refId, at: at(1), detail: { vm: 'x', n: 1 } });
    const counts = async () =>
      (
        await raw(
          'SELECT (SELECT count(*) FROM launch_sessions)::int AS s, (SELECT count(*) FROM vm_launches)::int AS b, (SELECT count(*) FROM audit_log)::int AS a',
        )
      )[0];

    it('writes all three at the registration version it was given, and consumeVmLaunch finds them', async () => {
      const uuid = randomUUID();
      const vm = await store.createVm({ uuid, owner: 'alice', document: doc(1) }, at(0));
      expect(vm.version).toHaveLength(32);
      expect((await store.getVm(uuid))?.version).toEqual(vm.version);
      const opened = await store.openVmLaunch(sessionInput(), { uuid, version: vm.version, cpuSignature: 0x00a00f11 }, issued('l-1'));
      expect(opened?.sevPolicy).toBe(3);
      expect(await raw('SELECT event, outcome, ref_id, at, detail FROM audit_log')).toEqual([
        { event: 'vm-launch', outcome: 'issued', ref_id: 'l-1', at: at(1), detail: { vm: 'x', n: 1 } },
      ]);
      const consumed = await store.consumeVmLaunch(opened!.id, at(2));
      expect(consumed?.binding).toEqual({ launchId: opened!.id, vmUuid: uuid, cpuSignature: 0x00a00f11, expiresAt: at(300) });
      expect(consumed?.vm?.document.equals(doc(1))).toBe(true);
      expect(consumed?.session.tek).toHaveLength(16);
    });

    it('writes nothing once the registration was replaced or removed, or for another VM’s version', async () => {
      const [a, b] = [randomUUID(), randomUUID()];
      const first = await store.createVm({ uuid: a, owner: '', document: doc(1) }, at(0));
      const other = await store.createVm({ uuid: b, owner: '', document: doc(1) }, at(0));
      const replaced = await store.replaceVm({ uuid: a, owner: null, document: doc(1) }, at(0)); // same bytes, same time
      expect(replaced!.version.equals(first.version)).toBe(false); // a fresh seal: a new version all the same
      expect(await store.openVmLaunch(sessionInput(), { uuid: a, version: first.version, cpuSignature: null }, issued('stale'))).toBeUndefined();
      expect(await store.openVmLaunch(sessionInput(), { uuid: a, version: other.version, cpuSignature: null }, issued('other'))).toBeUndefined();
      expect(await counts()).toEqual({ s: 0, b: 0, a: 0 });
      expect(await store.openVmLaunch(sessionInput(), { uuid: a, version: replaced!.version, cpuSignature: null }, issued('ok'))).toBeDefined();
      expect(await store.deleteVm(a, null)).toBe(true);
      expect(await store.openVmLaunch(sessionInput(), { uuid: a, version: replaced!.version, cpuSignature: null }, issued('gone'))).toBeUndefined();
      expect(await counts()).toEqual({ s: 1, b: 1, a: 1 });
    });

    it('refuses malformed input and a taken launch id before or without writing', async () => {
      const uuid = randomUUID();
      const { version } = await store.createVm({ uuid, owner: '', document: doc(1) }, at(0));
      const id = randomUUID();
      await store.openVmLaunch(sessionInput({ id }), { uuid, version, cpuSignature: null }, issued('1'));
      expect(await codeOf(store.openVmLaunch(sessionInput({ id }), { uuid, version, cpuSignature: null }, issued('2')))).toBe('ERR_STORE_CONFLICT');
      expect(await codeOf(store.openVmLaunch(sessionInput({ tek: randomBytes(8) }), { uuid, version, cpuSignature: null }, issued('3')))).toBe(
        'ERR_STORE_ARGUMENT',
      );
      expect(await codeOf(store.openVmLaunch(sessionInput(), { uuid, version: randomBytes(31), cpuSignature: null }, issued('4')))).toBe('ERR_STORE_ARGUMENT');
      expect(await codeOf(store.openVmLaunch(sessionInput(), { uuid: 'nope', version, cpuSignature: null }, issued('5')))).toBe('ERR_STORE_ARGUMENT');
      expect(await codeOf(store.openVmLaunch(sessionInput(), { uuid, version, cpuSignature: -1 }, issued('6')))).toBe('ERR_STORE_ARGUMENT');
      expect(await codeOf(store.openVmLaunch(sessionInput(), { uuid, version, cpuSignature: null }, { event: 'vm-launch', outcome: '' }))).toBe(
        'ERR_STORE_ARGUMENT',
      );
      expect(await counts()).toEqual({ s: 1, b: 1, a: 1 });
    });

    it('racing replacements: every launch written was opened at the version current when it committed', async () => {
      const uuid = randomUUID();
      let { version } = await store.createVm({ uuid, owner: '', document: doc(0) }, at(0));
      const opened: string[] = [];
      await Promise.all([
        (async () => {
          for (let i = 1; i <= 10; i++) version = (await store.replaceVm({ uuid, owner: null, document: doc(i) }, at(0)))!.version;
        })(),
        (async () => {
          for (let i = 0; i < 30; i++) {
            const seen = (await store.getVm(uuid))!.version;
            const s = await store.openVmLaunch(sessionInput(), { uuid, version: seen, cpuSignature: null }, issued(`r-${i}`));
            if (s) opened.push(s.id);
          }
        })(),
      ]);
      const c = await counts();
      expect(c).toEqual({ s: opened.length, b: opened.length, a: opened.length });
      const now = await store.openVmLaunch(sessionInput(), { uuid, version, cpuSignature: null }, issued('last'));
      expect(now).toBeDefined(); // the final version is current
    });
  });

  describe('connections', () => {
    it('create, get while valid, expire', async () => {
      const input = connectionInput({ expiresAt: at(100) });
      const conn = await store.createConnection(input);
      const { key, createdAt, expiresAt, ...facts } = input;
      expect(conn).toEqual({
        ...facts,
        clientId: expect.stringMatching(/^[0-9a-f-]{36}$/),
        key,
        createdAt,
        expiresAt,
        revokedAt: null,
        launchDescription: null,
      });
      expect(await store.getValidConnection(conn.clientId, at(99))).toEqual(conn);
      const described = await store.createConnection({ ...connectionInput({ expiresAt: at(100) }), launchDescription: 'shim launch' });
      expect((await store.getValidConnection(described.clientId, at(1)))?.launchDescription).toBe('shim launch');
      expect(await store.getValidConnection(conn.clientId, at(100))).toBeUndefined();
      expect(await store.getValidConnection(randomUUID(), at(1))).toBeUndefined();
      expect(await store.getValidConnection('garbage', at(1))).toBeUndefined();
    });

    it('revoke ends validity once', async () => {
      const conn = await store.createConnection(connectionInput());
      expect(await store.revokeConnection(conn.clientId, at(5))).toBe(true);
      expect(await store.revokeConnection(conn.clientId, at(6))).toBe(false);
      expect(await store.getValidConnection(conn.clientId, at(7))).toBeUndefined();
      expect(await store.revokeConnection('garbage', at(6))).toBe(false);
      const [listed] = await store.listConnections();
      expect(listed).toMatchObject({ clientId: conn.clientId, revokedAt: at(5) });
    });

    it('list never includes keys; validAt filters; purge drops expired', async () => {
      const a = await store.createConnection(connectionInput({ createdAt: at(0), expiresAt: at(50) }));
      const b = await store.createConnection(connectionInput({ createdAt: at(1), expiresAt: at(500) }));
      const c = await store.createConnection(connectionInput({ createdAt: at(2), expiresAt: at(500) }));
      await store.revokeConnection(c.clientId, at(3));
      const all = await store.listConnections();
      expect(all.map((x) => x.clientId)).toEqual([a.clientId, b.clientId, c.clientId]);
      for (const x of all) expect(x).not.toHaveProperty('key');
      expect((await store.listConnections({ validAt: at(60) })).map((x) => x.clientId)).toEqual([b.clientId]);
      expect(await store.purgeExpiredConnections(at(60))).toBe(1);
      expect((await store.listConnections()).map((x) => x.clientId)).toEqual([b.clientId, c.clientId]);
    });

    it('refuses duplicates and out-of-range launch facts', async () => {
      const { clientId } = await store.createConnection(connectionInput());
      expect(await codeOf(store.createConnection(connectionInput({ clientId })))).toBe('ERR_STORE_CONFLICT');
      expect(await codeOf(store.createConnection(connectionInput({ key: randomBytes(16) })))).toBe('ERR_STORE_ARGUMENT');
      expect(await codeOf(store.createConnection(connectionInput({ apiMajor: 256 })))).toBe('ERR_STORE_ARGUMENT');
      expect(await codeOf(store.createConnection(connectionInput({ launchId: 'x' })))).toBe('ERR_STORE_ARGUMENT');
      expect(await store.listConnections()).toHaveLength(1);
    });
  });

  describe('release counts', () => {
    it('count up to max, then refuse without changing the count', async () => {
      expect(await store.getReleaseCount('p/s')).toBe(0);
      expect(await store.incrementReleaseCount('p/s', 2)).toBe(1);
      expect(await store.incrementReleaseCount('p/s', 2)).toBe(2);
      expect(await store.incrementReleaseCount('p/s', 2)).toBeUndefined();
      expect(await store.getReleaseCount('p/s')).toBe(2);
      expect(await store.incrementReleaseCount('p/s')).toBe(3);
      expect(await store.incrementReleaseCount('other', 0)).toBeUndefined();
      expect(await store.getReleaseCount('other')).toBe(0);
      expect(await codeOf(store.incrementReleaseCount('p/s', -1))).toBe('ERR_STORE_ARGUMENT');
    });

    it('50 concurrent increments with max 10: exactly 10 succeed, each count handed out once', async () => {
      const results = await Promise.all(Array.from({ length: 50 }, () => store.incrementReleaseCount('race', 10)));
      const granted = results.filter((r): r is number => r !== undefined).sort((x, y) => x - y);
      expect(granted).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
      expect(await store.getReleaseCount('race')).toBe(10);
    });
  });

  describe('commitRelease', () => {
    const connectionCount = async () => Number((await raw('SELECT count(*)::int AS n FROM connections'))[0]!.n);

    it('takes every counter and inserts every connection, returning the new counts', async () => {
      await store.incrementReleaseCount('b');
      const conns = [connectionInput({ clientId: randomUUID() }), connectionInput({ clientId: randomUUID() })];
      const result = await store.commitRelease({ counters: [{ key: 'b', max: 5 }, { key: 'a', max: 5 }, { key: 'c' }], connections: conns }, at(7));
      expect(result).toEqual({
        ok: true,
        counts: new Map([
          ['a', 1],
          ['b', 2],
          ['c', 1],
        ]),
      });
      expect(await store.getReleaseCount('b')).toBe(2);
      for (const c of conns) {
        expect((await store.getValidConnection(c.clientId!, at(8)))?.key).toEqual(c.key);
      }
      expect(await raw('SELECT key, updated_at FROM release_counts ORDER BY key')).toEqual(['a', 'b', 'c'].map((key) => ({ key, updated_at: at(7) })));
    });

    it('a counter at its max writes nothing: other counters unchanged, no connection', async () => {
      await store.commitRelease({ counters: [{ key: 'z-full', max: 1 }], connections: [] });
      // 'a-first' is taken before 'z-full' (key order), so only a rollback undoes it
      const result = await store.commitRelease({
        counters: [
          { key: 'a-first', max: 5 },
          { key: 'z-full', max: 1 },
        ],
        connections: [connectionInput()],
      });
      expect(result).toEqual({ ok: false, exhausted: 'z-full' });
      expect(await store.getReleaseCount('a-first')).toBe(0);
      expect(await store.getReleaseCount('z-full')).toBe(1);
      expect(await raw(`SELECT key FROM release_counts WHERE key = 'a-first'`)).toEqual([]);
      expect(await connectionCount()).toBe(0);
      expect(await store.commitRelease({ counters: [{ key: 'a-first', max: 0 }], connections: [connectionInput()] })).toEqual({
        ok: false,
        exhausted: 'a-first',
      });
      expect(await connectionCount()).toBe(0);
    });

    it('a failing connection insert writes nothing either', async () => {
      const { clientId } = await store.createConnection(connectionInput());
      const taken = store.commitRelease({ counters: [{ key: 'p', max: 5 }, { key: 'q' }], connections: [connectionInput(), connectionInput({ clientId })] });
      expect(await codeOf(taken)).toBe('ERR_STORE_CONFLICT');
      const twice = randomUUID();
      const repeated = store.commitRelease({
        counters: [{ key: 'p', max: 5 }],
        connections: [connectionInput({ clientId: twice }), connectionInput({ clientId: twice })],
      });
      expect(await codeOf(repeated)).toBe('ERR_STORE_CONFLICT');
      expect(await store.getReleaseCount('p')).toBe(0);
      expect(await store.getReleaseCount('q')).toBe(0);
      expect(await connectionCount()).toBe(1);
    });

    it('commits its audit entries with the release, and none when it writes nothing', async () => {
      const auditOf = async (refId: string) => raw('SELECT event, outcome, launch_id, detail FROM audit_log WHERE ref_id = $1', [refId]);
      const launchId = randomUUID();
      const entry = (refId: string) => ({ event: 'secret', outcome: 'released', launchId, refId, detail: { requested: ['k'] } });
      expect((await store.commitRelease({ counters: [], connections: [], audit: [entry('r-alone')] })).ok).toBe(true);
      expect(await auditOf('r-alone')).toEqual([{ event: 'secret', outcome: 'released', launch_id: launchId, detail: { requested: ['k'] } }]);
      const withWrites = await store.commitRelease({ counters: [{ key: 'audited', max: 1 }], connections: [connectionInput()], audit: [entry('r-with')] });
      expect(withWrites.ok).toBe(true);
      expect(await auditOf('r-with')).toHaveLength(1);
      // the counter is now at its max: the release rolls back, and its audit entry with it
      expect(await store.commitRelease({ counters: [{ key: 'audited', max: 1 }], connections: [], audit: [entry('r-exhausted')] })).toEqual({
        ok: false,
        exhausted: 'audited',
      });
      expect(await auditOf('r-exhausted')).toEqual([]);
      // a failing connection insert takes the audit entry with it too
      const { clientId } = await store.createConnection(connectionInput());
      expect(await codeOf(store.commitRelease({ counters: [], connections: [connectionInput({ clientId })], audit: [entry('r-conflict')] }))).toBe(
        'ERR_STORE_CONFLICT',
      );
      expect(await auditOf('r-conflict')).toEqual([]);
      expect(await codeOf(store.commitRelease({ counters: [], connections: [], audit: [{ event: '', outcome: 'x' }] }))).toBe('ERR_STORE_ARGUMENT');
    });

    it('refuses malformed input before writing anything', async () => {
      const commit = (counters: { key: string; max?: number }[], connections = [connectionInput()]) => codeOf(store.commitRelease({ counters, connections }));
      expect(await commit([{ key: 'ok' }, { key: '' }])).toBe('ERR_STORE_ARGUMENT');
      expect(await commit([{ key: 'ok', max: -1 }])).toBe('ERR_STORE_ARGUMENT');
      expect(await commit([{ key: 'ok', max: 1.5 }])).toBe('ERR_STORE_ARGUMENT');
      expect(await commit([{ key: 'ok' }, { key: 'ok' }])).toBe('ERR_STORE_ARGUMENT');
      expect(await commit([{ key: 'ok' }], [connectionInput(), connectionInput({ key: randomBytes(16) })])).toBe('ERR_STORE_ARGUMENT');
      expect(await commit([{ key: 'ok' }], [connectionInput({ launchId: 'x' })])).toBe('ERR_STORE_ARGUMENT');
      expect(await codeOf(store.commitRelease({ counters: undefined as never, connections: [] }))).toBe('ERR_STORE_ARGUMENT');
      expect(await codeOf(store.commitRelease({ counters: [], connections: undefined as never }))).toBe('ERR_STORE_ARGUMENT');
      expect(await store.getReleaseCount('ok')).toBe(0);
      expect(await connectionCount()).toBe(0);
      expect(await store.commitRelease({ counters: [], connections: [] })).toEqual({ ok: true, counts: new Map() });
    });

    it('20 concurrent commits on two counters of max 5: exactly 5 succeed, neither counter passes 5', async () => {
      // half name the counters in the other order: the store must not deadlock on it
      const results = await Promise.all(
        Array.from({ length: 20 }, (_, i) => {
          const counters = [
            { key: 'race-a', max: 5 },
            { key: 'race-b', max: 5 },
          ];
          return store.commitRelease({ counters: i % 2 ? counters.reverse() : counters, connections: [connectionInput()] });
        }),
      );
      const granted = results.flatMap((r) => (r.ok ? [r.counts] : []));
      expect(granted).toHaveLength(5);
      expect(granted.map((c) => c.get('race-a')).sort()).toEqual([1, 2, 3, 4, 5]);
      expect(granted.map((c) => c.get('race-b')).sort()).toEqual([1, 2, 3, 4, 5]);
      for (const r of results) if (!r.ok) expect(['race-a', 'race-b']).toContain(r.exhausted);
      expect(await store.getReleaseCount('race-a')).toBe(5);
      expect(await store.getReleaseCount('race-b')).toBe(5);
      expect(await connectionCount()).toBe(5);
    });

    it('concurrent commits with counters at different limits: the tighter one refuses, the looser one is not charged', async () => {
      const results = await Promise.all(
        Array.from({ length: 20 }, () =>
          store.commitRelease({
            counters: [
              { key: 'loose', max: 100 },
              { key: 'tight', max: 3 },
            ],
            connections: [],
          }),
        ),
      );
      expect(results.filter((r) => r.ok)).toHaveLength(3);
      for (const r of results) if (!r.ok) expect(r.exhausted).toBe('tight');
      expect(await store.getReleaseCount('tight')).toBe(3);
      expect(await store.getReleaseCount('loose')).toBe(3);
    });
  });

  describe('audit log', () => {
    it('append and list newest first, with filters and limit', async () => {
      const launchId = randomUUID();
      const e1 = await store.appendAudit({ at: at(1), event: 'GetBundle', outcome: 'ok', launchId, peer: '10.0.0.1:5000' });
      await store.appendAudit({ at: at(2), event: 'GetSecret', outcome: 'denied', launchId, refId: 'ref-1', detail: { reason: 'fw digest not allowed' } });
      await store.appendAudit({ at: at(3), event: 'GetSecret', outcome: 'denied', launchId: 'not-a-uuid-from-host' });
      await store.appendAudit({ at: at(4), event: 'GetOnlineSecret', outcome: 'ok', clientId: randomUUID() });

      expect(e1).toEqual({
        id: expect.any(Number),
        at: at(1),
        event: 'GetBundle',
        outcome: 'ok',
        launchId,
        clientId: null,
        peer: '10.0.0.1:5000',
        refId: null,
        detail: null,
      });
      expect((await store.listAudit()).map((e) => e.at.getTime())).toEqual([4, 3, 2, 1].map((s) => at(s).getTime()));
      expect((await store.listAudit({ launchId })).map((e) => e.event)).toEqual(['GetSecret', 'GetBundle']);
      expect((await store.listAudit({ launchId }))[0]).toMatchObject({ refId: 'ref-1', detail: { reason: 'fw digest not allowed' } });
      expect(await store.listAudit({ launchId: 'not-a-uuid-from-host' })).toHaveLength(1);
      expect((await store.listAudit({ since: at(3) })).map((e) => e.event)).toEqual(['GetOnlineSecret', 'GetSecret']);
      expect((await store.listAudit({ event: 'GetSecret', limit: 1 })).map((e) => e.at)).toEqual([at(3)]);
    });

    it('appends a batch in one statement, all or nothing, and finds entries by reference', async () => {
      const batch = Array.from({ length: 5 }, (_, i) => ({ at: at(i + 1), event: 'GetBundle', outcome: 'issued', refId: `ref-${i}` }));
      expect(await store.appendAudits(batch)).toBe(5);
      expect(await store.appendAudits([])).toBe(0);
      expect((await store.listAudit({ refId: 'ref-3' })).map((e) => e.at)).toEqual([at(4)]);
      const bad = [
        { event: 'x', outcome: 'ok' },
        { event: 'y', outcome: 'ok', detail: { tek: randomBytes(16) } as never },
      ];
      expect(await codeOf(store.appendAudits(bad))).toBe('ERR_STORE_ARGUMENT');
      expect(await store.listAudit()).toHaveLength(5);
    });

    it('refuses binary detail (no secret bytes by accident) and bad limits', async () => {
      expect(await codeOf(store.appendAudit({ event: 'x', outcome: 'ok', detail: { tek: randomBytes(16) } as never }))).toBe('ERR_STORE_ARGUMENT');
      expect(await codeOf(store.listAudit({ limit: 0 }))).toBe('ERR_STORE_ARGUMENT');
      expect(await store.listAudit()).toEqual([]);
    });
  });

  describe('audit retention (purgeAuditBefore)', () => {
    const refsLeft = async () => (await store.listAudit({ limit: 1000 })).map((e) => e.refId).sort();
    const append = (seconds: number[], prefix: string) =>
      store.appendAudits(seconds.map((s, i) => ({ at: at(s), event: 'GetBundle', outcome: 'issued', refId: `${prefix}-${i}` })));

    it('deletes the entries before the cutoff, keeps those at or after it, and returns the count', async () => {
      await append([-3600, -2, -1], 'old');
      await append([-0.001], 'edge'); // one millisecond before the cutoff: still before it
      await append([0, 1, 3600], 'kept');
      expect(await store.purgeAuditBefore(at(0))).toBe(4);
      expect(await refsLeft()).toEqual(['kept-0', 'kept-1', 'kept-2']);
      expect((await store.listAudit({ refId: 'kept-0' }))[0]?.at).toEqual(at(0));
    });

    it('a backlog larger than one batch is deleted completely, batch after batch', async () => {
      await append([-70, -60, -50, -40, -30, -20, -10], 'old');
      await append([10, 20], 'kept');
      expect(await store.purgeAuditBefore(at(0), { batchSize: 2 })).toBe(7);
      expect(await refsLeft()).toEqual(['kept-0', 'kept-1']);
      // an exact multiple of the batch size ends on an empty batch
      await append([-2, -1], 'old');
      expect(await store.purgeAuditBefore(at(0), { batchSize: 2 })).toBe(2);
      expect(await refsLeft()).toEqual(['kept-0', 'kept-1']);
    });

    it('nothing older than the cutoff (or an empty log) → 0, nothing deleted', async () => {
      expect(await store.purgeAuditBefore(at(0))).toBe(0);
      await append([0, 5], 'kept');
      expect(await store.purgeAuditBefore(at(0), { batchSize: 1 })).toBe(0);
      expect(await refsLeft()).toEqual(['kept-0', 'kept-1']);
    });

    it('stops between batches once its signal is aborted', async () => {
      await append([-50, -40, -30, -20, -10], 'old');
      const aborted = new AbortController();
      aborted.abort();
      expect(await store.purgeAuditBefore(at(0), { signal: aborted.signal })).toBe(0);
      expect(await refsLeft()).toHaveLength(5);
      const stop = new AbortController();
      const purging = store.purgeAuditBefore(at(0), { batchSize: 2, signal: stop.signal }); // the first batch is under way
      stop.abort();
      expect(await purging).toBe(2);
      expect(await refsLeft()).toEqual(['old-2', 'old-3', 'old-4']);
    });

    it('refuses a bad cutoff or batch size, deleting nothing', async () => {
      await append([-10, -5], 'old');
      const bad: [unknown, unknown][] = [
        [new Date(NaN), undefined],
        ['2030-01-01T00:00:00Z', undefined],
        [at(0).getTime(), undefined],
        [undefined, undefined],
        [at(0), 0],
        [at(0), -5],
        [at(0), 2.5],
        [at(0), NaN],
        [at(0), Infinity],
        [at(0), '100'],
      ];
      for (const [cutoff, batchSize] of bad) {
        expect([cutoff, batchSize, await codeOf(store.purgeAuditBefore(cutoff as Date, { batchSize: batchSize as number }))]).toEqual([
          cutoff,
          batchSize,
          'ERR_STORE_ARGUMENT',
        ]);
      }
      expect(await refsLeft()).toEqual(['old-0', 'old-1']);
    });
  });
}

async function attachPolicyUser(store: Store, kind: string, policyName: string): Promise<() => Promise<unknown>> {
  switch (kind) {
    case 'secret':
      await store.putSecret({ id: 'x', value: Buffer.from('v'), policyName });
      return () => store.deleteSecret('x');
    case 'keyset':
      await store.putKeyset({ id: 'x', secretIds: [], policyName });
      return () => store.putKeyset({ id: 'x', secretIds: [] });
    case 'resource':
      await store.putResource({ id: 'x', bytes: Buffer.from('v'), policyName });
      return () => store.deleteResource('x');
    default: {
      const der = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ format: 'der', type: 'pkcs8' });
      await store.putReportKey({ id: 'x', privateKeyPkcs8: der, policyName });
      return () => store.deleteReportKey('x');
    }
  }
}
