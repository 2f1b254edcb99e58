import { createHash } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { launchDigest } from '@kb/sev';
import { syntheticOvmf } from '@kb/sev-host-sim';

export const DISK_GUID = '736869e5-84f0-4973-92ec-06879ce3da0b';
export const CONFIG_GUID = 'e6f5a162-d67f-4750-a67c-5d065f2a9910';
export const CMDLINE = 'console=ttyS0 root=/dev/vda1';

/** A guest image (synthetic OVMF, kernel, initrd) in `dir`, with the digests an owner would expect for it. */
export function writeGuestImage(dir: string) {
  const firmware = syntheticOvmf({ label: 'launchvm tests' });
  const kernel = createHash('sha512').update('kernel').digest();
  const initrd = createHash('sha512').update('initrd').digest();
  const files = { firmware: join(dir, 'OVMF.fd'), tampered: join(dir, 'OVMF-tampered.fd'), kernel: join(dir, 'vmlinuz'), initrd: join(dir, 'initrd.img') };
  writeFileSync(files.firmware, firmware);
  writeFileSync(files.tampered, syntheticOvmf({ label: 'not the owner firmware' }));
  writeFileSync(files.kernel, kernel);
  writeFileSync(files.initrd, initrd);
  const kernelHashes = { kernel, initrd, cmdline: CMDLINE };
  const digests = {
    sev: launchDigest({ mode: 'sev', firmware, kernelHashes }),
    seves2: launchDigest({ mode: 'seves', firmware, kernelHashes, vcpus: 2, vcpu: { type: 'EPYC-v4' } }),
  };
  return { files, digests };
}

export interface DomainOptions {
  name: string;
  firmware: string;
  policy: number;
  vcpus?: number;
  kernel?: string;
  initrd?: string;
  loaderType?: 'rom' | 'pflash';
  cpu?: string;
  extraLaunchSecurity?: string;
}

export function domainXml(o: DomainOptions): string {
  return `<?xml version='1.0' encoding='UTF-8'?>
<!-- a libvirt SEV guest, as an owner would write it -->
<domain type='kvm'>
  <name>${o.name}</name>
  <memory unit='MiB'>1024</memory>
  <vcpu placement='static'>${o.vcpus ?? 2}</vcpu>
  <os>
    <type arch='x86_64' machine='q35'>hvm</type>
    <loader readonly='yes' type='${o.loaderType ?? 'rom'}'>${o.firmware}</loader>${
      o.kernel
        ? `
    <kernel>${o.kernel}</kernel>
    <initrd>${o.initrd}</initrd>
    <cmdline>${CMDLINE}</cmdline>`
        : ''
    }
  </os>
  ${o.cpu ?? `<cpu mode='custom' match='exact'><model fallback='forbid'>EPYC-v4</model></cpu>`}
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
  </devices>
  <launchSecurity type='sev'${o.kernel ? " kernelHashes='yes'" : ''}>
    <cbitpos>47</cbitpos>
    <reducedPhysBits>1</reducedPhysBits>
    <policy>0x${o.policy.toString(16).padStart(4, '0')}</policy>${o.extraLaunchSecurity ?? ''}
  </launchSecurity>
</domain>
`;
}

/** Captures what launchvm prints. */
export function captureIo(cwd: string, env: NodeJS.ProcessEnv = {}) {
  const out: string[] = [];
  const err: string[] = [];
  return {
    io: { out: (s: string) => out.push(s), err: (s: string) => err.push(s), env, cwd },
    out,
    err,
    text: () => [...out, ...err].join('\n'),
  };
}
