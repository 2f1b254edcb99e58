import type { Io } from '../cli';

/**
 * Progress of a long hash on stderr: with --progress every 10 %, or, when stderr is a terminal, every 10 % once the
 * work has taken more than a second (small inputs stay silent). One line per step, so it reads the same in a log.
 */
export class Progress {
  private readonly start = Date.now();
  private lastStep = -1;
  private printed = false;

  constructor(
    private readonly io: Io,
    private readonly label: string,
    private readonly total: number,
    private readonly forced: boolean,
  ) {}

  static for(io: Io, label: string, total: number, forced: boolean): Progress | undefined {
    return forced || io.errIsTTY ? new Progress(io, label, total, forced) : undefined;
  }

  /** Bytes done by the following phases are counted after the `done` bytes of the earlier ones. */
  phase(doneBefore: number): (done: number) => void {
    return (done) => this.update(doneBefore + done);
  }

  update(done: number): void {
    if (this.total <= 0) return;
    const step = Math.min(10, Math.floor((done / this.total) * 10));
    if (step <= this.lastStep) return;
    if (!this.forced && Date.now() - this.start < 1000) return;
    this.lastStep = step;
    this.printed = true;
    this.io.err(`${this.label}: ${step * 10}% (${mib(done)} of ${mib(this.total)} MiB)`);
  }

  done(): void {
    if (this.printed) this.io.err(`${this.label}: done, ${mib(this.total)} MiB in ${((Date.now() - this.start) / 1000).toFixed(1)} s`);
  }
}

const mib = (n: number) => (n / (1 << 20)).toFixed(1);
