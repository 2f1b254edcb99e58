import { isSevError, launchDigest, PolicyFlag, resolveVcpuSignature, type VcpuSpec, type VmsaFpu } from '@kb/sev';
import { configError, UsageError } from '../errors';
import type { DomainFiles } from './files';
import type { SevDomain } from './sev-domain';

export interface DigestOptions {
  /** the guest vCPU from the command line; wins over the XML's <cpu><model> */
  vcpu?: VcpuSpec;
  fpu: VmsaFpu;
}

export interface ExpectedDigest {
  digest: Buffer;
  /** how it was computed, for the step line */
  summary: string;
}

/** The vCPU an SEV-ES digest needs: from the command line, else the XML's custom CPU model. */
export function guestVcpu(domain: SevDomain, given?: VcpuSpec): VcpuSpec {
  if (given) return given;
  if (domain.cpu.model && domain.cpu.mode === 'custom') return { type: domain.cpu.model };
  throw configError(
    `an SEV-ES digest needs the guest vCPU signature, and <cpu mode='${domain.cpu.mode}'>${domain.cpu.model ? '' : ' names no model'}` +
      " does not fix it: give --cpu-type MODEL, --cpu-sig N or --cpu-family/--cpu-model/--cpu-stepping (the host CPU's values for host-passthrough)",
  );
}

/**
 * GCTX.LD the way QEMU will measure this domain: the firmware, the kernel hashes table when kernelHashes='yes', and
 * for SEV-ES one VMSA per vCPU (@kb/sev, ../shared/specs/launch-digest.md §2–3).
 */
export function expectedDigest(domain: SevDomain, files: DomainFiles, opts: DigestOptions): ExpectedDigest {
  const es = (domain.policy & PolicyFlag.ES) !== 0;
  const kernelHashes = domain.kernelHashes && files.kernel ? { kernel: files.kernel, initrd: files.initrd, cmdline: domain.cmdline } : undefined;
  try {
    if (!es) {
      const digest = launchDigest({ mode: 'sev', firmware: files.firmware, kernelHashes });
      return { digest, summary: `SEV${kernelHashes ? ', kernel hashes' : ''}` };
    }
    const vcpu = guestVcpu(domain, opts.vcpu);
    const sig = resolveVcpuSignature(vcpu);
    const digest = launchDigest({ mode: 'seves', firmware: files.firmware, kernelHashes, vcpus: domain.vcpus, vcpu, fpu: opts.fpu });
    const cpuName = 'type' in vcpu ? vcpu.type : `sig 0x${sig.toString(16)}`;
    return {
      digest,
      summary: `SEV-ES, ${domain.vcpus} vCPU${domain.vcpus === 1 ? '' : 's'} ${cpuName}, ${opts.fpu} VMSA FPU${kernelHashes ? ', kernel hashes' : ''}`,
    };
  } catch (e) {
    if (isSevError(e)) throw configError(`cannot compute the expected launch digest: ${e.message}`);
    throw e;
  }
}

/** `--digest`: 32 bytes as hex or base64. */
export function parseDigestArg(s: string): Buffer {
  const t = s.trim();
  if (/^[0-9a-fA-F]{64}$/.test(t)) return Buffer.from(t, 'hex');
  if (/^[A-Za-z0-9+/]{43}=$/.test(t)) return Buffer.from(t, 'base64');
  throw new UsageError('--digest must be the 32-byte launch digest as 64 hex digits or base64');
}
