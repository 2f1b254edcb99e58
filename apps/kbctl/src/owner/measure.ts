import { statSync } from 'node:fs';
import { join } from 'node:path';
import { snpOvmfHash } from '@kb/sev';
import { CliError, type Command, type Io } from '../cli';
import { ensureDir, flag, optUint, resolvePath, str, withSev, writeOutput, type Values } from './common';
import {
  checkConfig,
  computeLaunch,
  InputCache,
  isSnp,
  parseFpu,
  parseMode,
  parseVmmType,
  totalBytes,
  vcpuFromFlags,
  type LaunchConfig,
  type Mode,
} from './launch-config';
import { Progress } from './progress';

const USAGE = `Usage: kbctl measure --mode sev|seves|snp|snp:ovmf-hash|snp:svsm --ovmf FILE
                     [--kernel FILE [--initrd FILE] [--append CMDLINE]]
                     [--vcpus N] [--vcpu-type TYPE | --vcpu-sig SIG | --vcpu-family F --vcpu-model M --vcpu-stepping S]
                     [--vmm-type QEMU|ec2|gce] [--vmsa-fpu legacy|init2] [--sev-features VALUE]
                     [--guest-features VALUE] [--snp-ovmf-hash HEX] [--svsm FILE (--vars-size N | --vars-file FILE)]
                     [--output-format hex|base64] [--dump-vmsa DIR] [--progress] [-v|--verbose]

Prints the launch digest QEMU/KVM measures for an SEV, SEV-ES or SEV-SNP guest: for sev/seves the GCTX.LD
(SHA-256) a broker policy's allowedDigests lists, for the SNP modes the 48-byte MEASUREMENT (SHA-384) of the
attestation report. Flags and output are sev-snp-measure's.

  --mode MODE             sev (policy ES bit clear), seves (ES bit set), snp (SEV-SNP with OVMF),
                          snp:ovmf-hash (print the SNP hash of the firmware pages alone, for --snp-ovmf-hash),
                          snp:svsm (SEV-SNP with a Coconut-SVSM image in front of OVMF, pre-IGVM QEMU)
  --ovmf FILE             the firmware image QEMU loads (pflash unit 0 or -bios); VARS is never measured
  --kernel FILE           direct kernel boot with kernel-hashes=on: the kernel file as given to QEMU
  --initrd FILE           the initrd (needs --kernel; absent: hashed as empty)
  --append CMDLINE        the kernel command line (needs --kernel; absent: hashed as "")
  --vcpus N               number of vCPUs at launch (one VMSA page each; all modes but sev)
  --vcpu-type TYPE        QEMU CPU model (EPYC, EPYC-v4, EPYC-Rome, EPYC-Milan, EPYC-Genoa, EPYC-Turin, ...)
  --vcpu-sig SIG          or the CPUID(1).EAX signature (decimal or 0x hex)
  --vcpu-family F, --vcpu-model M, --vcpu-stepping S
                          or the family/model/stepping triplet (give exactly one of the three forms;
                          QEMU guests need one, ec2/gce and sev ignore them)
  --vmm-type TYPE         QEMU (default), ec2 or gce (snp:svsm: QEMU only)
  --vmsa-fpu FLAVOUR      VMSA FPU state. seves: legacy (default: KVM_SEV_ES_INIT, what QEMU >= 9.1 uses by
                          default, libvirt and sevctl assume) or init2 (KVM_SEV_INIT2, QEMU legacy-vm-type=off;
                          what current sev-snp-measure 'seves' computes). SNP modes: init2 (default: QEMU >= 9.1 on
                          Linux >= 6.11, current sev-snp-measure) or legacy (FPU area zero, older SNP host kernels)
  --sev-features VALUE    seves VMSA sev_features (default 0; 0x20 DebugSwap on Linux 6.6/6.7 hosts with debug_swap)
  --guest-features VALUE  snp VMSA sev_features (default 0x1 SNPActive; 0x21 adds DebugSwap, older hosts). Bits:
                          0 SNPActive, 1 vTOM, 2 ReflectVC, 3 RestrictedInjection, 4 AlternateInjection,
                          5 DebugSwap, 6 PreventHostIBS, 7 BTBIsolation, 8 VmplSSS, 9 SecureTSC,
                          10 VmgexitParameter, 12 IbsVirtualization, 14 VmsaRegProt, 15 SmtProtection
  --snp-ovmf-hash HEX     snp: the firmware pages' hash (from --mode snp:ovmf-hash, 96 hex digits) used instead of
                          hashing --ovmf, which is still read for its metadata and must be the same image
  --svsm FILE             snp:svsm: the SVSM image (svsm.bin)
  --vars-size N           snp:svsm: size of OVMF_VARS in bytes (decimal or 0x hex), or
  --vars-file FILE        snp:svsm: the OVMF_VARS file (only its size is used)
  --output-format FMT     hex (default) or base64
  --dump-vmsa DIR         seves and SNP modes: also write the measured VMSA pages to DIR/vmsa<N>.bin (N = vCPU)
  --progress              report hashing progress on stderr (automatic on a terminal when hashing takes > 1 s)
  -v, --verbose           print "Calculated <MODE> guest measurement: <digest>" (SEV, SEV_ES, SEV_SNP, SEV_SNP_SVSM)

Exit status: 0 digest printed, 1 the inputs cannot be measured (unreadable file, firmware without the structure
the launch needs, e.g. a kernel for an OVMF without SNP_KERNEL_HASHES), 2 usage error.`;

