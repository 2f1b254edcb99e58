import { parseArgs } from 'node:util';
import type { VcpuSpec, VmsaFpu } from '@kb/sev';
import type { keybroker } from '@kb/grpc-api';
import { parseDigestArg } from '../domain/digest';
import { UsageError } from '../errors';

export type BackendName = 'libvirt' | 'qmp' | 'simulate';

export interface LaunchvmOptions {
  xmlFile: string;
  backend: BackendName;
  broker: string;
  brokerCa?: string;
  brokerTimeout: number;
  /** --broker was given (not only KB_BROKER_URL): refused for a domain with <attestation> */
  brokerGiven: boolean;
  /** CA (PEM) for an https:// attestation service */
  tlsCa?: string;
  certChain?: string;
  secrets: keybroker.RequestDetails[];
  description?: string;
  digest?: Buffer;
  vcpu?: VcpuSpec;
  fpu: VmsaFpu;
  connect: string;
  virsh: string;
  qemuBinary: string;
  qemuArgs: string[];
  runDir?: string;
  startTimeout: number;
  simPlatform?: string;
  simGuestDir?: string;
}

const SECRET_TYPES = ['bundle', 'key', 'resource', 'report', 'connection'];
const GUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** GUID,TYPE,ID[,FORMAT]: ids are repo/type/tag paths, which hold no commas. */
export function parseSecretSpec(s: string): keybroker.RequestDetails {
  const parts = s.split(',');
  if (parts.length < 3 || parts.length > 4) throw new UsageError(`--secret '${s}': expected GUID,TYPE,ID[,FORMAT]`);
  const [guid, type, id, format = 'binary'] = parts.map((p) => p.trim()) as [string, string, string, string?];
  if (!GUID.test(guid)) throw new UsageError(`--secret '${s}': '${guid}' is not a GUID`);
  if (!SECRET_TYPES.includes(type)) throw new UsageError(`--secret '${s}': type must be one of ${SECRET_TYPES.join(', ')}`);
  if (!id) throw new UsageError(`--secret '${s}': empty id`);
  if (!['binary', 'json', 'JSON'].includes(format)) throw new UsageError(`--secret '${s}': format must be binary or json`);
  return { Guid: guid.toLowerCase(), SecretType: type, Id: id, Format: format };
}

/** HOST[:PORT] → HOST:PORT with simple-kbs's port 44444 by default (grpc-js would dial 443); a bare port is refused. */
function brokerAddress(value: string): string {
  const m = /^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+)(?::(\d{1,5}))?$/.exec(value.trim());
  if (!m || /^\d+$/.test(value.trim())) throw new UsageError(`--broker ${value}: expected HOST[:PORT], for example 127.0.0.1:44444 (port 44444 by default)`);
  const port = m[2] === undefined ? 44444 : Number(m[2]);
  if (port < 1 || port > 65535) throw new UsageError(`--broker ${value}: port ${m[2]} is out of range (1–65535)`);
  return `${m[1]}:${port}`;
}

function number(flag: string, v: string | undefined, min = 0): number | undefined {
  if (v === undefined) return undefined;
  const n = /^0x[0-9a-f]+$/i.test(v) ? parseInt(v, 16) : /^\d+(\.\d+)?$/.test(v) ? Number(v) : NaN;
  if (!Number.isFinite(n) || n < min) throw new UsageError(`${flag}: '${v}' is not a valid number`);
  return n;
}

/** `--simulate --sim-platform DIR --sim-create`: only create the simulated platform (for the broker's --trust-root). */
export interface CreatePlatform {
  createPlatform: string;
}

