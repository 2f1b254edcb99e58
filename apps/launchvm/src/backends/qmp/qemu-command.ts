import type { SevDomain } from '../../domain/sev-domain';
import { domainPath } from '../../domain/files';

/** QEMU key=value lists take a literal comma as ",,". */
const q = (v: string) => v.replace(/,/g, ',,');

export interface QemuCommandInput {
  domain: SevDomain;
  xmlDir: string;
  dhCertFile: string;
  sessionFile: string;
  qmpSocket: string;
}

/**
 * The QEMU command line libvirt would build for this domain's launch-relevant parts: the sev-guest object with the
 * owner's session files, the measured firmware (pflash unit 0 or -bios), the measured kernel boot, the vCPUs and
 * their model, -S so nothing runs before the secret is in, and a QMP socket to drive the launch.
 */
export function qemuCommandLine(i: QemuCommandInput): string[] {
  const d = i.domain;
  const sev = [
    'sev-guest',
    'id=sev0',
    `policy=0x${d.policy.toString(16)}`,
    ...(d.cbitpos !== undefined ? [`cbitpos=${d.cbitpos}`] : []),
    ...(d.reducedPhysBits !== undefined ? [`reduced-phys-bits=${d.reducedPhysBits}`] : []),
    `dh-cert-file=${q(i.dhCertFile)}`,
    `session-file=${q(i.sessionFile)}`,
    ...(d.kernelHashes ? ['kernel-hashes=on'] : []),
  ].join(',');
  const firmware = domainPath(i.xmlDir, d.loader.path);
  const args = [
    '-name',
    `guest=${q(d.name)}`,
    '-machine',
    `${q(d.machine ?? 'q35')},confidential-guest-support=sev0`,
    '-accel',
    'kvm',
    '-object',
    sev,
    ...(d.loader.type === 'pflash' ? ['-drive', `if=pflash,format=raw,unit=0,file=${q(firmware)},readonly=on`] : ['-bios', firmware]),
    '-smp',
    String(d.vcpus),
    ...(d.memoryKiB ? ['-m', `${Math.ceil(d.memoryKiB / 1024)}M`] : []),
  ];
  if (d.cpu.mode === 'host-passthrough' || d.cpu.mode === 'maximum') args.push('-cpu', 'host');
  else if (d.cpu.model) args.push('-cpu', d.cpu.model);
  if (d.kernel) args.push('-kernel', domainPath(i.xmlDir, d.kernel));
  if (d.initrd) args.push('-initrd', domainPath(i.xmlDir, d.initrd));
  if (d.cmdline !== undefined) args.push('-append', d.cmdline);
  args.push('-S', '-qmp', `unix:${q(i.qmpSocket)},server=on,wait=off`, '-nodefaults', '-display', 'none');
  return args;
}
