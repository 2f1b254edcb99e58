import { isHostSimError } from '../errors';
import type { SimulatedHypervisor } from '../hypervisor';
import type { SimulatedVm } from '../vm';

/** QMP error classes QEMU uses (qapi/error.json `QapiErrorClass`). */
export type QmpErrorClass = 'GenericError' | 'CommandNotFound' | 'DeviceNotActive' | 'DeviceNotFound' | 'KVMMissingCap';

export class QmpCommandError extends Error {
  constructor(
    readonly errorClass: QmpErrorClass,
    message: string,
  ) {
    super(message);
  }
}

export interface CommandContext {
  vm: SimulatedVm;
  hypervisor?: SimulatedHypervisor;
  version: { major: number; minor: number; micro: number };
  package: string;
  emit(event: string, data?: Record<string, unknown>): void;
  /** after the reply to `quit` is sent */
  quit(): void;
  /** after the guest first runs (LAUNCH_FINISH) */
  booted(): void;
}

type Args = Record<string, unknown>;
interface CommandDef {
  /** name → [type, required] */
  args: Record<string, ['str' | 'int', boolean]>;
  run(ctx: CommandContext, args: Args): unknown;
}

function sevOrError<T>(fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    if (isHostSimError(e)) throw new QmpCommandError('GenericError', e.message);
    throw e;
  }
}

const COMMANDS: Record<string, CommandDef> = {
  'query-version': {
    args: {},
    run: (ctx) => ({ qemu: { ...ctx.version }, package: ctx.package }),
  },
  'query-commands': {
    args: {},
    run: () => ['qmp_capabilities', ...Object.keys(COMMANDS)].map((name) => ({ name })),
  },
  'query-status': {
    args: {},
    run: (ctx) => {
      const s = ctx.vm.runState;
      const status = s === 'created' ? 'prelaunch' : s;
      return { running: s === 'running', singlestep: false, status };
    },
  },
  'query-sev': {
    args: {},
    run: (ctx) => {
      const i = sevOrError(() => ctx.vm.querySev());
      return {
        enabled: i.enabled,
        'api-major': i.apiMajor,
        'api-minor': i.apiMinor,
        'build-id': i.buildId,
        policy: i.policy,
        state: i.state,
        handle: i.handle,
        'sev-type': i.sevType,
      };
    },
  },
  'query-sev-launch-measure': {
    args: {},
    run: (ctx) => ({ data: sevOrError(() => ctx.vm.launchMeasurement()) }),
  },
  'query-sev-capabilities': {
    args: {},
    run: (ctx) => {
      if (!ctx.hypervisor) throw new QmpCommandError('GenericError', 'SEV: capabilities are not available');
      const c = ctx.hypervisor.capabilities();
      return { pdh: c.pdh, 'cert-chain': c.certChain, cbitpos: c.cbitpos, 'reduced-phys-bits': c.reducedPhysBits };
    },
  },
  'sev-inject-launch-secret': {
    args: { 'packet-header': ['str', true], secret: ['str', true], gpa: ['int', false] },
    run: (ctx, a) => {
      sevOrError(() => ctx.vm.injectSecret(a['packet-header'] as string, a.secret as string, a.gpa as number | undefined));
      return {};
    },
  },
  cont: {
    args: {},
    run: (ctx) => {
      const before = ctx.vm.runState;
      sevOrError(() => ctx.vm.resume());
      if (before !== 'running') {
        ctx.emit('RESUME');
        ctx.booted();
      }
      return {};
    },
  },
  stop: {
    args: {},
    run: (ctx) => {
      const before = ctx.vm.runState;
      sevOrError(() => ctx.vm.pause());
      if (before === 'running') ctx.emit('STOP');
      return {};
    },
  },
  quit: {
    args: {},
    run: (ctx) => {
      ctx.vm.destroy();
      setImmediate(() => {
        ctx.emit('SHUTDOWN', { guest: false, reason: 'host-qmp-quit' });
        ctx.quit();
      });
      return {};
    },
  },
};

/** Runs one command with QEMU's argument checking and messages. */
export function executeCommand(ctx: CommandContext, name: string, args: unknown): unknown {
  const def = Object.prototype.hasOwnProperty.call(COMMANDS, name) ? COMMANDS[name] : undefined;
  if (!def) throw new QmpCommandError('CommandNotFound', `The command ${name} has not been found`);
  const a = (args ?? {}) as Args;
  for (const key of Object.keys(a)) {
    if (!(key in def.args)) throw new QmpCommandError('GenericError', `Parameter '${key}' is unexpected`);
  }
  for (const [key, [type, required]] of Object.entries(def.args)) {
    const v = a[key];
    if (v === undefined) {
      if (required) throw new QmpCommandError('GenericError', `Parameter '${key}' is missing`);
      continue;
    }
    const ok = type === 'str' ? typeof v === 'string' : Number.isSafeInteger(v) && (v as number) >= 0;
    if (!ok) throw new QmpCommandError('GenericError', `Invalid parameter type for '${key}', expected: ${type === 'str' ? 'string' : 'integer'}`);
  }
  return def.run(ctx, a);
}
