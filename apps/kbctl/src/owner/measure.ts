import { join } from 'node:path';
import { CliError, type Command } from '../cli';
import { ensureDir, flag, optUint, str, writeOutput, type Values } from './common';
import { checkConfig, computeLaunch, InputCache, parseFpu, parseMode, parseVmmType, totalBytes, vcpuFromFlags, type LaunchConfig } from './launch-config';
import { Progress } from './progress';

const USAGE = `Usage: kbctl measure --mode sev|seves --ovmf FILE [--kernel FILE [--initrd FILE] [--append CMDLINE]]
                     [--vcpus N] [--vcpu-type TYPE | --vcpu-sig SIG | --vcpu-family F --vcpu-model M --vcpu-stepping S]
                     [--vmm-type QEMU|ec2|gce] [--vmsa-fpu legacy|init2] [--sev-features VALUE]
                     [--output-format hex|base64] [--dump-vmsa DIR] [--progress] [-v|--verbose]

Prints the launch digest (GCTX.LD, SHA-256) QEMU/KVM measures for an SEV or SEV-ES guest: the value a broker
policy's allowedDigests lists. Flags are sev-snp-measure's; SEV-SNP modes are not supported.

  --mode MODE             sev (policy ES bit clear) or seves (ES bit set)
  --ovmf FILE             the firmware CODE image QEMU loads (pflash unit 0 or -bios); VARS is never measured
  --kernel FILE           direct kernel boot with kernel-hashes=on: the kernel file as given to QEMU
  --initrd FILE           the initrd (needs --kernel; absent: hashed as empty)
  --append CMDLINE        the kernel command line (needs --kernel; absent: hashed as "")
  --vcpus N               number of vCPUs at launch (seves: one VMSA page each)
  --vcpu-type TYPE        QEMU CPU model (EPYC, EPYC-v4, EPYC-Rome, EPYC-Milan, EPYC-Genoa, EPYC-Turin, ...)
  --vcpu-sig SIG          or the CPUID(1).EAX signature (decimal or 0x hex)
  --vcpu-family F, --vcpu-model M, --vcpu-stepping S
                          or the family/model/stepping triplet (give exactly one of the three forms;
                          seves with QEMU needs one, sev ignores them)
  --vmm-type TYPE         QEMU (default), ec2 or gce
  --vmsa-fpu FLAVOUR      seves VMSA FPU state: legacy (default: KVM_SEV_ES_INIT, what QEMU >= 9.1 uses by default,
                          libvirt and sevctl assume) or init2 (KVM_SEV_INIT2, QEMU legacy-vm-type=off; what current
                          sev-snp-measure 'seves' computes)
  --sev-features VALUE    seves VMSA sev_features (default 0; 0x20 DebugSwap on Linux 6.6/6.7 hosts with debug_swap)
  --output-format FMT     hex (default) or base64
  --dump-vmsa DIR         seves: also write the measured VMSA pages to DIR/vmsa<N>.bin (N = vCPU index)
  --progress              report hashing progress on stderr (automatic on a terminal when hashing takes > 1 s)
  -v, --verbose           print "Calculated <MODE> guest measurement: <digest>"

Exit status: 0 digest printed, 1 the inputs cannot be measured (unreadable file, firmware without the structure
the launch needs), 2 usage error.`;

export const measure: Command = {
  name: 'measure',
  summary: 'compute the expected launch digest of an SEV or SEV-ES guest (sev-snp-measure flags)',
  usage: USAGE,
  options: {
    mode: { type: 'string' },
    ovmf: { type: 'string' },
    kernel: { type: 'string' },
    initrd: { type: 'string' },
    append: { type: 'string' },
    vcpus: { type: 'string' },
    'vcpu-type': { type: 'string' },
    'vcpu-sig': { type: 'string' },
    'vcpu-family': { type: 'string' },
    'vcpu-model': { type: 'string' },
    'vcpu-stepping': { type: 'string' },
    'vmm-type': { type: 'string' },
    'vmsa-fpu': { type: 'string' },
    'sev-features': { type: 'string' },
    'output-format': { type: 'string' },
    'dump-vmsa': { type: 'string' },
    progress: { type: 'boolean' },
    verbose: { type: 'boolean', short: 'v' },
  },
  async run({ values }, io) {
    const v = values as Values;
    const modeArg = str(v, 'mode');
    if (modeArg === undefined) throw new CliError('--mode is required (sev or seves)', 2);
    const mode = parseMode(modeArg);
    const ovmf = str(v, 'ovmf');
    if (ovmf === undefined) throw new CliError('--ovmf is required', 2);
    const format = str(v, 'output-format') ?? 'hex';
    if (format !== 'hex' && format !== 'base64') throw new CliError(`--output-format must be hex or base64, got ${JSON.stringify(format)}`, 2);
    const dumpDir = str(v, 'dump-vmsa');
    if (dumpDir !== undefined && mode === 'sev') throw new CliError('--dump-vmsa is not available in mode sev (an SEV guest has no VMSA)', 2);
    const vcpusArg = optUint(v, 'vcpus', 4096);
    if (vcpusArg === 0) throw new CliError('--vcpus must be at least 1', 2);
    const cfg: LaunchConfig = {
      mode,
      ovmf,
      kernel: str(v, 'kernel'),
      initrd: str(v, 'initrd'),
      append: str(v, 'append'),
      vcpus: mode === 'seves' ? vcpusArg : undefined,
      vcpu:
        mode === 'seves'
          ? vcpuFromFlags({ type: str(v, 'vcpu-type'), sig: str(v, 'vcpu-sig'), family: str(v, 'vcpu-family'), model: str(v, 'vcpu-model'), stepping: str(v, 'vcpu-stepping') })
          : undefined,
      vmmType: parseVmmType(str(v, 'vmm-type') ?? 'QEMU'),
      fpu: parseFpu(str(v, 'vmsa-fpu') ?? 'legacy'),
      sevFeatures: optUint(v, 'sev-features', Number.MAX_SAFE_INTEGER) ?? 0,
    };
    checkConfig(cfg);

    const progress = Progress.for(io, 'measure', totalBytes(io, cfg, cfg.vcpus ?? 0), flag(v, 'progress'));
    const { digest, pieces } = computeLaunch(cfg, new InputCache(io), progress);
    progress?.done();

    if (dumpDir !== undefined) {
      const dir = ensureDir(io, dumpDir, 'the VMSA dump directory');
      for (const p of pieces) if (p.kind === 'vmsa') writeOutput(io, join(dir, `vmsa${p.vcpu}.bin`), p.data, 'a VMSA page');
    }
    const text = format === 'hex' ? digest.toString('hex') : digest.toString('base64');
    io.out(flag(v, 'verbose') ? `Calculated ${mode === 'sev' ? 'SEV' : 'SEV_ES'} guest measurement: ${text}` : text);
    return 0;
  },
};
