import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { CliError, type Command, type Group, type Io } from '../cli';
import type { ServiceConnection } from './client';
import { SERVICE_HELP, serviceOptions } from './flags';
import { buildRegistration, checkUuid, REGISTRATION_HELP, registrationOptions } from './registration';

/**
 * `kbctl vm …` and `kbctl firmware …`: the guest owner's side of the attestation service (issue #15), over its REST
 * API. The HTTP client is imported when a command runs, so the command tree and --help load no network code.
 */
type Run = (c: ServiceConnection, v: Record<string, unknown>, pos: string[], io: Io) => Promise<number>;

function cmd(name: string, summary: string, synopsis: string, extra: Command['options'], positionals: [number, number], run: Run): Command {
  return {
    name,
    summary,
    usage: `${synopsis}\n\n${SERVICE_HELP}\n`,
    options: { ...serviceOptions, ...extra },
    positionals: { min: positionals[0], max: positionals[1] },
    async run({ values, positionals: pos }, io) {
      const { ServiceConnection } = await import('./client');
      return run(new ServiceConnection(values, io), values, pos, io);
    },
  };
}

const HEX64 = /^[0-9a-fA-F]{64}$/;
const hex = (n: unknown) => (typeof n === 'number' ? `0x${n.toString(16)}` : '-');

export const vmGroup: Group = {
  name: 'vm',
  summary: 'register, show, list and delete VMs at the attestation service (launched from <attestation> XML)',
  commands: [
    cmd(
      'register',
      'register a VM: policy, accepted firmware, kernel hashes, cloud OCA, secrets',
      REGISTRATION_HELP,
      registrationOptions,
      [1, 2],
      async (c, v, [uuid, file], io) => {
        const id = checkUuid(uuid!);
        const body = buildRegistration(io, file, v);
        const replace = v.replace === true;
        const r = await c.call(replace ? 'PUT' : 'POST', `/vm/${id}`, { json: body }, replace ? [200, 201, 204] : [200, 201]).catch((e: unknown) => {
          if (e instanceof CliError && !replace && (e as { status?: number }).status === 409)
            throw new CliError(`${e.message} (use --replace to replace the registration)`, e.exitCode);
          throw e;
        });
        const secrets = Array.isArray(body.secrets) ? body.secrets.length : 0;
        const fw = (body['firmware-hashes'] as string[]).length;
        io.out(
          `vm ${id} ${replace ? 'replaced' : 'registered'} at ${c.base} (HTTP ${r.status}): policy ${hex(body.policy)}, ${fw} firmware image${fw === 1 ? '' : 's'}, ${body['kernel-hash'] ? 'kernel hashes' : 'disk boot'}, ${secrets} secret${secrets === 1 ? '' : 's'}`,
        );
        io.out(`launch it with <launchSecurity type='sev'><attestation vmid='${id}' service='${c.base}'/></launchSecurity>`);
        return 0;
      },
    ),
    cmd('get', 'show a registration (secrets as their guid/type only)', 'Usage: kbctl vm get UUID', {}, [1, 1], async (c, _v, [uuid], io) => {
      const r = await c.call('GET', `/vm/${checkUuid(uuid!)}`, undefined, [200]);
      io.out(JSON.stringify(r.json ?? {}, null, 2));
      return 0;
    }),
    cmd('list', 'list the registered VMs you may see', 'Usage: kbctl vm list [--json]', { json: { type: 'boolean' } }, [0, 0], async (c, v, _p, io) => {
      const vms: Record<string, unknown>[] = [];
      let token = '';
      do {
        const r = await c.call('GET', `/vm${token ? `?page-token=${encodeURIComponent(token)}` : ''}`, undefined, [200]);
        const page = r.json?.vms;
        if (!Array.isArray(page)) throw new CliError('the service\'s list answer has no "vms" list');
        vms.push(...(page as Record<string, unknown>[]));
        const next = r.json?.['next-page-token'];
        token = typeof next === 'string' ? next : '';
      } while (token);
      if (v.json) io.out(JSON.stringify({ vms }, null, 2));
      else
        for (const vm of vms)
          io.out([vm.uuid, `policy ${hex(vm.policy)}`, ...(typeof vm['cpu-count'] === 'number' ? [`${vm['cpu-count']} vCPU`] : [])].join('\t'));
      if (!v.json && vms.length === 0) io.err('no VMs registered');
      return 0;
    }),
    cmd(
      'delete',
      'delete a registration (its launches end: /launch and /validate refuse it)',
      'Usage: kbctl vm delete UUID',
      {},
      [1, 1],
      async (c, _v, [uuid], io) => {
        const id = checkUuid(uuid!);
        await c.call('DELETE', `/vm/${id}`, undefined, [200, 204]);
        io.out(`vm ${id} deleted`);
        return 0;
      },
    ),
  ],
};

