/**
 * The import test, run once per source engine: simple-kbs's schema and the fixture's rows in a real database, then
 * `kbctl import simple-kbs` (in-process, as a user runs it) into a broker's PostgreSQL database, then a real broker
 * process and a simulated SEV host: every imported secret, keyset, resource and report key reaches the guest as the
 * bytes simple-kbs's formats prescribe, the imported online connection serves GetOnlineSecret, re-import is a no-op,
 * and a failing import writes nothing.
 */
import { createDecipheriv, createPrivateKey, createPublicKey, createVerify, randomBytes, randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ServiceError } from '@grpc/grpc-js';
import { createPlatform } from '@kb/sev-sim';
import { openStore, type Store } from '@kb/store';
import { runCli } from '../../../src/cli';
import { tree } from '../../../src/main';
import { expectedDigest, HostClient, simulatedLaunch } from '../../support/launch';
import { startBrokerProcess, type BrokerProcess } from './broker';
import { buildFixture, type Fixture } from './fixture';
import type { Rows } from './schema';
import { freshPostgresDatabase } from './sources';

const SEV_POLICY = 0x1;
const DESCRIPTION = 'kbctl import test launch';
const G = (n: number) => `${n.toString(16).padStart(8, '0')}-0000-4000-8000-000000000000`;

export interface SourceFactory {
  /** creates the simple-kbs database with these rows; returns the SOURCE_URL (or env) kbctl is given */
  create(rows: Rows, dir: string): Promise<{ args: string[]; env?: NodeJS.ProcessEnv }>;
  cleanup(): Promise<void>;
}

export async function kbctl(args: string[], cwd: string, env: NodeJS.ProcessEnv = {}) {
  const out: string[] = [];
  const err: string[] = [];
  const code = await runCli('kbctl', 'kbctl — test', tree, args, { out: (s) => out.push(s), err: (s) => err.push(s), env, cwd });
  return { code, out: out.join('\n'), err: err.join('\n') };
}

/** bincode of a one-entry map {key: value} (u64 LE lengths), simple-kbs's `json` resource format. */
function bincodeOne(key: string, value: Buffer): Buffer {
  const u64 = (n: number) => {
    const b = Buffer.alloc(8);
    b.writeBigUInt64LE(BigInt(n));
    return b;
  };
  return Buffer.concat([u64(1), u64(Buffer.byteLength(key)), Buffer.from(key), u64(value.length), value]);
}

