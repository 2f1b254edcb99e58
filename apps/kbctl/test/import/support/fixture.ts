/**
 * One simple-kbs deployment covering every table and every quirk the import must carry (issue #14), with what
 * simple-kbs would release for each item — built from simple-kbs's formats (kbs-compat §1.3), not from our code.
 */
import { createHash, generateKeyPairSync, randomBytes, randomUUID } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { SimulatedPlatform } from '@kb/sev-sim';
import type { Rows } from './schema';

export interface Fixture {
  rows: Rows;
  /** simple-kbs's working directory: resources/ and default_policy.json */
  dir: string;
  digestB64: string;
  secrets: Record<string, string>; // secret_id → stored base64 string
  resources: Record<string, Buffer>; // resource_type → file bytes served
  reportKeyPkcs8: Buffer;
  connection: { id: string; symkey: Buffer };
}

/** The launch every test makes: policy 0x1 (NODBG) on the simulated platform, firmware 1.55 build 21. */
export function buildFixture(dir: string, launchDigest: Buffer, platform: SimulatedPlatform): Fixture {
  mkdirSync(join(dir, 'resources'), { recursive: true });
  const digestB64 = launchDigest.toString('base64');
  const otherDigest = createHash('sha256').update('another firmware').digest('base64');
  const fw = platform.firmware;
  const created = new Date('2024-03-01T10:00:00Z');
  const pol = (id: number, digests: string[], policies: unknown, minMajor: number | null, minMinor: number | null, builds: unknown, valid: number | null) => ({
    id,
    allowed_digests: JSON.stringify(digests),
    allowed_policies: typeof policies === 'string' ? policies : JSON.stringify(policies),
    min_fw_api_major: minMajor,
    min_fw_api_minor: minMinor,
    allowed_build_ids: JSON.stringify(builds),
    create_date: created,
    delete_date: null,
    valid,
  });
  const secrets: Record<string, string> = {
    key_id1: 'RcHGava52DPvj1uoIk/NVDYlwxi0A6yyIZ8ilhEX3X4=', // simple-kbs's initial-data.sql test key
    'default/key/k2': randomBytes(32).toString('base64'),
    'default/key/fw': randomBytes(16).toString('base64'),
    'default/key/denied': randomBytes(16).toString('base64'),
    'default/key/failopen': Buffer.from('released under the tenant default alone').toString('base64'),
    'default/key/empty': '',
  };
  const cfg = randomBytes(300);
  const img = Buffer.from('an image key config\n');
  writeFileSync(join(dir, 'resources', 'cfg.bin'), cfg);
  writeFileSync(join(dir, 'resources', 'other.bin'), randomBytes(10));
  writeFileSync(join(dir, 'resources', 'img.bin'), img);
  // the shipped default: allow everything
  writeFileSync(
    join(dir, 'default_policy.json'),
    JSON.stringify({ allowed_digests: [], allowed_policies: [], min_fw_api_major: 0, min_fw_api_minor: 0, allowed_build_ids: [] }, null, 2),
  );
  const reportKeyPkcs8 = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ format: 'der', type: 'pkcs8' });
  const connection = { id: randomUUID(), symkey: randomBytes(32) };
  const rows: Rows = {
    policy: [
      pol(1, [digestB64], [1, 3], 1, 0, [fw.build], 1), // admits the launch
      pol(2, [], [], 0, 65, [], 1), // 0.65 minimum: 1.55 passes in version order (simple-kbs policy.rs)
      pol(3, [], [], 0, 0, [], 0), // valid = 0: not a policy (fail-open)
      pol(4, [otherDigest], [], 0, 0, [], 1), // refuses the launch
      pol(5, [], '[-1]', 0, 0, [], 1), // allowed_policies not Vec<u32>: simple-kbs cannot decode it (fail-open)
      pol(6, [], [], 0, 0, [], 1), // used by nothing: still imported
    ],
    secrets: [
      { id: 10, secret_id: 'key_id1', secret: secrets.key_id1, polid: null },
      { id: 11, secret_id: 'default/key/k2', secret: secrets['default/key/k2'], polid: 1 },
      { id: 12, secret_id: 'default/key/fw', secret: secrets['default/key/fw'], polid: 2 },
      { id: 13, secret_id: 'default/key/denied', secret: secrets['default/key/denied'], polid: 4 },
      { id: 14, secret_id: 'default/key/failopen', secret: secrets['default/key/failopen'], polid: 3 },
      { id: 15, secret_id: 'default/key/empty', secret: '', polid: null },
      { id: 16, secret_id: 'default/key/null', secret: null, polid: null }, // simple-kbs fails every request: skipped
    ],
    keysets: [
      { id: 10, keysetid: 'KEYSET-1', kskeys: '["key_id1"]', polid: null },
      { id: 11, keysetid: 'KEYSET-2', kskeys: JSON.stringify(['key_id1', 'default/key/k2']), polid: 1 },
      { id: 12, keysetid: 'KEYSET-EMPTY', kskeys: '[]', polid: null },
      { id: 13, keysetid: 'KEYSET-BADJSON', kskeys: 'not json', polid: null }, // read as an empty list
      { id: 14, keysetid: 'KEYSET-MISSING-POLICY', kskeys: '["key_id1"]', polid: 99 }, // fail-open
      { id: 15, keysetid: 'KEYSET-MISSING-SECRET', kskeys: '["no-such-secret"]', polid: null }, // skipped
    ],
    resources: [
      // requests name resource_type; two rows share one: the first row's file, the policy of the first with a polid
      { id: 1, resource_id: 'r1', resource_type: 'default/resource/cfg', resource_path: 'cfg.bin', polid: null },
      { id: 2, resource_id: 'r2', resource_type: 'default/resource/cfg', resource_path: 'other.bin', polid: 1 },
      { id: 3, resource_id: 'default/resource/img', resource_type: 'default/resource/img', resource_path: 'img.bin', polid: 1 },
    ],
    report_keypair: [
      { id: 1, key_id: 'report-1', keypair: reportKeyPkcs8.toString('base64'), polid: null },
      { id: 2, key_id: 'report-failopen', keypair: reportKeyPkcs8.toString('base64'), polid: 5 },
    ],
    conn_bundle: [
      {
        id: connection.id,
        sev_version: null,
        policy: 1,
        fw_api_major: fw.apiMajor,
        fw_api_minor: fw.apiMinor,
        fw_build_id: fw.build,
        launch_description: 'shim launch',
        fw_digest: digestB64,
        symkey: connection.symkey.toString('base64'),
        create_date: created,
        delete_date: null,
      },
      {
        id: randomUUID(),
        sev_version: null,
        policy: 1,
        fw_api_major: 1,
        fw_api_minor: 55,
        fw_build_id: 21,
        launch_description: 'x',
        fw_digest: digestB64,
        symkey: null,
        create_date: created,
        delete_date: null,
      },
    ],
  };
  return { rows, dir, digestB64, secrets, resources: { 'default/resource/cfg': cfg, 'default/resource/img': img }, reportKeyPkcs8, connection };
}
