import { dirname, isAbsolute, join } from 'node:path';
import { PolicyFlag, type VcpuSpec, type VmsaFpu } from '@kb/sev';
import { isPolicyError, parsePolicy } from '@kb/policy';
import { CliError, type Command, type Io } from '../cli';
import { flag, hex32, list, parseUint, readInput, str, writeOutput, type Values } from './common';
import {
  checkConfig,
  computeLaunch,
  describeVcpu,
  InputCache,
  isSnp,
  parseFpu,
  parseMode,
  parseVcpuType,
  parseVmmType,
  vcpuFromFlags,
  type LaunchConfig,
  type Mode,
} from './launch-config';

/**
 * `kbctl policy from-configs`: a broker policy document whose allowedDigests are the launch digests of every
 * allowed launch configuration (e.g. each vCPU count an SEV-ES guest may start with, each CPU model, each VMSA FPU
 * flavour), and whose allowedPolicies are the guest policies given. Offline: nothing is sent to a broker.
 *
 * With --mode snp / snp:svsm it lists SEV-SNP measurements instead, as a policy whose `snp` section admits exactly
 * them (`{"version": 1, "snp": {"allowedMeasurements": [...]}}`, README "Policies"), never mixed with SEV digests.
 */
const MAX_CONFIGS = 4096;

const USAGE = `Usage: kbctl policy from-configs [--config FILE]... [--ovmf FILE [--kernel FILE] [--initrd FILE] [--append CMDLINE]
                                 --policy P [--policy P]... [--vcpus LIST]... [--vcpu-type TYPE]... [--vcpu-sig SIG]...
                                 [--vcpu-family F --vcpu-model M --vcpu-stepping S] [--vmm-type QEMU|ec2|gce]
                                 [--vmsa-fpu legacy|init2]... [--sev-features VALUE]]
                                 [--allow-debug] [--min-fw-api MAJOR.MINOR] [--out FILE] [--quiet]
       kbctl policy from-configs --mode snp|snp:svsm --ovmf FILE [--kernel FILE ...] --vcpus LIST... (CPU flags)
                                 [--guest-features VALUE]... [--vmsa-fpu init2|legacy]... [--vmm-type T]
                                 [--snp-ovmf-hash HEX] [--svsm FILE --vars-size N] [--out FILE] [--quiet]

Computes the launch digest of every combination of the given launch parameters and prints a broker policy document
(JSON, checked by the broker's own parser) allowing exactly those digests and guest policies. Store it with
'kbctl policy put NAME FILE'. The digest of each configuration is listed on stderr.

  --ovmf FILE             the firmware CODE image (as for 'kbctl measure')
  --kernel FILE, --initrd FILE, --append CMDLINE
                          direct kernel boot with kernel hashes (as for 'kbctl measure')
  --policy P              an allowed guest policy (decimal or 0x hex); repeatable. The ES bit (0x4) selects SEV-ES
                          digests, one per vCPU count × CPU × FPU flavour; without it one SEV digest
  --vcpus LIST            allowed vCPU counts for SEV-ES: N, N-M or a comma list (e.g. 1-8 or 1,2,4); repeatable
  --vcpu-type TYPE        an allowed QEMU CPU model (e.g. EPYC-v4, EPYC-Milan); repeatable
  --vcpu-sig SIG          an allowed CPUID signature (decimal or 0x hex); repeatable
  --vcpu-family F, --vcpu-model M, --vcpu-stepping S
                          an allowed CPU by family/model/stepping
  --vmm-type TYPE         QEMU (default), ec2 or gce
  --vmsa-fpu FLAVOUR      legacy (default) or init2; repeat both to allow either (see 'kbctl measure --help')
  --sev-features VALUE    SEV-ES VMSA sev_features (default 0)
  --mode MODE             snp or snp:svsm: list SEV-SNP measurements (SHA-384, 96 hex digits) of every
                          combination of --vcpus × CPU × --guest-features × --vmsa-fpu instead of a broker policy.
                          The output is a policy for SNP guests: {"version": 1, "snp": {"allowedMeasurements": [...]}}
                          (add the other snp rules by hand; README "Policies")
                          Without --mode, SEV or SEV-ES follows from each --policy
  --guest-features VALUE  snp: an allowed VMSA sev_features value (default 0x1); repeatable
  --snp-ovmf-hash HEX, --svsm FILE, --vars-size N
                          as for 'kbctl measure' (--vars-size: the OVMF_VARS size in bytes)
  --config FILE           a JSON file with one configuration object, or a list of them, whose keys are the flag
                          names above ("ovmf", "policy", "vcpus", "vcpu-type", "vmsa-fpu", ...; lists where a flag
                          repeats); relative paths are relative to FILE. Repeatable; combines with the flags.
  --allow-debug           set allowDebug: needed when a policy leaves NODBG (0x1) clear
  --min-fw-api MAJOR.MINOR
                          also require this minimum firmware API version
  --out FILE              write the document to FILE instead of standard output
  --quiet                 do not list the digests on stderr

Exit status: 0 printed, 1 an input cannot be read or measured, 2 usage error (including a document the broker
would refuse, e.g. a debuggable policy without --allow-debug).`;

