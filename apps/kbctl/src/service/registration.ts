import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { cmdlineHash, isGuid, isSevError, parseSevCertificate, SEV_CERT_SIZE, Usage } from '@kb/sev';
import { CliError, type Io } from '../cli';

/**
 * `kbctl vm register UUID [FILE.json] [flags]`: the registration body (issue #15, field names from the libvirt
 * proposal ../shared/seeds/004) from a JSON file, flags, or both (a flag replaces the file's field of that name).
 * Pure apart from reading the files named: tested offline, and nothing is sent when anything here is wrong.
 */
export const registrationOptions = {
  firmware: { type: 'string', multiple: true },
  'firmware-hash': { type: 'string', multiple: true },
  kernel: { type: 'string' },
  initrd: { type: 'string' },
  append: { type: 'string' },
  policy: { type: 'string' },
  'cpu-count': { type: 'string' },
  'cpu-model': { type: 'string', multiple: true },
  'cloud-cert': { type: 'string', multiple: true },
  'luks-passphrase-file': { type: 'string' },
  secret: { type: 'string', multiple: true },
  'max-launches': { type: 'string' },
  replace: { type: 'boolean' },
} as const;

export const REGISTRATION_HELP = `Usage: kbctl vm register UUID [FILE.json] [flags]

Registers the VM UUID (the vmid in its domain XML's <attestation>) with the attestation service: POST {service}/vm/UUID
(--replace: PUT, replacing an existing registration). FILE.json is the body (README "Launching a guest"; - for stdin);
the flags build it or replace its fields:
  --firmware OVMF.fd        an accepted firmware: its SHA-256 goes into "firmware-hashes" (repeatable; add its bytes
                            once with 'kbctl firmware add', the service computes launch digests from them)
  --firmware-hash HEX       ... or an accepted firmware's SHA-256 directly (repeatable)
  --kernel FILE             direct kernel boot with kernel hashes: "kernel-hash" (and "initrd-hash"/"cmdline-hash",
  --initrd FILE               those of an empty initrd / command line when not given, as QEMU measures them)
  --append TEXT             the kernel command line, exactly as in the XML's <cmdline>
  --policy N                the SEV guest policy (0x5: SEV-ES, no debug); "policy"
  --cpu-count N             vCPUs ("cpu-count": one VMSA each for SEV-ES)
  --cpu-model NAME          a vCPU model the owner allows for SEV-ES (repeatable; "cpu-models"), e.g. EPYC-Milan
  --cloud-cert FILE         the cloud owner's OCA certificate (${SEV_CERT_SIZE} bytes, as sevctl export writes it); hosts
                            whose chain has another OCA are refused (repeatable: "cloud-certs")
  --luks-passphrase-file F  a {"type":"luks-passphrase"} secret (the file's first line)
  --secret GUID=FILE        a secret for the guest's secret table under GUID (repeatable)
  --max-launches N          "max-launches": how many launches the registration allows
  --replace                 PUT instead of POST (a registration that does not exist yet is an error then)`;

const HEX64 = /^[0-9a-fA-F]{64}$/;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export function checkUuid(uuid: string): string {
  if (!UUID.test(uuid)) throw new CliError(`'${uuid}' is not a UUID (the vmid of the domain's <attestation>, e.g. 57f669c2-c427-4132-bc7a-26f56b6a718c)`, 2);
  return uuid.toLowerCase();
}

function read(io: Io, path: string, what: string): Buffer {
  try {
    if (path === '-') return io.stdin ? io.stdin() : readFileSync(0);
    return readFileSync(resolve(io.cwd, path));
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new CliError(`cannot read ${what} ${path}: ${code === 'ENOENT' ? 'no such file' : (code ?? String(e))}`);
  }
}

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

function count(flag: string, v: string, min: number, max: number): number {
  const n = /^0x[0-9a-f]+$/i.test(v) ? parseInt(v, 16) : /^\d+$/.test(v) ? Number(v) : NaN;
  if (!Number.isSafeInteger(n) || n < min || n > max)
    throw new CliError(`${flag} '${v}': expected a whole number from ${min} to ${max}${flag === '--policy' ? ' (hex with 0x)' : ''}`, 2);
  return n;
}

function cloudCert(io: Io, file: string): string {
  const bytes = read(io, file, 'the cloud certificate');
  if (bytes.length !== SEV_CERT_SIZE)
    throw new CliError(`--cloud-cert ${file} is ${bytes.length} bytes; an OCA certificate (sevctl export: the third of PDH|PEK|OCA|CEK) is ${SEV_CERT_SIZE}`);
  try {
    const cert = parseSevCertificate(bytes);
    if (cert.usage !== Usage.OCA)
      throw new CliError(`--cloud-cert ${file} is not an OCA certificate (key usage 0x${cert.usage.toString(16)}, OCA is 0x${Usage.OCA.toString(16)})`);
  } catch (e) {
    if (isSevError(e)) throw new CliError(`--cloud-cert ${file} is not a SEV certificate: ${e.message}`);
    throw e;
  }
  return bytes.toString('base64');
}

