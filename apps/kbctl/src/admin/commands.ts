import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import type { admin } from '@kb/grpc-api';
import { CliError, type Command, type Group, type Io } from '../cli';
import type { AdminConnection } from './client';
import { CONNECTION_HELP, connectionOptions } from '../connection-flags';

/** The admin groups of kbctl: thin wrappers over kb.admin.v1.BrokerAdmin. */

type Run = (c: AdminConnection, v: Record<string, unknown>, pos: string[], io: Io) => Promise<number>;

export function cmd(name: string, summary: string, synopsis: string, extra: Command['options'], positionals: [number, number], run: Run): Command {
  return {
    name,
    summary,
    usage: `${synopsis}\n\n${CONNECTION_HELP}\n`,
    options: { ...connectionOptions, ...extra },
    positionals: { min: positionals[0], max: positionals[1] },
    async run({ values, positionals: pos }, io) {
      // Loaded here, not at the top: the gRPC client is only for commands that call the broker.
      const { AdminConnection } = await import('./client');
      const c = new AdminConnection(values, io);
      try {
        return await run(c, values, pos, io);
      } finally {
        c.close();
      }
    },
  };
}

/** The bytes of FILE (relative to io.cwd), or of standard input for '-'. */
function readInput(io: Io, path: string, what: string): Buffer {
  try {
    if (path === '-') return io.stdin ? io.stdin() : readFileSync(0);
    return readFileSync(resolve(io.cwd, path));
  } catch (e) {
    throw new CliError(`cannot read ${what} from ${path}: ${(e as NodeJS.ErrnoException).code ?? e}`);
  }
}

/**
 * Every entry of a list call, following its pages (next_page_token) so that no response has to hold the whole list:
 * the broker bounds each page well under the 4 MiB a gRPC client accepts.
 */
export async function listAll<Res extends { next_page_token: string }, K extends keyof Res>(
  c: AdminConnection,
  method: keyof admin.BrokerAdminClient & string,
  prefix: string,
  field: K,
): Promise<Res[K]> {
  const items: unknown[] = [];
  let page_token = '';
  do {
    const r = await c.call<admin.ListRequest, Res>(method, { prefix, page_size: 0, page_token });
    items.push(...(r[field] as unknown[]));
    page_token = r.next_page_token;
  } while (page_token);
  return items as Res[K];
}

const json = (io: Io, o: unknown) => io.out(JSON.stringify(o, null, 2));
const policyOpt = { policy: { type: 'string' } } as const;
const prefixOpt = { prefix: { type: 'string' } } as const;

const policy: Group = {
  name: 'policy',
  summary: 'create, show, list and delete release policies',
  commands: [
    cmd(
      'put',
      'create or replace a policy from a JSON file',
      'Usage: kbctl policy put NAME FILE\n\n  FILE   the policy document (JSON; - for stdin). See README "Policies".',
      {},
      [2, 2],
      async (c, _v, [name, file], io) => {
        const doc = readInput(io, file!, 'the policy').toString('utf8');
        const p = await c.call<admin.PutPolicyRequest, admin.Policy>('putPolicy', { name: name!, document_json: doc });
        io.out(`policy ${p.name} stored (updated ${p.updated_at})`);
        return 0;
      },
    ),
    cmd('get', 'print a policy document', 'Usage: kbctl policy get NAME', {}, [1, 1], async (c, _v, [name], io) => {
      const p = await c.call<admin.NameRequest, admin.Policy>('getPolicy', { name: name! });
      io.out(JSON.stringify(JSON.parse(p.document_json), null, 2));
      return 0;
    }),
    cmd('list', 'list policy names', 'Usage: kbctl policy list [--prefix P]', prefixOpt, [0, 0], async (c, v, _p, io) => {
      const policies = await listAll<admin.ListPoliciesResponse, 'policies'>(c, 'listPolicies', (v.prefix as string) ?? '', 'policies');
      for (const p of policies) io.out(`${p.name}\t${p.updated_at}`);
      return 0;
    }),
    cmd('delete', 'delete a policy (refused while something uses it)', 'Usage: kbctl policy delete NAME', {}, [1, 1], async (c, _v, [name], io) => {
      await c.call('deletePolicy', { name });
      io.out(`policy ${name} deleted`);
      return 0;
    }),
  ],
};

