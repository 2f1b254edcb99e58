import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LaunchError } from '../../errors';
import type { SevDomain } from '../../domain/sev-domain';
import type { HypervisorBackend, LaunchInfo, LaunchSecret } from '../backend';
import { QmpClient, QmpError } from './client';
import { qemuCommandLine } from './qemu-command';

export interface QmpBackendOptions {
  qemuBinary: string;
  /** appended to the generated command line (e.g. -serial, -netdev, or sim-qemu's --platform) */
  extraArgs: string[];
  /** where the session files, QMP socket and log live; a fresh temp dir by default */
  runDir?: string;
  xmlDir: string;
  startTimeoutSeconds: number;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * The classic inject-secret script: spawn QEMU with -S and a QMP socket, then query-sev, query-sev-launch-measure,
 * sev-inject-launch-secret and cont. On success QEMU keeps running on its own (detached) and launchvm exits.
 */
export class QmpBackend implements HypervisorBackend {
  readonly description: string;
  private runDir = '';
  private ownRunDir = false;
  private argv: string[] = [];
  private child?: ChildProcess;
  private exit?: { code: number | null; signal: NodeJS.Signals | null };
  private qmp?: QmpClient;
  private socket = '';
  private log = '';

  constructor(private readonly opts: QmpBackendOptions) {
    this.description = `QEMU over QMP (${opts.qemuBinary})`;
  }

  async define(domain: SevDomain): Promise<string> {
    if (!domain.dhCert || !domain.session) throw new LaunchError('CONFIG', 'the domain XML lacks <dhCert>/<session>');
    if (this.opts.runDir) {
      mkdirSync(this.opts.runDir, { recursive: true, mode: 0o700 });
      this.runDir = this.opts.runDir;
    } else {
      this.runDir = mkdtempSync(join(tmpdir(), `launchvm-${domain.name.replace(/[^A-Za-z0-9_.-]/g, '_')}-`));
      this.ownRunDir = true;
    }
    // QEMU reads both as base64 text (sev_read_file_base64), as the kata shim writes them.
    const dhCertFile = join(this.runDir, 'godh.b64');
    const sessionFile = join(this.runDir, 'session.b64');
    writeFileSync(dhCertFile, domain.dhCert, { mode: 0o600 });
    writeFileSync(sessionFile, domain.session, { mode: 0o600 });
    this.socket = join(this.runDir, 'qmp.sock');
    this.log = join(this.runDir, 'qemu.log');
    this.argv = [...qemuCommandLine({ domain, xmlDir: this.opts.xmlDir, dhCertFile, sessionFile, qmpSocket: this.socket }), ...this.opts.extraArgs];
    return `QEMU command line ready (${this.runDir})`;
  }

  async start(): Promise<string> {
    const logFd = openSync(this.log, 'a', 0o600);
    try {
      // Detached with its own session: on success the guest outlives launchvm, like a libvirt-managed QEMU.
      this.child = spawn(this.opts.qemuBinary, this.argv, { detached: true, stdio: ['ignore', logFd, logFd] });
    } finally {
      closeSync(logFd);
    }
    const child = this.child;
    const spawnError = new Promise<Error>((resolve) => child.once('error', resolve));
    child.once('exit', (code, signal) => (this.exit = { code, signal }));
    const deadline = Date.now() + this.opts.startTimeoutSeconds * 1000;
    for (;;) {
      const failed = await Promise.race([spawnError, sleep(100).then(() => undefined)]);
      if (failed) {
        this.child = undefined; // never ran: nothing for cleanup to stop
        const code = (failed as NodeJS.ErrnoException).code;
        throw new LaunchError(
          'HYPERVISOR',
          code === 'ENOENT' ? `QEMU binary '${this.opts.qemuBinary}' not found (--qemu-binary)` : `cannot run QEMU: ${failed.message}`,
        );
      }
      if (this.exit) throw new LaunchError('HYPERVISOR', `QEMU exited (${this.exit.code ?? this.exit.signal}) before its monitor came up: ${this.logTail()}`);
      try {
        this.qmp = await QmpClient.connect(this.socket);
        break;
      } catch {
        if (Date.now() > deadline)
          throw new LaunchError('HYPERVISOR', `QEMU's QMP socket ${this.socket} did not come up within ${this.opts.startTimeoutSeconds} s: ${this.logTail()}`);
      }
    }
    const status = await this.command<{ status: string; running: boolean }>('HYPERVISOR', 'query-status');
    if (status.running) throw new LaunchError('HYPERVISOR', `QEMU is '${status.status}', not paused: was -S dropped?`);
    return `paused (${status.status}), pid ${child.pid}`;
  }