const CONFIG_KEYS = [
  'ovmf',
  'kernel',
  'initrd',
  'append',
  'policy',
  'vcpus',
  'vcpu-type',
  'vcpu-sig',
  'vcpu-family',
  'vcpu-model',
  'vcpu-stepping',
  'vmm-type',
  'vmsa-fpu',
  'sev-features',
  'mode',
  'guest-features',
  'snp-ovmf-hash',
  'svsm',
  'vars-size',
] as const;
type ConfigKey = (typeof CONFIG_KEYS)[number];
type RawConfig = Partial<Record<ConfigKey, string[]>>;
const SINGLE: ConfigKey[] = [
  'ovmf',
  'kernel',
  'initrd',
  'append',
  'vcpu-family',
  'vcpu-model',
  'vcpu-stepping',
  'vmm-type',
  'sev-features',
  'mode',
  'snp-ovmf-hash',
  'svsm',
  'vars-size',
];
const PATHS: ConfigKey[] = ['ovmf', 'kernel', 'initrd', 'svsm'];

function parseVcpuList(s: string, where: string): number[] {
  const out: number[] = [];
  for (const part of s.split(',').map((p) => p.trim())) {
    const m = /^(\d+)(?:-(\d+))?$/.exec(part);
    if (!m) throw new CliError(`${where}: --vcpus ${JSON.stringify(s)} must be N, N-M or a comma list of those`, 2);
    const lo = Number(m[1]);
    const hi = m[2] === undefined ? lo : Number(m[2]);
    if (lo < 1 || hi < lo || hi > 4096) throw new CliError(`${where}: --vcpus ${part} must be a range within 1..4096`, 2);
    for (let n = lo; n <= hi; n++) out.push(n);
  }
  return out;
}

function one(raw: RawConfig, k: ConfigKey, where: string): string | undefined {
  const v = raw[k];
  if (v === undefined) return undefined;
  if (v.length !== 1) throw new CliError(`${where}: "${k}" takes one value, got ${v.length}`, 2);
  return v[0];
}

/** One configuration set (the flags, or one object of a --config file) as the list of launches it allows. */
function expand(raw: RawConfig, where: string): Launch[] {
  const ovmf = one(raw, 'ovmf', where);
  if (ovmf === undefined) throw new CliError(`${where}: the firmware (--ovmf / "ovmf") is required`, 2);
  const modeArg = one(raw, 'mode', where);
  if (modeArg !== undefined) {
    const mode = parseMode(modeArg, `${where}: --mode`);
    if (mode !== 'snp' && mode !== 'snp:svsm') {
      throw new CliError(`${where}: --mode takes snp or snp:svsm here; SEV and SEV-ES launches follow from --policy`, 2);
    }
    return expandSnp(raw, where, mode, ovmf);
  }
  for (const k of ['guest-features', 'snp-ovmf-hash', 'svsm', 'vars-size'] as const) {
    if (raw[k] !== undefined) throw new CliError(`${where}: --${k} needs --mode snp or snp:svsm`, 2);
  }
  const policies = (raw.policy ?? []).map((p) => parseUint(p, `${where}: --policy`, 0xffffffff));
  if (policies.length === 0) throw new CliError(`${where}: give at least one allowed guest policy (--policy / "policy")`, 2);
  const vmmType = parseVmmType(one(raw, 'vmm-type', where) ?? 'QEMU');
  const fpus: VmsaFpu[] = (raw['vmsa-fpu'] ?? ['legacy']).map((f) => parseFpu(f));
  const sevFeaturesArg = one(raw, 'sev-features', where);
  const sevFeatures = sevFeaturesArg === undefined ? 0 : parseUint(sevFeaturesArg, `${where}: --sev-features`, Number.MAX_SAFE_INTEGER);
  const vcpuCounts = vcpuCountsOf(raw, where);
  const cpus = cpusOf(raw, where);
  const base = { ovmf, kernel: one(raw, 'kernel', where), initrd: one(raw, 'initrd', where), append: one(raw, 'append', where), vmmType, sevFeatures };

  const out: Launch[] = [];
  for (const policy of [...new Set(policies)]) {
    if ((policy & PolicyFlag.ES) === 0) {
      const config: LaunchConfig = { ...base, mode: 'sev', fpu: 'legacy' };
      checkConfig(config, where);
      out.push({ policy, config });
      continue;
    }
    if (vcpuCounts.length === 0) throw new CliError(`${where}: policy ${hex32(policy)} is SEV-ES: give the allowed vCPU counts (--vcpus)`, 2);
    const cpuList: (VcpuSpec | undefined)[] = vmmType === 'qemu' ? cpus : [undefined];
    if (cpuList.length === 0)
      throw new CliError(`${where}: policy ${hex32(policy)} is SEV-ES: give the allowed CPUs (--vcpu-type, --vcpu-sig or --vcpu-family/model/stepping)`, 2);
    for (const vcpus of vcpuCounts) {
      for (const vcpu of cpuList) {
        for (const fpu of [...new Set(fpus)]) {
          const config: LaunchConfig = { ...base, mode: 'seves', vcpus, vcpu, fpu };
          checkConfig(config, where);
          out.push({ policy, config });
          if (out.length > MAX_CONFIGS) throw new CliError(`${where}: more than ${MAX_CONFIGS} launch configurations; narrow the lists`, 2);
        }
      }
    }
  }
  return out;
}