const secret: Group = {
  name: 'secret',
  summary: 'store secrets (write-only: values are never read back)',
  commands: [
    cmd(
      'put',
      'store a secret value',
      'Usage: kbctl secret put ID (--file F | --value TEXT | --base64 B64) [--policy NAME]\n\n  ID              the id guest-side clients request, e.g. default/key/key_id1\n  --file F        the value is the bytes of F (- for stdin)\n  --value TEXT    the value is TEXT (UTF-8)\n  --base64 B64    the value is the decoded bytes\n  --policy NAME   a policy that must pass (in addition to the tenant default) to release it',
      { file: { type: 'string' }, value: { type: 'string' }, base64: { type: 'string' }, ...policyOpt },
      [1, 1],
      async (c, v, [id], io) => {
        const given = ['file', 'value', 'base64'].filter((k) => v[k] !== undefined);
        if (given.length !== 1) throw new CliError('give exactly one of --file, --value, --base64', 2);
        let value: Buffer;
        if (v.file !== undefined) value = readInput(io, v.file as string, 'the secret');
        else if (v.value !== undefined) value = Buffer.from(v.value as string, 'utf8');
        else {
          const b = v.base64 as string;
          if (!/^[A-Za-z0-9+/]*={0,2}$/.test(b) || b.length % 4 !== 0) throw new CliError('--base64 is not valid base64', 2);
          value = Buffer.from(b, 'base64');
        }
        const s = await c.call<admin.PutSecretRequest, admin.SecretInfo>('putSecret', { id: id!, value, policy_name: (v.policy as string) ?? '' });
        io.out(`secret ${s.id} stored (${s.size} bytes${s.policy_name ? `, policy ${s.policy_name}` : ''})`);
        return 0;
      },
    ),
    cmd('info', "show a secret's metadata", 'Usage: kbctl secret info ID', {}, [1, 1], async (c, _v, [id], io) => {
      json(io, await c.call('getSecretInfo', { name: id }));
      return 0;
    }),
    cmd('list', 'list secret ids', 'Usage: kbctl secret list [--prefix P]', prefixOpt, [0, 0], async (c, v, _p, io) => {
      const secrets = await listAll<admin.ListSecretsResponse, 'secrets'>(c, 'listSecrets', (v.prefix as string) ?? '', 'secrets');
      for (const s of secrets) io.out(`${s.id}\t${s.size}\t${s.policy_name || '-'}`);
      return 0;
    }),
    cmd('delete', 'delete a secret', 'Usage: kbctl secret delete ID', {}, [1, 1], async (c, _v, [id], io) => {
      await c.call('deleteSecret', { name: id });
      io.out(`secret ${id} deleted`);
      return 0;
    }),
  ],
};

const keyset: Group = {
  name: 'keyset',
  summary: "group secrets for the 'bundle' secret type",
  commands: [
    cmd(
      'put',
      'create or replace a keyset',
      'Usage: kbctl keyset put ID SECRET_ID... [--policy NAME]',
      policyOpt,
      [2, 1000],
      async (c, v, [id, ...ids], io) => {
        const k = await c.call<admin.Keyset, admin.Keyset>('putKeyset', { id: id!, secret_ids: ids, policy_name: (v.policy as string) ?? '' });
        io.out(`keyset ${k.id} stored (${k.secret_ids.length} secrets)`);
        return 0;
      },
    ),
    cmd('get', 'show a keyset', 'Usage: kbctl keyset get ID', {}, [1, 1], async (c, _v, [id], io) => {
      json(io, await c.call('getKeyset', { name: id }));
      return 0;
    }),
    cmd('list', 'list keysets', 'Usage: kbctl keyset list [--prefix P]', prefixOpt, [0, 0], async (c, v, _p, io) => {
      const keysets = await listAll<admin.ListKeysetsResponse, 'keysets'>(c, 'listKeysets', (v.prefix as string) ?? '', 'keysets');
      for (const k of keysets) io.out(`${k.id}\t${k.secret_ids.join(',')}\t${k.policy_name || '-'}`);
      return 0;
    }),
    cmd('delete', 'delete a keyset', 'Usage: kbctl keyset delete ID', {}, [1, 1], async (c, _v, [id], io) => {
      await c.call('deleteKeyset', { name: id });
      io.out(`keyset ${id} deleted`);
      return 0;
    }),
  ],
};