export function importSuite(engine: string, factory: SourceFactory): void {
  describe(`kbctl import simple-kbs from ${engine}`, () => {
    const platform = createPlatform({ name: 'sev-sim' });
    let work: string;
    let fx: Fixture;
    let source: { args: string[]; env?: NodeJS.ProcessEnv };
    let target: { url: string; drop(): Promise<void> };
    let keyFile: string;
    let broker: BrokerProcess | undefined;
    let host: HostClient;
    let store: Store;

    const run = (extra: string[], env: NodeJS.ProcessEnv = {}) =>
      kbctl(['import', 'simple-kbs', ...source.args, '--database-url', target.url, '--master-key-file', keyFile, ...extra], fx.dir, { ...source.env, ...env });

    beforeAll(async () => {
      work = mkdtempSync(join(tmpdir(), `kb-import-${engine}-`));
      fx = buildFixture(work, expectedDigest(SEV_POLICY), platform);
      source = await factory.create(fx.rows, work);
      target = await freshPostgresDatabase('kb_import_target');
      keyFile = join(work, 'master.key');
      const masterKey = randomBytes(32);
      writeFileSync(keyFile, masterKey.toString('base64'));
      store = await openStore({ driver: 'pg', url: target.url, masterKey });
    }, 180_000);

    afterAll(async () => {
      host?.close();
      if (broker) expect((await broker.stop()).code).toBe(0);
      await store?.close();
      await target?.drop();
      await factory.cleanup();
      rmSync(work, { recursive: true, force: true });
    }, 60_000);

    it('by default, fail-open rows are reported one by one and refuse the import; nothing is written', async () => {
      const r = await run([]);
      expect(r.code).toBe(1);
      expect(r.out).toContain("fail-open: secret 'default/key/failopen': its policy policy row id=3 is not valid (valid = 0)");
      expect(r.out).toContain("fail-open: keyset 'KEYSET-MISSING-POLICY': its policy policy row id=99 does not exist");
      expect(r.out).toContain("fail-open: report key 'report-failopen': its policy policy row id=5 has allowed_policies that are not a JSON list of u32");
      expect(r.err).toMatch(/3 problem\(s\); nothing was written/);
      expect(r.err).toContain('choose with --on-missing-policy deny|default-only');
      expect(await store.listSecretIds()).toEqual([]);
      expect(await store.listPolicyNames()).toEqual([]);
    });

    it('--dry-run prints the plan and every finding, and writes nothing', async () => {
      const r = await run(['--dry-run', '--on-missing-policy', 'default-only']);
      expect(r.err).toBe(`reading ${r.err.split('\n')[0]!.slice('reading '.length)}`);
      expect(r.code).toBe(0);
      expect(r.out).toContain('plan: 5 policies, 6 secrets, 5 keysets, 2 resources, 2 report keys, 1 connections');
      expect(r.out).toContain('  policy default');
      expect(r.out).toContain('  secret default/key/k2 (policy simple-kbs-policy-1)');
      expect(r.out).toContain("note: secrets row id=16 (secret_id 'default/key/null') skipped: secret is NULL");
      expect(r.out).toContain("note: keysets row id=15 (keysetid 'KEYSET-MISSING-SECRET') skipped: it names secrets that are not imported (no-such-secret)");
      expect(r.out).toContain("note: keysets row id=13 (keysetid 'KEYSET-BADJSON'): kskeys is not JSON; simple-kbs reads it as an empty keyset");
      expect(r.out).toContain("note: resource_type 'default/resource/cfg' has 2 rows (ids 1, 2)");
      expect(r.out).toMatch(/note: conn_bundle row id=[0-9a-f-]{36} skipped: symkey NULL/);
      expect(r.out).toMatch(/dry run: would import 5 policies, 6 secrets, 5 keysets, 2 resources, 2 report keys, 1 connections; 0 already present/);
      expect(await store.listSecretIds()).toEqual([]);
    });

    it('a row that conflicts with the target aborts the whole transaction: nothing is written', async () => {
      await store.putSecret({ id: 'default/key/k2', value: Buffer.from('another value') });
      const r = await run(['--on-missing-policy', 'default-only']);
      expect(r.code).toBe(1);
      expect(r.err).toContain("secret 'default/key/k2' exists with another value and policy");
      expect(r.err).toContain('nothing was written');
      expect(await store.listSecretIds()).toEqual(['default/key/k2']);
      expect(await store.listPolicyNames()).toEqual([]);
      await store.deleteSecret('default/key/k2');
    });

    it('imports in one transaction and ends with a summary', async () => {
      const r = await run(['--on-missing-policy', 'default-only', '--connection-expiry', '30d', '--progress']);
      expect(r.code).toBe(0);
      expect(r.out).toMatch(
        /^imported 5 policies, 6 secrets, 5 keysets, 2 resources, 2 report keys, 1 connections; 0 already present and identical \(unchanged\) — [\d.]+ s \(read [\d.]+ s, open [\d.]+ s, write [\d.]+ s\)$/m,
      );
      expect(r.err).toContain('secrets: 6/6 (100%)');
      // resources: the first row's file, the policy of the first row with a polid
      expect((await store.getResource('default/resource/cfg'))?.policyName).toBe('simple-kbs-policy-1');
      const conns = await store.listConnections();
      expect(conns.map((c) => c.clientId)).toEqual([fx.connection.id]);
      const days = (conns[0]!.expiresAt.getTime() - Date.now()) / 86400_000;
      expect(days).toBeGreaterThan(29.9);
      expect(days).toBeLessThan(30.1);
    });

    it('a launch over gRPC receives every imported item as simple-kbs would send it', async () => {
      broker = await startBrokerProcess({ dir: work, databaseUrl: target.url, masterKeyFile: keyFile, platform });
      host = new HostClient(broker.keybroker);
      const req = (n: number, SecretType: string, Id: string, Format = 'binary') => ({ Guid: G(n), Format, SecretType, Id });
      const requests = [
        req(1, 'key', 'key_id1'),
        req(2, 'key', 'key_id1', 'json'),
        req(3, 'bundle', 'KEYSET-1', 'JSON'),
        req(4, 'bundle', 'KEYSET-2', 'JSON'),
        req(5, 'bundle', 'KEYSET-EMPTY'),
        req(6, 'bundle', 'KEYSET-BADJSON'),
        req(7, 'resource', 'default/resource/cfg'),
        req(8, 'resource', 'default/resource/img', 'json'),
        req(9, 'report', 'report-1', 'json'),
        req(10, 'key', 'default/key/fw'),
        req(11, 'key', 'default/key/failopen'),
        req(12, 'key', 'default/key/empty', 'json'),
        req(13, 'bundle', 'KEYSET-MISSING-POLICY'),
        req(14, 'report', 'report-failopen'),
      ];
      const { secrets } = await simulatedLaunch(host, platform, { policy: SEV_POLICY, requests, description: DESCRIPTION });
      const got = new Map(secrets.map((s) => [s.guid, s.data]));
      const s = fx.secrets;
      expect(got.get(G(1))).toEqual(Buffer.from(s.key_id1!, 'base64'));
      expect(got.get(G(2))!.toString()).toBe(`{"id":"key_id1","payload":"${s.key_id1}"}`);
      expect(got.get(G(3))!.toString()).toBe(`{"key_id1":"${s.key_id1}"}`);
      expect(JSON.parse(got.get(G(4))!.toString())).toEqual({ key_id1: s.key_id1, 'default/key/k2': s['default/key/k2'] });
      expect(got.get(G(5))!.toString()).toBe('{}');
      expect(got.get(G(6))!.toString()).toBe('{}');
      expect(got.get(G(7))).toEqual(fx.resources['default/resource/cfg']);
      expect(got.get(G(8))).toEqual(bincodeOne('default/resource/img', Buffer.from(fx.resources['default/resource/img']!.toString('base64'))));
      const fw = platform.firmware;
      for (const g of [G(9), G(14)]) {
        const report = JSON.parse(got.get(g)!.toString()) as { connection: string; signature: string };
        // serde_json of simple-kbs's Connection struct, fields in declaration order; launch_description as sent
        expect(report.connection).toBe(
          `{"policy":${SEV_POLICY},"fw_api_major":${fw.apiMajor},"fw_api_minor":${fw.apiMinor},"fw_build_id":${fw.build},"launch_description":"${DESCRIPTION}","fw_digest":"${fx.digestB64}"}`,
        );
        const pub = createPublicKey(createPrivateKey({ key: fx.reportKeyPkcs8, format: 'der', type: 'pkcs8' }));
        expect(createVerify('sha256').update(report.connection).verify(pub, Buffer.from(report.signature, 'base64'))).toBe(true);
      }
      expect(got.get(G(10))).toEqual(Buffer.from(s['default/key/fw']!, 'base64')); // 1.55 passes a 0.65 minimum
      expect(got.get(G(11))!.toString()).toBe('released under the tenant default alone');
      expect(got.get(G(12))!.toString()).toBe('{"id":"default/key/empty","payload":""}');
      expect(got.get(G(13))!.toString()).toBe(`{"key_id1":"${s.key_id1}"}`);
    }, 120_000);

    it('a secret behind a policy that refuses the launch is refused', async () => {
      const e = await simulatedLaunch(host, platform, {
        policy: SEV_POLICY,
        requests: [{ Guid: G(1), Format: 'binary', SecretType: 'key', Id: 'default/key/denied' }],
      }).then(
        () => undefined,
        (err: ServiceError) => err,
      );
      expect(e?.details).toMatch(/^attestation failed \(ref [0-9a-f]{12}\)$/);
    });

    it('the imported online connection serves GetOnlineSecret with its simple-kbs key', async () => {
      const guid = randomUUID();
      const res = await host.getOnlineSecret({
        ClientId: fx.connection.id,
        SecretRequests: [
          { Guid: guid, Format: 'binary', SecretType: 'key', Id: 'key_id1' },
          { Guid: G(2), Format: 'binary', SecretType: 'resource', Id: 'default/resource/img' },
        ],
      });
      const ct = Buffer.from(res.Payload, 'base64');
      const d = createDecipheriv('aes-256-gcm', fx.connection.symkey, Buffer.from(res.IV, 'base64'));
      d.setAuthTag(ct.subarray(ct.length - 16));
      const plain = Buffer.concat([d.update(ct.subarray(0, ct.length - 16)), d.final()]);
      const key = Buffer.from(fx.secrets.key_id1!, 'base64');
      const img = fx.resources['default/resource/img']!;
      const u64 = (n: number) => {
        const b = Buffer.alloc(8);
        b.writeBigUInt64LE(BigInt(n));
        return b;
      };
      // bincode HashMap<String, Vec<u8>>, in request order here
      expect(plain).toEqual(Buffer.concat([u64(2), u64(36), Buffer.from(guid), u64(key.length), key, u64(36), Buffer.from(G(2)), u64(img.length), img]));
    });

    it('an online report over the imported connection signs its stored launch facts and description, as simple-kbs', async () => {
      const res = await host.getOnlineSecret({
        ClientId: fx.connection.id,
        SecretRequests: [{ Guid: G(9), Format: 'json', SecretType: 'report', Id: 'report-1' }],
      });
      const ct = Buffer.from(res.Payload, 'base64');
      const d = createDecipheriv('aes-256-gcm', fx.connection.symkey, Buffer.from(res.IV, 'base64'));
      d.setAuthTag(ct.subarray(ct.length - 16));
      const plain = Buffer.concat([d.update(ct.subarray(0, ct.length - 16)), d.final()]);
      const value = plain.subarray(8 + 8 + 36 + 8); // count, key length, GUID, value length
      const report = JSON.parse(value.toString()) as { connection: string; signature: string };
      const fw = platform.firmware;
      expect(report.connection).toBe(
        `{"policy":1,"fw_api_major":${fw.apiMajor},"fw_api_minor":${fw.apiMinor},"fw_build_id":${fw.build},"launch_description":"shim launch","fw_digest":"${fx.digestB64}"}`,
      );
      const pub = createPublicKey(createPrivateKey({ key: fx.reportKeyPkcs8, format: 'der', type: 'pkcs8' }));
      expect(createVerify('sha256').update(report.connection).verify(pub, Buffer.from(report.signature, 'base64'))).toBe(true);
    });

    it('re-running the import (the broker running meanwhile) changes nothing', async () => {
      const before = await store.listConnections();
      const r = await run(['--on-missing-policy', 'default-only', '--connection-expiry', '1h']);
      expect(r.code).toBe(0);
      expect(r.out).toMatch(/^imported 0 policies, 0 secrets, 0 keysets, 0 resources, 0 report keys, 0 connections; 21 already present and identical/m);
      expect(await store.listConnections()).toEqual(before); // the first import's expiry stays
    });
  });
}
