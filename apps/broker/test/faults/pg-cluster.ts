import { execFileSync, spawnSync } from 'node:child_process';
import { chownSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client } from 'pg';

/**
 * A throwaway PostgreSQL server for fault tests, which stop, restart and freeze it (the shared server of the other
 * suites is never touched): Debian's initdb and pg_ctl in a temporary directory, on a random loopback port, run as
 * the postgres user when the tests run as root (initdb refuses root), as tools/test/run.sh does.
 */
export class PgCluster {
  readonly port = 20000 + Math.floor(Math.random() * 20000);
  private readonly dir = mkdtempSync(join(tmpdir(), 'kb-fault-pg-'));
  private readonly bin: string;
  private readonly asPg: string[];

  constructor() {
    const versions = existsSync('/usr/lib/postgresql') ? readdirSync('/usr/lib/postgresql').sort((a, b) => Number(a) - Number(b)) : [];
    const bin = versions.map((v) => `/usr/lib/postgresql/${v}/bin`).find((b) => existsSync(join(b, 'initdb')));
    if (!bin) throw new Error('the fault suite needs Debian PostgreSQL server binaries (apt-get install postgresql)');
    this.bin = bin;
    this.asPg = process.getuid?.() === 0 ? ['runuser', '-u', 'postgres', '--'] : [];
    if (this.asPg.length)
      chownSync(this.dir, Number(execFileSync('id', ['-u', 'postgres']).toString()), Number(execFileSync('id', ['-g', 'postgres']).toString()));
    this.run('initdb', ['-D', this.data, '-U', 'kb', '--auth=trust', '--no-sync']);
  }

  private get data(): string {
    return join(this.dir, 'data');
  }

  private run(tool: string, args: string[]): void {
    const [cmd, ...pre] = [...this.asPg, join(this.bin, tool)];
    const r = spawnSync(cmd!, [...pre, ...args], { encoding: 'utf8', timeout: 60_000 });
    if (r.status !== 0) throw new Error(`${tool} ${args.join(' ')} failed (${r.status}): ${r.stderr}${r.stdout}`);
  }

  url(database = 'postgres'): string {
    return `postgres://kb@127.0.0.1:${this.port}/${database}`;
  }

  /** Starts the server and waits until it accepts connections. fsync off: it is never crashed, only stopped. */
  start(): void {
    const opts = `-p ${this.port} -k ${this.dir} -c listen_addresses=127.0.0.1 -c max_connections=200 -c fsync=off`;
    this.run('pg_ctl', ['-D', this.data, '-o', opts, '-l', join(this.dir, 'log'), '-w', '-t', '60', 'start']);
  }

  /** A fast shutdown (clients disconnected, the server checkpoints and exits). */
  stop(): void {
    this.run('pg_ctl', ['-D', this.data, '-m', 'fast', '-w', '-t', '60', 'stop']);
  }

  restart(): void {
    this.stop();
    this.start();
  }

  /** The postmaster and every backend and auxiliary process it started. */
  private pids(): number[] {
    const postmaster = Number(readFileSync(join(this.data, 'postmaster.pid'), 'utf8').split('\n')[0]);
    const children = readdirSync('/proc')
      .filter((d) => /^\d+$/.test(d))
      .filter((d) => {
        try {
          // /proc/PID/stat: "pid (comm) state ppid ..."; comm may hold spaces, so read after the last ')'
          const stat = readFileSync(`/proc/${d}/stat`, 'utf8');
          return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]) === postmaster;
        } catch {
          return false; // exited meanwhile
        }
      })
      .map(Number);
    return [postmaster, ...children];
  }

  /** A hang: SIGSTOP to the postmaster and its children (connections stay open, nothing answers). */
  freeze(): number[] {
    const pids = this.pids();
    for (const pid of pids) process.kill(pid, 'SIGSTOP');
    return pids;
  }

  thaw(pids: number[]): void {
    for (const pid of pids) {
      try {
        process.kill(pid, 'SIGCONT');
      } catch {
        // gone
      }
    }
  }

  async createDatabase(name: string): Promise<string> {
    const c = new Client({ connectionString: this.url() });
    await c.connect();
    try {
      await c.query(`CREATE DATABASE "${name}"`);
    } finally {
      await c.end();
    }
    return this.url(name);
  }

  /** Immediate stop (the data is thrown away) and the directory removed. */
  destroy(): void {
    try {
      this.thaw(this.pids()); // a test that failed while the server was frozen
    } catch {
      // not running
    }
    try {
      this.run('pg_ctl', ['-D', this.data, '-m', 'immediate', '-w', 'stop']);
    } catch {
      // not running
    }
    rmSync(this.dir, { recursive: true, force: true });
  }
}