/** sev-snp-measure's `SevMode` names, which its --verbose line prints. */
const VERBOSE_NAME: Record<Mode, string> = { sev: 'SEV', seves: 'SEV_ES', snp: 'SEV_SNP', 'snp:svsm': 'SEV_SNP_SVSM' };

function parseOvmfHash(s: string): Buffer {
  if (!/^[0-9a-fA-F]{96}$/.test(s)) throw new CliError(`--snp-ovmf-hash must be 96 hex digits (a 48-byte SHA-384 digest), got ${JSON.stringify(s)}`, 2);
  return Buffer.from(s, 'hex');
}

function format(digest: Buffer, f: string): string {
  return f === 'hex' ? digest.toString('hex') : digest.toString('base64');
}

export const measure: Command = {
  name: 'measure',
  summary: 'compute the expected launch digest of an SEV, SEV-ES or SEV-SNP guest (sev-snp-measure flags)',
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
    'guest-features': { type: 'string' },
    'snp-ovmf-hash': { type: 'string' },
    svsm: { type: 'string' },
    'vars-size': { type: 'string' },
    'vars-file': { type: 'string' },
    'output-format': { type: 'string' },
    'dump-vmsa': { type: 'string' },
    progress: { type: 'boolean' },
    verbose: { type: 'boolean', short: 'v' },
  },
  async run({ values }, io) {
    const v = values as Values;
    const modeArg = str(v, 'mode');
    if (modeArg === undefined) throw new CliError('--mode is required (sev, seves, snp, snp:ovmf-hash or snp:svsm)', 2);
    const parsed = parseMode(modeArg);
    const ovmf = str(v, 'ovmf');
    if (ovmf === undefined) throw new CliError('--ovmf is required', 2);
    const outFormat = str(v, 'output-format') ?? 'hex';
    if (outFormat !== 'hex' && outFormat !== 'base64') throw new CliError(`--output-format must be hex or base64, got ${JSON.stringify(outFormat)}`, 2);

    if (parsed === 'snp:ovmf-hash') {
      // As sev-snp-measure: only the firmware matters here, the other flags are not looked at.
      const firmware = new InputCache(io).firmware(ovmf);
      const progress = Progress.for(io, 'measure', firmware.length, flag(v, 'progress'));
      const hash = withSev(() => snpOvmfHash(firmware, progress && ((done) => progress.update(done))));
      progress?.done();
      io.out(format(hash, outFormat));
      return 0;
    }
    const mode: Mode = parsed;
    const snp = isSnp(mode);
    const dumpDir = str(v, 'dump-vmsa');
    if (dumpDir !== undefined && mode === 'sev') throw new CliError('--dump-vmsa is not available in mode sev (an SEV guest has no VMSA)', 2);
    if (snp && str(v, 'sev-features') !== undefined) throw new CliError(`--sev-features is for mode seves; SNP takes --guest-features`, 2);
    if (str(v, 'guest-features') !== undefined && mode !== 'snp') {
      throw new CliError(
        mode === 'snp:svsm'
          ? '--guest-features cannot be set in mode snp:svsm (sev-snp-measure fixes it at 0x1)'
          : `--guest-features is for mode snp; ${mode} takes --sev-features`,
        2,
      );
    }
    const vcpusArg = optUint(v, 'vcpus', 4096);
    if (vcpusArg === 0) throw new CliError('--vcpus must be at least 1', 2);
    const varsFile = str(v, 'vars-file');
    if (varsFile !== undefined && str(v, 'vars-size') !== undefined) throw new CliError('give --vars-size or --vars-file, not both', 2);
    const varsSize = varsFile !== undefined ? sizeOf(io, varsFile) : optUint(v, 'vars-size', 0xffffffff);
    const ovmfHashArg = str(v, 'snp-ovmf-hash');
    const cfg: LaunchConfig = {
      mode,
      ovmf,
      kernel: str(v, 'kernel'),
      initrd: str(v, 'initrd'),
      append: str(v, 'append'),
      vcpus: mode === 'sev' ? undefined : vcpusArg,
      vcpu:
        mode === 'sev'
          ? undefined
          : vcpuFromFlags({
              type: str(v, 'vcpu-type'),
              sig: str(v, 'vcpu-sig'),
              family: str(v, 'vcpu-family'),
              model: str(v, 'vcpu-model'),
              stepping: str(v, 'vcpu-stepping'),
            }),
      vmmType: parseVmmType(str(v, 'vmm-type') ?? 'QEMU'),
      fpu: parseFpu(str(v, 'vmsa-fpu') ?? (snp ? 'init2' : 'legacy')),
      sevFeatures: optUint(v, 'sev-features', Number.MAX_SAFE_INTEGER) ?? 0,
      guestFeatures: mode === 'snp' ? (optUint(v, 'guest-features', Number.MAX_SAFE_INTEGER) ?? 1) : undefined,
      snpOvmfHash: ovmfHashArg === undefined ? undefined : parseOvmfHash(ovmfHashArg),
      svsm: str(v, 'svsm'),
      varsSize,
    };
    checkConfig(cfg);

    const progress = Progress.for(io, 'measure', totalBytes(io, cfg, cfg.vcpus ?? 0), flag(v, 'progress'));
    const { digest, vmsas } = computeLaunch(cfg, new InputCache(io), progress);
    progress?.done();

    if (dumpDir !== undefined) {
      const dir = ensureDir(io, dumpDir, 'the VMSA dump directory');
      vmsas.forEach((page, vcpu) => writeOutput(io, join(dir, `vmsa${vcpu}.bin`), page, 'a VMSA page'));
    }
    const text = format(digest, outFormat);
    io.out(flag(v, 'verbose') ? `Calculated ${VERBOSE_NAME[mode]} guest measurement: ${text}` : text);
    return 0;
  },
};

/** --vars-file: sev-snp-measure uses only its size. */
function sizeOf(io: Io, path: string): number {
  try {
    return statSync(resolvePath(io, path)).size;
  } catch (e) {
    throw new CliError(`cannot read the OVMF_VARS file ${path}: ${(e as NodeJS.ErrnoException).code ?? String(e)}`, 1);
  }
}