interface Launch {
  /** SEV and SEV-ES: the guest policy the digest is allowed with; SNP launches have none here (issue #17). */
  policy?: number;
  config: LaunchConfig;
}

function vcpuCountsOf(raw: RawConfig, where: string): number[] {
  return [...new Set((raw.vcpus ?? []).flatMap((s) => parseVcpuList(s, where)))];
}

function cpusOf(raw: RawConfig, where: string): VcpuSpec[] {
  const cpus: VcpuSpec[] = [
    ...(raw['vcpu-type'] ?? []).map((t) => parseVcpuType(t)),
    ...(raw['vcpu-sig'] ?? []).map((s): VcpuSpec => ({ sig: parseUint(s, `${where}: --vcpu-sig`, 0xffffffff) })),
  ];
  const triplet = vcpuFromFlags({ family: one(raw, 'vcpu-family', where), model: one(raw, 'vcpu-model', where), stepping: one(raw, 'vcpu-stepping', where) });
  if (triplet) cpus.push(triplet);
  return cpus;
}

/** SNP: every vCPU count × CPU × guest_features × FPU flavour, each one measurement (no SEV policy involved). */
function expandSnp(raw: RawConfig, where: string, mode: Mode, ovmf: string): Launch[] {
  if (raw.policy !== undefined) {
    throw new CliError(`${where}: --policy lists SEV guest policies; SNP guest policies are not part of this document yet (issue #17)`, 2);
  }
  if (raw['sev-features'] !== undefined) throw new CliError(`${where}: --sev-features is for SEV-ES; SNP takes --guest-features`, 2);
  const vcpuCounts = vcpuCountsOf(raw, where);
  if (vcpuCounts.length === 0) throw new CliError(`${where}: mode ${mode}: give the allowed vCPU counts (--vcpus)`, 2);
  const vmmType = parseVmmType(one(raw, 'vmm-type', where) ?? 'QEMU');
  const cpus = cpusOf(raw, where);
  const cpuList: (VcpuSpec | undefined)[] = vmmType === 'qemu' ? cpus : [undefined];
  if (cpuList.length === 0) throw new CliError(`${where}: mode ${mode}: give the allowed CPUs (--vcpu-type, --vcpu-sig or --vcpu-family/model/stepping)`, 2);
  if (mode === 'snp:svsm' && raw['guest-features'] !== undefined)
    throw new CliError(`${where}: --guest-features cannot be set in mode snp:svsm (fixed at 0x1)`, 2);
  const features = [...new Set((raw['guest-features'] ?? ['0x1']).map((f) => parseUint(f, `${where}: --guest-features`, Number.MAX_SAFE_INTEGER)))];
  const fpus = [...new Set((raw['vmsa-fpu'] ?? ['init2']).map((f) => parseFpu(f)))];
  const hash = one(raw, 'snp-ovmf-hash', where);
  if (hash !== undefined && !/^[0-9a-fA-F]{96}$/.test(hash)) throw new CliError(`${where}: --snp-ovmf-hash must be 96 hex digits`, 2);
  const varsSize = one(raw, 'vars-size', where);
  const base = {
    mode,
    ovmf,
    kernel: one(raw, 'kernel', where),
    initrd: one(raw, 'initrd', where),
    append: one(raw, 'append', where),
    vmmType,
    sevFeatures: 0,
    snpOvmfHash: hash === undefined ? undefined : Buffer.from(hash, 'hex'),
    svsm: one(raw, 'svsm', where),
    varsSize: varsSize === undefined ? undefined : parseUint(varsSize, `${where}: --vars-size`, 0xffffffff),
  };
  const out: Launch[] = [];
  for (const vcpus of vcpuCounts) {
    for (const vcpu of cpuList) {
      for (const guestFeatures of mode === 'snp' ? features : [undefined]) {
        for (const fpu of fpus) {
          const config: LaunchConfig = { ...base, vcpus, vcpu, guestFeatures, fpu };
          checkConfig(config, where);
          out.push({ config });
          if (out.length > MAX_CONFIGS) throw new CliError(`${where}: more than ${MAX_CONFIGS} launch configurations; narrow the lists`, 2);
        }
      }
    }
  }
  return out;
}

