import { execFile } from 'node:child_process';

export class VirshError extends Error {
  override readonly name = 'VirshError';
  constructor(
    readonly command: string,
    /** virsh's error lines without their "error: " prefixes */
    readonly reason: string,
    readonly exitCode: number | null,
  ) {
    super(`virsh ${command} failed: ${reason}`);
  }
}

export class VirshNotFoundError extends Error {
  override readonly name = 'VirshNotFoundError';
}

/**
 * virsh prints "error: <what failed>" and then "error: <libvirt's reason>"; both matter ("Failed to start domain
 * 'x'" + "internal error: qemu unexpectedly closed the monitor: …"), so they are joined into one line.
 */
export function virshErrorReason(stderr: string): string {
  const lines = stderr
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean)
    .map((l) => l.replace(/^error:\s*/, ''));
  return lines.join(': ') || 'no error message';
}

export interface VirshRunner {
  run(args: string[]): Promise<string>;
}

/**
 * Runs `virsh -c URI …` once per command, like an administrator's shell script: each call gets libvirt's own exit
 * status and messages. LC_ALL=C because virsh translates its messages and launchvm parses some of its output.
 */
export class Virsh implements VirshRunner {
  constructor(
    readonly binary: string,
    readonly uri: string,
    private readonly timeoutMs = 120_000,
  ) {}

  run(args: string[]): Promise<string> {
    const command = args.join(' ');
    return new Promise((resolve, reject) => {
      execFile(
        this.binary,
        ['-c', this.uri, ...args],
        { env: { ...process.env, LC_ALL: 'C', LANG: 'C' }, timeout: this.timeoutMs, maxBuffer: 16 << 20 },
        (err, stdout, stderr) => {
          if (!err) return resolve(stdout);
          const e = err as NodeJS.ErrnoException & { code?: string | number; killed?: boolean };
          if (e.code === 'ENOENT') return reject(new VirshNotFoundError(`'${this.binary}' not found: install libvirt-clients (Debian) or pass --virsh PATH`));
          if (e.killed) return reject(new VirshError(command, `no answer within ${this.timeoutMs / 1000} s`, null));
          reject(new VirshError(command, virshErrorReason(stderr), typeof e.code === 'number' ? e.code : null));
        },
      );
    });
  }
}
