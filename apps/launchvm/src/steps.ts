import { LaunchError } from './errors';
import type { ExitCodeName } from './exit-codes';

export interface Output {
  out(line: string): void;
  err(line: string): void;
}

export class StepFailure extends Error {
  constructor(
    readonly step: string,
    readonly failure: ExitCodeName,
    message: string,
  ) {
    super(message);
  }
}

const fmt = (ms: number) => `${(ms / 1000).toFixed(3)} s`;

/**
 * Runs the launch one named step at a time, printing each with its duration. A step that throws ends the launch with
 * the step's failure class (or the one its LaunchError names). An abort (SIGINT/SIGTERM) ends the current wait.
 */
export class StepRunner {
  private index = 0;
  readonly started = Date.now();

  constructor(
    private readonly total: number,
    private readonly io: Output,
    private readonly signal?: AbortSignal,
  ) {}

  async run<T>(name: string, failure: ExitCodeName, fn: () => Promise<T> | T, describe: (v: T) => string): Promise<T> {
    this.index++;
    const label = `[${this.index}/${this.total}] ${name.padEnd(8)}`;
    const t0 = Date.now();
    try {
      if (this.signal?.aborted) throw new LaunchError('INTERRUPTED', 'interrupted');
      const value = await this.abortable(Promise.resolve().then(fn));
      this.io.out(`${label} ${fmt(Date.now() - t0).padStart(9)}  ${describe(value)}`);
      return value;
    } catch (e) {
      const cls = e instanceof LaunchError ? e.failure : failure;
      const message = e instanceof Error ? e.message : String(e);
      this.io.err(`${label} FAILED after ${fmt(Date.now() - t0)}: ${message}`);
      throw new StepFailure(name, cls, message);
    }
  }

  elapsed(): string {
    return fmt(Date.now() - this.started);
  }

  private abortable<T>(p: Promise<T>): Promise<T> {
    const signal = this.signal;
    if (!signal) return p;
    return new Promise<T>((resolve, reject) => {
      const onAbort = () => reject(new LaunchError('INTERRUPTED', 'interrupted by a signal'));
      signal.addEventListener('abort', onAbort, { once: true });
      p.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
    });
  }
}
