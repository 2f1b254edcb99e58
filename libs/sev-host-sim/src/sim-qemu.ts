/**
 * The simulated QEMU as a process (run with tsx, or through bin/sim-qemu), so launchvm's QMP backend spawns it
 * exactly as it spawns qemu-system-x86_64. Errors end the process with status 1 and a "sim-qemu: ..." line on
 * stderr, which is how QEMU reports start-up failures to whoever spawned it.
 */
import { isHostSimError } from './errors';
import { parseQemuArgs } from './qemu/args';
import { SIM_QEMU_USAGE, startSimQemu } from './qemu/run';

async function main(argv: string[]): Promise<number> {
  try {
    const pre = parseQemuArgs(argv);
    if (pre.help) {
      process.stdout.write(SIM_QEMU_USAGE);
      return 0;
    }
    if (pre.version) {
      process.stdout.write('sim-qemu (sev-host-sim): a simulated SEV host, not QEMU\n');
      return 0;
    }
    const sim = await startSimQemu(argv);
    process.stderr.write(
      `sim-qemu: SIMULATED SEV host (synthetic root '${sim.hypervisor.platform.name}', not AMD), guest ${sim.vm.name} ${sim.vm.runState}` +
        (sim.qmp ? `, QMP on ${sim.qmp.path}` : '') +
        '\n',
    );
    for (const sig of ['SIGTERM', 'SIGINT'] as const) {
      process.once(sig, () => {
        process.stderr.write(`sim-qemu: terminating on signal ${sig}\n`);
        void sim.stop();
      });
    }
    await sim.exited;
    return 0;
  } catch (e) {
    process.stderr.write(`sim-qemu: ${isHostSimError(e) ? e.message : (e as Error).stack}\n`);
    return 1;
  }
}

if (require.main === module) {
  void main(process.argv.slice(2)).then((code) => process.exit(code));
}