const resource: Group = {
  name: 'resource',
  summary: "store resources for the 'resource' secret type (bytes kept in the database)",
  commands: [
    cmd(
      'put',
      'store a resource',
      'Usage: kbctl resource put ID FILE [--policy NAME]\n\n  FILE   the bytes (- for stdin)',
      policyOpt,
      [2, 2],
      async (c, v, [id, file], io) => {
        const r = await c.call<admin.PutResourceRequest, admin.ResourceInfo>('putResource', {
          id: id!,
          data: readInput(io, file!, 'the resource'),
          policy_name: (v.policy as string) ?? '',
        });
        io.out(`resource ${r.id} stored (${r.size} bytes)`);
        return 0;
      },
    ),
    cmd('info', "show a resource's metadata", 'Usage: kbctl resource info ID', {}, [1, 1], async (c, _v, [id], io) => {
      json(io, await c.call('getResourceInfo', { name: id }));
      return 0;
    }),
    cmd('list', 'list resources', 'Usage: kbctl resource list [--prefix P]', prefixOpt, [0, 0], async (c, v, _p, io) => {
      const resources = await listAll<admin.ListResourcesResponse, 'resources'>(c, 'listResources', (v.prefix as string) ?? '', 'resources');
      for (const x of resources) io.out(`${x.id}\t${x.size}\t${x.policy_name || '-'}`);
      return 0;
    }),
    cmd('delete', 'delete a resource', 'Usage: kbctl resource delete ID', {}, [1, 1], async (c, _v, [id], io) => {
      await c.call('deleteResource', { name: id });
      io.out(`resource ${id} deleted`);
      return 0;
    }),
  ],
};

const KBS_PATH_RE = /^[A-Za-z0-9_-][A-Za-z0-9_.-]*\/[A-Za-z0-9_-][A-Za-z0-9_.-]*\/[A-Za-z0-9_-][A-Za-z0-9_.-]*$/;
const kbsPathArg = (p: string): string => {
  if (!KBS_PATH_RE.test(p)) throw new CliError(`${JSON.stringify(p)} is not REPOSITORY/TYPE/TAG (letters, digits, _ - . in each part, not starting with .)`, 2);
  return p;
};

const kbsResource: Group = {
  name: 'kbs-resource',
  summary: 'resources for Confidential Containers guests (KBS protocol, kbs:///REPO/TYPE/TAG); values write-only',
  commands: [
    cmd(
      'put',
      'store a KBS resource',
      'Usage: kbctl kbs-resource put REPO/TYPE/TAG (--file F | --value TEXT) [--policy NAME]\n\n  REPO/TYPE/TAG   the path guests ask for, e.g. default/key/key_id1 (kbs:///default/key/key_id1)\n  --file F        the resource is the bytes of F (- for stdin), at most 1 MiB\n  --value TEXT    the resource is TEXT (UTF-8)\n  --policy NAME   a policy that must pass too (tenant default AND it); SNP guests need its "snp" rules',
      { file: { type: 'string' }, value: { type: 'string' }, ...policyOpt },
      [1, 1],
      async (c, v, [path], io) => {
        const given = ['file', 'value'].filter((k) => v[k] !== undefined);
        if (given.length !== 1) throw new CliError('give exactly one of --file, --value', 2);
        const data = v.file !== undefined ? readInput(io, v.file as string, 'the resource') : Buffer.from(v.value as string, 'utf8');
        const r = await c.call<admin.PutKbsResourceRequest, admin.KbsResourceInfo>('putKbsResource', {
          path: kbsPathArg(path!),
          data,
          policy_name: (v.policy as string) ?? '',
        });
        io.out(`KBS resource ${r.path} stored (${r.size} bytes${r.policy_name ? `, policy ${r.policy_name}` : ''})`);
        return 0;
      },
    ),
    cmd('info', "show a KBS resource's metadata (never its value)", 'Usage: kbctl kbs-resource info REPO/TYPE/TAG', {}, [1, 1], async (c, _v, [path], io) => {
      json(io, await c.call('getKbsResourceInfo', { name: kbsPathArg(path!) }));
      return 0;
    }),
    cmd('list', 'list KBS resources (path, size, policy)', 'Usage: kbctl kbs-resource list [--prefix P]', prefixOpt, [0, 0], async (c, v, _p, io) => {
      const resources = await listAll<admin.ListKbsResourcesResponse, 'resources'>(c, 'listKbsResources', (v.prefix as string) ?? '', 'resources');
      for (const x of resources) io.out(`${x.path}\t${x.size}\t${x.policy_name || '-'}`);
      return 0;
    }),
    cmd('delete', 'delete a KBS resource', 'Usage: kbctl kbs-resource delete REPO/TYPE/TAG', {}, [1, 1], async (c, _v, [path], io) => {
      await c.call('deleteKbsResource', { name: kbsPathArg(path!) });
      io.out(`KBS resource ${path} deleted`);
      return 0;
    }),
  ],
};