function fromValues(v: Values): RawConfig | undefined {
  if (str(v, 'ovmf') === undefined && CONFIG_KEYS.every((k) => v[k] === undefined)) return undefined;
  const raw: RawConfig = {};
  for (const k of CONFIG_KEYS) {
    const x = v[k];
    if (x !== undefined) raw[k] = Array.isArray(x) ? (x as string[]) : [x as string];
  }
  return raw;
}

function fromJson(io: Io, file: string): { raw: RawConfig; where: string }[] {
  let doc: unknown;
  try {
    doc = JSON.parse(readInput(io, file, 'the configuration').toString('utf8'));
  } catch (e) {
    if (e instanceof CliError) throw e;
    throw new CliError(`${file} is not valid JSON: ${(e as Error).message}`, 2);
  }
  const items = Array.isArray(doc) ? doc : [doc];
  const base = dirname(file);
  return items.map((item, i) => {
    const where = Array.isArray(doc) ? `${file}[${i}]` : file;
    if (typeof item !== 'object' || item === null || Array.isArray(item)) throw new CliError(`${where} must be a JSON object`, 2);
    const raw: RawConfig = {};
    for (const [k, val] of Object.entries(item as Record<string, unknown>)) {
      if (!(CONFIG_KEYS as readonly string[]).includes(k))
        throw new CliError(`${where}: unknown key ${JSON.stringify(k)}; keys are ${CONFIG_KEYS.join(', ')}`, 2);
      const vals = Array.isArray(val) ? val : [val];
      if (vals.length === 0 || vals.some((x) => typeof x !== 'string' && typeof x !== 'number')) {
        throw new CliError(`${where}: "${k}" must be a string, a number or a non-empty list of them`, 2);
      }
      if (SINGLE.includes(k as ConfigKey) && vals.length !== 1) throw new CliError(`${where}: "${k}" takes one value`, 2);
      raw[k as ConfigKey] = vals.map((x) => (PATHS.includes(k as ConfigKey) && !isAbsolute(String(x)) ? join(base, String(x)) : String(x)));
    }
    return { raw, where };
  });
}

function describe(policy: number | undefined, c: LaunchConfig): string {
  const parts: string[] = [c.mode];
  if (policy !== undefined) parts.push(`policy ${hex32(policy)}`);
  if (isSnp(c.mode)) {
    parts.push(`${c.vcpus} vCPU${c.vcpus === 1 ? '' : 's'}`, c.vmmType === 'qemu' ? describeVcpu(c.vcpu) : c.vmmType);
    if (c.mode === 'snp') parts.push(`guest features 0x${(c.guestFeatures ?? 1).toString(16)}`);
    parts.push(`${c.fpu} VMSA`);
  }
  if (c.mode === 'seves') parts.push(`${c.vcpus} vCPU${c.vcpus === 1 ? '' : 's'}`, c.vmmType === 'qemu' ? describeVcpu(c.vcpu) : c.vmmType, `${c.fpu} VMSA`);
  parts.push(c.ovmf);
  if (c.kernel !== undefined) parts.push(`kernel ${c.kernel}`);
  return parts.join(', ');
}