export const firmwareGroup: Group = {
  name: 'firmware',
  summary: "the attestation service's firmware catalogue (the bytes launch digests are computed from)",
  commands: [
    cmd(
      'add',
      'upload a firmware image (e.g. OVMF.fd); prints its SHA-256 for "firmware-hashes"',
      'Usage: kbctl firmware add OVMF.fd\n\n  The service keeps the image once, under its SHA-256: registrations name it by that hash and the service\n  computes each launch digest from its bytes (the owner gives hashes, not digests).',
      {},
      [1, 1],
      async (c, _v, [file], io) => {
        let bytes: Buffer;
        try {
          bytes = readFileSync(resolve(io.cwd, file!));
        } catch (e) {
          const code = (e as NodeJS.ErrnoException).code;
          throw new CliError(`cannot read the firmware ${file}: ${code === 'ENOENT' ? 'no such file' : (code ?? String(e))}`);
        }
        if (bytes.length === 0) throw new CliError(`the firmware ${file} is empty`);
        const local = createHash('sha256').update(bytes).digest('hex');
        io.err(`uploading ${file} (${bytes.length} bytes) to ${c.base}…`);
        const r = await c.call('POST', '/firmware', { bytes }, [200, 201]);
        const remote = r.json?.sha256;
        if (remote !== local)
          throw new CliError(`the service stored the firmware as ${String(remote)}, but its SHA-256 here is ${local}: the upload was altered on the way`);
        io.out(`${local}\t${file} (${bytes.length} bytes)${r.status === 200 ? ', already in the catalogue' : ''}`);
        return 0;
      },
    ),
    cmd(
      'list',
      'list the catalogue: SHA-256, size, when added',
      'Usage: kbctl firmware list [--json]',
      { json: { type: 'boolean' } },
      [0, 0],
      async (c, v, _p, io) => {
        const r = await c.call('GET', '/firmware', undefined, [200]);
        const list = r.json?.firmware;
        if (!Array.isArray(list)) throw new CliError('the service\'s answer has no "firmware" list');
        if (v.json) io.out(JSON.stringify({ firmware: list }, null, 2));
        else for (const f of list as Record<string, unknown>[]) io.out(`${String(f.sha256)}\t${String(f.size)} bytes\t${String(f['added-at'])}`);
        if (!v.json && list.length === 0) io.err('the firmware catalogue is empty');
        return 0;
      },
    ),
    cmd('delete', 'remove a firmware image from the catalogue', 'Usage: kbctl firmware delete SHA256', {}, [1, 1], async (c, _v, [sha], io) => {
      if (!HEX64.test(sha!)) throw new CliError(`'${sha}' is not a SHA-256 (64 hex digits, as 'kbctl firmware list' shows)`, 2);
      await c.call('DELETE', `/firmware/${sha!.toLowerCase()}`, undefined, [200, 204]);
      io.out(`firmware ${sha!.toLowerCase()} deleted`);
      return 0;
    }),
  ],
};