const REPORT_KEY_CREATE_USAGE = `Usage: kbctl report-key create ID [--policy NAME] [--import PKCS8_PEM_FILE] [--sign-launch-description]

  --sign-launch-description   reports signed with this key carry the LaunchDescription the host sent, as simple-kbs
                              did. It is host-supplied and unverified: by default it is signed as empty.`;

const reportKey: Group = {
  name: 'report-key',
  summary: "signing keys for the 'report' secret type (ECDSA P-256)",
  commands: [
    cmd(
      'create',
      'generate (or import) a signing key; prints its public key',
      REPORT_KEY_CREATE_USAGE,
      { ...policyOpt, import: { type: 'string' }, 'sign-launch-description': { type: 'boolean' } },
      [1, 1],
      async (c, v, [id], io) => {
        const pem = v.import ? readInput(io, v.import as string, 'the private key').toString('utf8') : '';
        const k = await c.call<admin.CreateReportKeyRequest, admin.ReportKey>('createReportKey', {
          id: id!,
          policy_name: (v.policy as string) ?? '',
          private_key_pem: pem,
          sign_launch_description: v['sign-launch-description'] === true,
        });
        io.out(k.public_key_pem.trimEnd());
        return 0;
      },
    ),
    cmd('get', 'print the public key', 'Usage: kbctl report-key get ID', {}, [1, 1], async (c, _v, [id], io) => {
      const k = await c.call<admin.NameRequest, admin.ReportKey>('getReportKey', { name: id! });
      io.out(k.public_key_pem.trimEnd());
      return 0;
    }),
    cmd(
      'list',
      'list report keys',
      'Usage: kbctl report-key list [--prefix P]\n\nOne line per key: id, policy, created, and "signs-launch-description" for keys created with that option.',
      prefixOpt,
      [0, 0],
      async (c, v, _p, io) => {
        const keys = await listAll<admin.ListReportKeysResponse, 'keys'>(c, 'listReportKeys', (v.prefix as string) ?? '', 'keys');
        for (const k of keys) io.out(`${k.id}\t${k.policy_name || '-'}\t${k.created_at}${k.sign_launch_description ? '\tsigns-launch-description' : ''}`);
        return 0;
      },
    ),
    cmd('delete', 'delete a report key', 'Usage: kbctl report-key delete ID', {}, [1, 1], async (c, _v, [id], io) => {
      await c.call('deleteReportKey', { name: id });
      io.out(`report key ${id} deleted`);
      return 0;
    }),
  ],
};

const connection: Group = {
  name: 'connection',
  summary: 'online connections (GetOnlineSecret): list and revoke',
  commands: [
    cmd('list', 'list connections', 'Usage: kbctl connection list', {}, [0, 0], async (c, _v, _p, io) => {
      const connections = await listAll<admin.ListConnectionsResponse, 'connections'>(c, 'listConnections', '', 'connections');
      for (const x of connections) {
        const state = x.revoked_at ? `revoked ${x.revoked_at}` : `expires ${x.expires_at}`;
        io.out(`${x.client_id}\tpolicy 0x${x.sev_policy.toString(16)}\t${state}`);
      }
      return 0;
    }),
    cmd('revoke', 'revoke a connection now', 'Usage: kbctl connection revoke CLIENT_ID', {}, [1, 1], async (c, _v, [id], io) => {
      await c.call('revokeConnection', { client_id: id });
      io.out(`connection ${id} revoked`);
      return 0;
    }),
  ],
};