export function buildRegistration(io: Io, file: string | undefined, v: Record<string, unknown>): Record<string, unknown> {
  let body: Record<string, unknown> = {};
  if (file !== undefined) {
    const text = read(io, file, 'the registration').toString('utf8');
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch (e) {
      throw new CliError(`${file} is not JSON: ${(e as Error).message}`);
    }
    if (!parsed || typeof parsed !== 'object' || Array.isArray(parsed)) throw new CliError(`${file} must hold one JSON object (the registration)`);
    body = parsed as Record<string, unknown>;
  }
  const list = (k: string) => (v[k] as string[] | undefined) ?? [];
  const fw = [
    ...list('firmware').map((f) => sha256(read(io, f, 'the firmware'))),
    ...list('firmware-hash').map((h) => {
      if (!HEX64.test(h)) throw new CliError(`--firmware-hash '${h}' is not a SHA-256 (64 hex digits)`, 2);
      return h.toLowerCase();
    }),
  ];
  if (fw.length) body['firmware-hashes'] = [...new Set(fw)];
  if (v.kernel !== undefined) {
    body['kernel-hash'] = sha256(read(io, v.kernel as string, 'the kernel'));
    body['initrd-hash'] = sha256(v.initrd !== undefined ? read(io, v.initrd as string, 'the initrd') : Buffer.alloc(0));
    body['cmdline-hash'] = cmdlineHash((v.append as string | undefined) ?? '').toString('hex');
  } else if (v.initrd !== undefined || v.append !== undefined) {
    throw new CliError('--initrd and --append describe a direct kernel boot: give --kernel too', 2);
  }
  if (v.policy !== undefined) body.policy = count('--policy', v.policy as string, 0, 0xffffffff);
  if (v['cpu-count'] !== undefined) body['cpu-count'] = count('--cpu-count', v['cpu-count'] as string, 1, 512);
  if (v['max-launches'] !== undefined) body['max-launches'] = count('--max-launches', v['max-launches'] as string, 1, 2 ** 31 - 1);
  if (list('cpu-model').length) body['cpu-models'] = list('cpu-model');
  const certs = list('cloud-cert').map((f) => cloudCert(io, f));
  if (certs.length === 1) {
    body['cloud-cert'] = certs[0];
    delete body['cloud-certs'];
  } else if (certs.length > 1) {
    body['cloud-certs'] = certs;
    delete body['cloud-cert'];
  }
  const secrets: unknown[] = [];
  if (v['luks-passphrase-file'] !== undefined) {
    const pass = read(io, v['luks-passphrase-file'] as string, 'the LUKS passphrase')
      .toString('utf8')
      .split(/\r?\n/)[0]!;
    if (!pass) throw new CliError(`the LUKS passphrase file ${v['luks-passphrase-file'] as string} is empty`);
    secrets.push({ type: 'luks-passphrase', passphrase: pass });
  }
  for (const s of list('secret')) {
    const eq = s.indexOf('=');
    const guid = eq < 0 ? '' : s.slice(0, eq);
    if (!isGuid(guid)) throw new CliError(`--secret '${s}': expected GUID=FILE, e.g. 736869e5-84f0-4973-92ec-06879ce3da0b=disk.key`, 2);
    secrets.push({ guid: guid.toLowerCase(), data: read(io, s.slice(eq + 1), `the secret for ${guid}`).toString('base64') });
  }
  if (secrets.length) body.secrets = secrets;
  body.scheme ??= 'amd-sev';

  // What the service would refuse anyway, said here in the flags' terms before anything is sent.
  if (body.scheme !== 'amd-sev') throw new CliError(`"scheme" must be "amd-sev" (SEV or SEV-ES follows from the policy)`);
  if (typeof body.policy !== 'number') throw new CliError('the registration has no "policy": give --policy N (e.g. 0x5 for SEV-ES without debugging)');
  const hashes = body['firmware-hashes'];
  if (!Array.isArray(hashes) || hashes.length === 0)
    throw new CliError('the registration accepts no firmware: give --firmware OVMF.fd (or --firmware-hash HEX)');
  for (const h of hashes) if (typeof h !== 'string' || !HEX64.test(h)) throw new CliError(`"firmware-hashes": '${String(h)}' is not a SHA-256 (64 hex digits)`);
  if (body['cloud-cert'] === undefined && body['cloud-certs'] === undefined)
    throw new CliError('the registration names no cloud owner: give --cloud-cert OCA.cert (hosts are accepted only under that OCA)');
  return body;
}