export function parseOptions(argv: string[], env: NodeJS.ProcessEnv): LaunchvmOptions | CreatePlatform | 'help' {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      strict: true,
      options: {
        help: { type: 'boolean', short: 'h' },
        broker: { type: 'string' },
        'broker-ca': { type: 'string' },
        'broker-timeout': { type: 'string' },
        'cert-chain': { type: 'string' },
        'tls-ca': { type: 'string' },
        secret: { type: 'string', multiple: true },
        description: { type: 'string' },
        digest: { type: 'string' },
        'cpu-type': { type: 'string' },
        'cpu-sig': { type: 'string' },
        'cpu-family': { type: 'string' },
        'cpu-model': { type: 'string' },
        'cpu-stepping': { type: 'string' },
        'vmsa-fpu': { type: 'string' },
        backend: { type: 'string' },
        simulate: { type: 'boolean' },
        connect: { type: 'string', short: 'c' },
        virsh: { type: 'string' },
        'qemu-binary': { type: 'string' },
        'qemu-arg': { type: 'string', multiple: true },
        'run-dir': { type: 'string' },
        'start-timeout': { type: 'string' },
        'sim-platform': { type: 'string' },
        'sim-guest-dir': { type: 'string' },
        'sim-create': { type: 'boolean' },
      },
    });
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
  const v = parsed.values;
  if (v.help) return 'help';
  if (v['sim-create']) {
    if (!v.simulate && v.backend !== 'simulate') throw new UsageError('--sim-create goes with --simulate');
    if (!v['sim-platform']) throw new UsageError('--sim-create needs --sim-platform DIR (where the platform is kept)');
    if (parsed.positionals.length > 0) throw new UsageError('--sim-create launches nothing: drop the domain XML');
    return { createPlatform: v['sim-platform'] };
  }
  if (parsed.positionals.length !== 1) throw new UsageError(parsed.positionals.length ? 'give exactly one domain XML file' : 'the domain XML file is missing');
  if (v.simulate && v.backend && v.backend !== 'simulate') throw new UsageError('--simulate conflicts with --backend ' + v.backend);
  const backend = (v.simulate ? 'simulate' : (v.backend ?? 'libvirt')) as BackendName;
  if (!['libvirt', 'qmp', 'simulate'].includes(backend)) throw new UsageError(`--backend must be libvirt, qmp or simulate`);
  const only = (flags: string[], b: BackendName) => {
    for (const f of flags) if ((v as Record<string, unknown>)[f] !== undefined && backend !== b) throw new UsageError(`--${f} applies to --backend ${b} only`);
  };
  only(['connect', 'virsh'], 'libvirt');
  only(['qemu-binary', 'qemu-arg', 'run-dir', 'start-timeout'], 'qmp');
  only(['sim-platform', 'sim-guest-dir'], 'simulate');
  const certChain = v['cert-chain'] ?? (env.KB_HOST_CERT_CHAIN || undefined);
  if (backend !== 'simulate' && !certChain)
    throw new UsageError('--cert-chain FILE is required (the host chain from `sevctl export --full`; or set KB_HOST_CERT_CHAIN)');
  // at least one unless the domain names an attestation service: main.ts checks once it has read the XML
  const secrets = (v.secret ?? []).map(parseSecretSpec);

  const fpu = v['vmsa-fpu'] ?? 'legacy';
  if (fpu !== 'legacy' && fpu !== 'init2') throw new UsageError('--vmsa-fpu must be legacy or init2');
  const triplet = ['cpu-family', 'cpu-model', 'cpu-stepping'].filter((k) => (v as Record<string, unknown>)[k] !== undefined);
  const forms = [v['cpu-type'] !== undefined, v['cpu-sig'] !== undefined, triplet.length > 0].filter(Boolean).length;
  if (forms > 1) throw new UsageError('give the vCPU as one of --cpu-type, --cpu-sig or --cpu-family/--cpu-model/--cpu-stepping');
  if (triplet.length > 0 && triplet.length < 3) throw new UsageError('--cpu-family, --cpu-model and --cpu-stepping go together');
  let vcpu: VcpuSpec | undefined;
  if (v['cpu-type']) vcpu = { type: v['cpu-type'] };
  else if (v['cpu-sig']) vcpu = { sig: number('--cpu-sig', v['cpu-sig'])! };
  else if (triplet.length === 3)
    vcpu = {
      family: number('--cpu-family', v['cpu-family'])!,
      model: number('--cpu-model', v['cpu-model'])!,
      stepping: number('--cpu-stepping', v['cpu-stepping'])!,
    };
  if (vcpu && v.digest) throw new UsageError('--digest replaces the digest computation, so the --cpu-* options would be ignored');

  return {
    xmlFile: parsed.positionals[0]!,
    backend,
    broker: brokerAddress(v.broker ?? env.KB_BROKER_URL ?? '127.0.0.1:44444'),
    brokerCa: v['broker-ca'],
    brokerTimeout: number('--broker-timeout', v['broker-timeout'], 1) ?? 30,
    brokerGiven: v.broker !== undefined,
    tlsCa: v['tls-ca'],
    certChain,
    secrets,
    description: v.description,
    digest: v.digest ? parseDigestArg(v.digest) : undefined,
    vcpu,
    fpu,
    connect: v.connect ?? env.LIBVIRT_DEFAULT_URI ?? 'qemu:///system',
    virsh: v.virsh ?? 'virsh',
    qemuBinary: v['qemu-binary'] ?? 'qemu-system-x86_64',
    qemuArgs: v['qemu-arg'] ?? [],
    runDir: v['run-dir'],
    startTimeout: number('--start-timeout', v['start-timeout'], 1) ?? 30,
    simPlatform: v['sim-platform'],
    simGuestDir: v['sim-guest-dir'],
  };
}