/** the broker caps ListAudit at this many entries */
const MAX_AUDIT_LIMIT = 10_000;

const audit: Command = cmd(
  'audit',
  'read the audit trail (why a launch was refused, what was released)',
  `Usage: kbctl audit [--since ISO_TIME] [--launch LAUNCH_ID] [--ref REF_ID] [--limit N] [--json]\n\n  --since ISO_TIME    only entries at or after this time\n  --launch LAUNCH_ID  only entries of this launch\n  --ref REF_ID        the reference a host saw in an error message\n  --limit N           at most N entries (default 100, at most ${MAX_AUDIT_LIMIT})\n  --json              print a JSON array instead of tab-separated lines`,
  { since: { type: 'string' }, launch: { type: 'string' }, ref: { type: 'string' }, limit: { type: 'string' }, json: { type: 'boolean' } },
  [0, 0],
  async (c, v, _p, io) => {
    const limit = v.limit === undefined ? 100 : Number(v.limit);
    if (!Number.isInteger(limit) || limit < 1 || limit > MAX_AUDIT_LIMIT) throw new CliError(`--limit must be an integer in 1..${MAX_AUDIT_LIMIT}`, 2);
    // pages until --limit entries or the end of the trail (each response stays under the client's message limit)
    const entries: admin.AuditEntry[] = [];
    let page_token = '';
    do {
      const r = await c.call<admin.ListAuditRequest, admin.ListAuditResponse>('listAudit', {
        since: (v.since as string) ?? '',
        launch_id: (v.launch as string) ?? '',
        ref_id: (v.ref as string) ?? '',
        limit: limit - entries.length,
        page_token,
      });
      entries.push(...r.entries);
      page_token = r.next_page_token;
    } while (page_token && entries.length < limit);
    const r = { entries };
    if (r.entries.length === 0) io.err('no audit entries matched');
    if (v.json)
      json(
        io,
        r.entries.map((e) => ({ ...e, detail: e.detail_json ? JSON.parse(e.detail_json) : undefined, detail_json: undefined })),
      );
    else for (const e of r.entries) io.out(`${e.at}\t${e.event}\t${e.outcome}\t${e.launch_id || e.client_id || '-'}\tref=${e.ref_id || '-'}\t${e.detail_json}`);
    return 0;
  },
);

const OWNER_CREATE_USAGE = `Usage: kbctl owner create NAME

Creates a guest owner for the attestation service (/sev/v1) and prints its token once: the broker keeps only its
SHA-256. With it (Authorization: Bearer TOKEN) the owner registers, reads, replaces and deletes its own VMs only and
adds firmware; the admin token acts on every VM.`;

const owner: Group = {
  name: 'owner',
  summary: 'guest owners of the attestation service: per-owner tokens scoped to their own VMs',
  commands: [
    cmd('create', 'create an owner; prints its token (once)', OWNER_CREATE_USAGE, {}, [1, 1], async (c, _v, [name], io) => {
      const o = await c.call<admin.NameRequest, admin.CreatedOwner>('createOwner', { name: name! });
      io.out(o.token);
      return 0;
    }),
    cmd('list', 'list owners', 'Usage: kbctl owner list [--prefix P]\n\nOne line per owner: name, created.', prefixOpt, [0, 0], async (c, v, _p, io) => {
      const owners = await listAll<admin.ListOwnersResponse, 'owners'>(c, 'listOwners', (v.prefix as string) ?? '', 'owners');
      for (const o of owners) io.out(`${o.name}\t${o.created_at}`);
      return 0;
    }),
    cmd(
      'delete',
      'delete an owner: its token stops working (its VMs stay, the admin manages them)',
      'Usage: kbctl owner delete NAME',
      {},
      [1, 1],
      async (c, _v, [name], io) => {
        await c.call('deleteOwner', { name });
        io.out(`owner ${name} deleted`);
        return 0;
      },
    ),
  ],
};

export const adminTree = [policy, secret, keyset, resource, kbsResource, reportKey, connection, audit, owner];