  async launchInfo(): Promise<LaunchInfo> {
    const sev = await this.command<Record<string, unknown>>('MEASUREMENT', 'query-sev');
    if (sev.enabled !== true) throw new LaunchError('MEASUREMENT', 'query-sev: SEV is not enabled for this guest');
    if (sev.state !== 'launch-secret') throw new LaunchError('MEASUREMENT', `query-sev: SEV state is '${String(sev.state)}', not 'launch-secret'`);
    const m = await this.command<{ data?: unknown }>('MEASUREMENT', 'query-sev-launch-measure');
    if (typeof m.data !== 'string') throw new LaunchError('MEASUREMENT', 'query-sev-launch-measure returned no data');
    const num = (k: string) => {
      const v = sev[k];
      if (!Number.isSafeInteger(v)) throw new LaunchError('MEASUREMENT', `query-sev: ${k} is missing or not a number`);
      return v as number;
    };
    return { measurement: m.data, apiMajor: num('api-major'), apiMinor: num('api-minor'), buildId: num('build-id'), policy: num('policy') };
  }

  async inject(secret: LaunchSecret): Promise<string> {
    // No gpa: QEMU puts the secret where the firmware's SEV_SECRET entry says, which is where the guest looks.
    await this.command('INJECT', 'sev-inject-launch-secret', { 'packet-header': secret.header, secret: secret.data });
    return 'secret injected (sev-inject-launch-secret)';
  }

  async resume(): Promise<string> {
    await this.command('RESUME', 'cont');
    const status = await this.command<{ status: string; running: boolean }>('RESUME', 'query-status');
    if (!status.running) throw new LaunchError('RESUME', `QEMU is '${status.status}' after cont, not running`);
    return 'running';
  }

  async cleanup(): Promise<string[]> {
    const done: string[] = [];
    if (this.child && !this.exit) {
      if (this.qmp) await this.qmp.execute('quit', undefined, 3000).catch(() => undefined);
      if (!(await this.waitExit(3000))) {
        this.child.kill('SIGKILL');
        await this.waitExit(3000);
      }
      if (!this.exit) throw new LaunchError('CLEANUP', `QEMU pid ${this.child.pid} did not exit after quit and SIGKILL`);
      done.push(`stopped QEMU (pid ${this.child.pid})`);
    }
    this.qmp?.close();
    this.qmp = undefined;
    if (this.ownRunDir) {
      rmSync(this.runDir, { recursive: true, force: true });
      this.ownRunDir = false;
    }
    return done;
  }

  summary(): string[] {
    return [`QEMU pid ${this.child?.pid} is running; QMP monitor ${this.socket}; log ${this.log}`];
  }

  async close(): Promise<void> {
    this.qmp?.close();
    this.child?.unref();
  }

  private async waitExit(ms: number): Promise<boolean> {
    const end = Date.now() + ms;
    while (!this.exit && Date.now() < end) await sleep(50);
    return this.exit !== undefined;
  }

  private logTail(): string {
    try {
      const lines = readFileSync(this.log, 'utf8').trim().split('\n');
      return lines.slice(-5).join(' | ') || 'no output';
    } catch {
      return 'no output';
    }
  }

  private async command<T>(failure: LaunchError['failure'], command: string, args?: Record<string, unknown>): Promise<T> {
    if (!this.qmp) throw new LaunchError(failure, `no QMP connection for ${command}`);
    try {
      return await this.qmp.execute<T>(command, args);
    } catch (e) {
      if (e instanceof QmpError) throw new LaunchError(failure, e.message);
      throw new LaunchError(failure, (e as Error).message);
    }
  }
}
