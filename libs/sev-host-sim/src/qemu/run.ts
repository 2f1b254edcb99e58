import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createPlatform, loadPlatform, savePlatform, type SimulatedPlatform } from '@kb/sev-sim';
import { writeEfiSecretFiles } from '../efi-secret';
import { HostSimError } from '../errors';
import { SimulatedHypervisor } from '../hypervisor';
import { QmpServer } from '../qmp/server';
import type { SimulatedVm } from '../vm';
import { parseQemuArgs, type QemuInvocation } from './args';

export const SIM_QEMU_USAGE = `sim-qemu — a simulated qemu-system-x86_64 for SEV / SEV-ES guests (NOT QEMU, no real guest runs)

Usage: sim-qemu [QEMU options] --platform DIR

Understood like QEMU:
  -object sev-guest,id=ID,policy=P,dh-cert-file=F,session-file=F[,cbitpos=47][,reduced-phys-bits=1]
          [,kernel-hashes=on|off][,legacy-vm-type=on|off|auto]
  -machine TYPE,confidential-guest-support=ID   (or memory-encryption=ID)
  -bios FILE | -drive if=pflash,unit=0,file=FILE   the measured firmware (pflash unit 1 / VARS is not measured)
  -kernel FILE -initrd FILE -append CMDLINE        direct kernel boot (measured with kernel-hashes=on)
  -smp N   -cpu MODEL (EPYC, EPYC-v4, EPYC-Rome, EPYC-Milan, EPYC-Genoa, ...; 'host' = EPYC-Milan)
  -S       stop before the first instruction (the launch waits for a secret and 'cont')
  -qmp unix:PATH,server=on,wait=off   QMP monitor (query-sev, query-sev-launch-measure, sev-inject-launch-secret,
           cont, stop, query-status, query-sev-capabilities, query-version, quit)
  -name NAME; -m, -display, -nographic, -nodefaults, -serial, ... are accepted and ignored.

Simulator only:
  --platform DIR            the simulated SEV platform (created there on first use; its root is synthetic)
  --guest-secrets-dir DIR   when the guest boots, write what its efi_secret driver exposes under
                            DIR/sys/kernel/security/secrets/coco/<guid>
  -h, --help                this help
`;

/** The CPU model 'host' stands for: the simulated host is Milan-like. */
export const SIM_HOST_CPU_MODEL = 'EPYC-Milan';

export interface RunningSimQemu {
  vm: SimulatedVm;
  hypervisor: SimulatedHypervisor;
  qmp?: QmpServer;
  invocation: QemuInvocation;
  /** resolves once the guest is gone (quit over QMP or stop()) */
  exited: Promise<void>;
  stop(): Promise<void>;
}

export function loadOrCreatePlatform(dir: string): SimulatedPlatform {
  if (existsSync(join(dir, 'platform.json'))) return loadPlatform(dir);
  const p = createPlatform({ name: 'sev-sim' });
  savePlatform(p, dir);
  return p;
}

function readInput(what: string, file: string): Buffer {
  try {
    return readFileSync(file);
  } catch (e) {
    throw new HostSimError(
      'BAD_CONFIG',
      `${what} '${file}': ${(e as NodeJS.ErrnoException).code === 'ENOENT' ? 'No such file or directory' : (e as Error).message}`,
    );
  }
}

/** QEMU reads dh-cert-file and session-file as base64 text. */
function readBase64(what: string, file: string): Buffer {
  const text = readInput(what, file).toString('latin1').trim();
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(text) || text.length % 4 !== 0) throw new HostSimError('BAD_CONFIG', `${what} '${file}' does not hold base64`);
  return Buffer.from(text, 'base64');
}

/**
 * Machine init as QEMU does it for an SEV guest: read the inputs, launch (LAUNCH_START … LAUNCH_MEASURE), and serve
 * QMP. Throws HostSimError('BAD_CONFIG' | 'LAUNCH_FAILED') where QEMU would print an error and exit.
 */
export async function startSimQemu(argv: readonly string[], platform?: SimulatedPlatform): Promise<RunningSimQemu> {
  const inv = parseQemuArgs(argv);
  const sev = inv.sevGuest;
  if (!sev || inv.confidentialGuestSupport !== sev.id) {
    throw new HostSimError('BAD_CONFIG', 'sim-qemu simulates SEV guests only: give -object sev-guest,id=ID,... and -machine ...,confidential-guest-support=ID');
  }
  if (!inv.firmwareFile) throw new HostSimError('BAD_CONFIG', 'no firmware: give -bios FILE or -drive if=pflash,unit=0,file=FILE');
  if (!sev.dhCertFile || !sev.sessionFile)
    throw new HostSimError('BAD_CONFIG', 'sev-guest: dh-cert-file and session-file are required (sim-qemu has no unattested launch)');
  if (!platform && !inv.platformDir) throw new HostSimError('BAD_CONFIG', '--platform DIR is required');
  if ((inv.initrd || inv.append) && !inv.kernel) throw new HostSimError('BAD_CONFIG', '-initrd and -append need -kernel');
  const hypervisor = new SimulatedHypervisor(platform ?? loadOrCreatePlatform(inv.platformDir!));
  const model = inv.cpuModel === 'host' ? SIM_HOST_CPU_MODEL : inv.cpuModel;
  const vm = hypervisor.createVm({
    name: inv.name,
    firmware: readInput('-bios/pflash', inv.firmwareFile),
    kernel: inv.kernel
      ? { kernel: readInput('-kernel', inv.kernel), initrd: inv.initrd ? readInput('-initrd', inv.initrd) : undefined, cmdline: inv.append }
      : undefined,
    kernelHashes: sev.kernelHashes,
    vcpus: inv.smp,
    vcpu: model ? { type: model } : undefined,
    fpu: sev.legacyVmType === 'off' ? 'init2' : 'legacy',
    policy: sev.policy,
    godhCert: readBase64('dh-cert-file', sev.dhCertFile),
    session: readBase64('session-file', sev.sessionFile),
    cbitpos: sev.cbitpos,
    reducedPhysBits: sev.reducedPhysBits,
  });
  const publish = (v: SimulatedVm) => {
    if (inv.guestSecretsDir) writeEfiSecretFiles(inv.guestSecretsDir, v.efiSecretFiles());
  };
  vm.start({ paused: inv.startPaused });
  if (vm.runState === 'running') publish(vm);

  let done!: () => void;
  const exited = new Promise<void>((resolve) => (done = resolve));
  let qmp: QmpServer | undefined;
  const stop = async () => {
    vm.destroy();
    await qmp?.close();
    done();
  };
  if (inv.qmpSocket) {
    try {
      qmp = await QmpServer.listen(inv.qmpSocket, { vm, hypervisor, onQuit: done, onBoot: publish });
    } catch (e) {
      vm.destroy();
      throw new HostSimError('BAD_CONFIG', `-qmp unix:${inv.qmpSocket}: Failed to bind socket: ${(e as Error).message}`);
    }
  }
  return { vm, hypervisor, qmp, invocation: inv, exited, stop };
}