export const policyFromConfigs: Command = {
  name: 'from-configs',
  summary: 'write a policy document allowing the launch digests of a set of launch configurations (offline)',
  usage: USAGE,
  options: {
    config: { type: 'string', multiple: true },
    ovmf: { type: 'string' },
    kernel: { type: 'string' },
    initrd: { type: 'string' },
    append: { type: 'string' },
    policy: { type: 'string', multiple: true },
    vcpus: { type: 'string', multiple: true },
    'vcpu-type': { type: 'string', multiple: true },
    'vcpu-sig': { type: 'string', multiple: true },
    'vcpu-family': { type: 'string' },
    'vcpu-model': { type: 'string' },
    'vcpu-stepping': { type: 'string' },
    'vmm-type': { type: 'string' },
    'vmsa-fpu': { type: 'string', multiple: true },
    'sev-features': { type: 'string' },
    mode: { type: 'string' },
    'guest-features': { type: 'string', multiple: true },
    'snp-ovmf-hash': { type: 'string' },
    svsm: { type: 'string' },
    'vars-size': { type: 'string' },
    'allow-debug': { type: 'boolean' },
    'min-fw-api': { type: 'string' },
    out: { type: 'string' },
    quiet: { type: 'boolean' },
  },
  async run({ values }, io) {
    const v = values as Values;
    const sets: { raw: RawConfig; where: string }[] = [];
    const fromFlags = fromValues(v);
    if (fromFlags) sets.push({ raw: fromFlags, where: 'flags' });
    for (const file of list(v, 'config')) sets.push(...fromJson(io, file));
    if (sets.length === 0) throw new CliError('give launch configurations with --ovmf/--policy/... or --config FILE', 2);
    let minFw: { major: number; minor: number } | undefined;
    const minArg = str(v, 'min-fw-api');
    if (minArg !== undefined) {
      const m = /^(\d+)\.(\d+)$/.exec(minArg);
      if (!m || Number(m[1]) > 255 || Number(m[2]) > 255)
        throw new CliError(`--min-fw-api must be MAJOR.MINOR (0..255 each), got ${JSON.stringify(minArg)}`, 2);
      minFw = { major: Number(m[1]), minor: Number(m[2]) };
    }
    const launches = sets.flatMap((s) => expand(s.raw, s.where));
    if (launches.length > MAX_CONFIGS) throw new CliError(`more than ${MAX_CONFIGS} launch configurations; narrow the lists`, 2);

    const snpCount = launches.filter((l) => isSnp(l.config.mode)).length;
    if (snpCount > 0 && snpCount < launches.length) {
      throw new CliError('SNP measurements and SEV/SEV-ES digests go into separate documents: run from-configs once for each', 2);
    }

    const cache = new InputCache(io);
    const digests = new Map<string, string[]>();
    for (const { policy, config } of launches) {
      const hex = computeLaunch(config, cache).digest.toString('hex');
      digests.set(hex, [...(digests.get(hex) ?? []), describe(policy, config)]);
    }
    const listDigests = (): void => {
      if (flag(v, 'quiet')) return;
      for (const [hex, what] of [...digests.entries()].sort(([a], [b]) => (a < b ? -1 : 1))) io.err(`${hex}  ${what.join('; ')}`);
    };
    if (snpCount > 0) {
      for (const k of ['allow-debug', 'min-fw-api'] as const) {
        if (v[k] !== undefined)
          throw new CliError(`--${k} is a SEV rule; an SNP policy's debug and firmware rules are written in its snp section (README "Policies")`, 2);
      }
      listDigests();
      const text = JSON.stringify({ version: 1, snp: { allowedMeasurements: [...digests.keys()].sort() } }, null, 2) + '\n';
      emit(io, v, text, `${digests.size} SNP measurements, ${launches.length} configurations`);
      return 0;
    }
    const doc: Record<string, unknown> = {
      version: 1,
      allowedDigests: [...digests.keys()].sort(),
      allowedPolicies: [...new Set(launches.map((l) => l.policy!))].sort((a, b) => a - b),
    };
    if (flag(v, 'allow-debug')) doc.allowDebug = true;
    if (minFw) {
      doc.minFwApiMajor = minFw.major;
      doc.minFwApiMinor = minFw.minor;
    }
    let policy;
    try {
      policy = parsePolicy(doc);
    } catch (e) {
      if (isPolicyError(e)) throw new CliError(`the broker would refuse this policy: ${e.message}`, 2);
      throw e;
    }
    listDigests();
    emit(io, v, JSON.stringify(policy, null, 2) + '\n', `${digests.size} digests, ${launches.length} configurations`);
    return 0;
  },
};

function emit(io: Io, v: Values, text: string, summary: string): void {
  const out = str(v, 'out');
  if (out !== undefined) {
    writeOutput(io, out, text, 'the policy document');
    if (!flag(v, 'quiet')) io.err(`wrote ${out}: ${summary}`);
  } else io.out(text.trimEnd());
}
