import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import * as path from 'node:path';
import { lockDataDir } from '../src/data-dir-lock';
import { openStore, PGLITE_LOCK_FILE } from '../src/open';
import { requireVmModules } from './support/pglite';

async function codeOf(p: Promise<unknown>): Promise<string | undefined> {
  try {
    await p;
  } catch (e) {
    return (e as { code?: string }).code;
  }
  return undefined;
}

const HOLDER = path.join(__dirname, 'support/lock-holder.ts');

/** /proc/PID/stat's state letter (Z: a zombie), or undefined once the process is gone. */
function procState(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat[stat.lastIndexOf(')') + 2];
  } catch {
    return undefined;
  }
}

/**
 * A lock holder in its own process, started the way a wrapper starts a broker: `sh -c 'holder & exec sleep'`, so its
 * parent (sleep) never reaps it — killed, it stays a zombie whose pid kill(pid, 0) still finds.
 */
async function startHolder(lockFile: string): Promise<{ pid: number; wrapper: ChildProcess }> {
  const wrapper = spawn('sh', ['-c', `"$0" --import tsx "$1" "$2" & exec sleep 120`, process.execPath, HOLDER, lockFile], {
    stdio: ['ignore', 'pipe', 'inherit'],
    cwd: path.resolve(__dirname, '../../..'),
  });
  const line = await new Promise<string>((done, fail) => {
    let out = '';
    wrapper.stdout!.on('data', (b: Buffer) => {
      out += b.toString();
      if (out.includes('\n')) done(out.split('\n')[0]!);
    });
    wrapper.once('exit', () => fail(new Error(`the holder's wrapper exited: ${out}`)));
  });
  return { pid: (JSON.parse(line) as { pid: number }).pid, wrapper };
}

const SLOW = 180_000; // PGlite start-up is several seconds of WebAssembly on a busy machine

describe('one process per PGlite data directory', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'kb-lock-'));
  });
  afterEach(() => rm(dir, { recursive: true, force: true }));
  const lockPath = () => path.join(dir, PGLITE_LOCK_FILE);
  const holder = (pid: number, host = hostname()) => JSON.stringify({ pid, host, since: '2026-01-01T00:00:00.000Z' });

  describe('the lock file', () => {
    it('is taken once: a second taker is refused with the holder named, and release leaves a lock that is not ours', async () => {
      const first = await lockDataDir(lockPath());
      expect(JSON.parse(readFileSync(lockPath(), 'utf8'))).toMatchObject({ pid: process.pid, host: hostname() });
      await expect(lockDataDir(lockPath())).rejects.toThrow(/already open in this process/);
      first.release();
      expect(existsSync(lockPath())).toBe(false);
      // a live holder on this host: our parent process
      writeFileSync(lockPath(), holder(process.ppid));
      expect(await codeOf(lockDataDir(lockPath()))).toBe('ERR_STORE_LOCKED');
      await expect(lockDataDir(lockPath())).rejects.toThrow(new RegExp(`process ${process.ppid} on ${hostname()}`));
      // a lock released after someone else's file replaced it does not remove that file
      const own = await lockDataDir(path.join(dir, 'other.lock'));
      writeFileSync(path.join(dir, 'other.lock'), holder(process.ppid));
      own.release();
      expect(existsSync(path.join(dir, 'other.lock'))).toBe(true);
    });

    it('is held by a live process of this host (a separate process), and taken over once that process is gone', async () => {
      const child = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 60000)'], { stdio: 'ignore' });
      try {
        writeFileSync(lockPath(), holder(child.pid!));
        expect(await codeOf(lockDataDir(lockPath()))).toBe('ERR_STORE_LOCKED');
      } finally {
        const exited = new Promise((r) => child.once('exit', r));
        child.kill('SIGKILL');
        await exited;
      }
      const lock = await lockDataDir(lockPath()); // stale now: its holder is gone
      expect(JSON.parse(readFileSync(lockPath(), 'utf8')).pid).toBe(process.pid);
      lock.release();
      expect(existsSync(lockPath())).toBe(false);
      lock.release(); // idempotent
      // a file naming our own pid that this process does not hold was left by an earlier process (a restarted container)
      writeFileSync(lockPath(), holder(process.pid));
      (await lockDataDir(lockPath())).release();
      expect(existsSync(lockPath())).toBe(false);
    });

    it('refuses a lock from another host (its holder cannot be checked) and an unreadable lock file', async () => {
      writeFileSync(lockPath(), holder(12345, `${hostname()}-elsewhere`));
      await expect(lockDataDir(lockPath())).rejects.toThrow(/elsewhere.*remove the lock file/);
      // the same with the socket lock's fields: a namespace on another host says nothing about this one
      writeFileSync(
        lockPath(),
        JSON.stringify({ pid: 12345, host: `${hostname()}-elsewhere`, since: '2026-01-01T00:00:00.000Z', netns: readlinkSync('/proc/self/ns/net') }),
      );
      await expect(lockDataDir(lockPath())).rejects.toThrow(/elsewhere.*remove the lock file/);
      writeFileSync(lockPath(), 'not json');
      expect(await codeOf(lockDataDir(lockPath()))).toBe('ERR_STORE_LOCKED');
      expect(readFileSync(lockPath(), 'utf8')).toBe('not json'); // nothing removed on a guess
    });
  });

  describe('the kernel holds the lock (a listening abstract socket), not a pid', () => {
    if (process.platform !== 'linux') return;

    it('a live holder in another process refuses a second taker, naming it', async () => {
      const { pid, wrapper } = await startHolder(lockPath());
      try {
        expect(JSON.parse(readFileSync(lockPath(), 'utf8'))).toMatchObject({ pid, host: hostname(), netns: readlinkSync('/proc/self/ns/net') });
        const err = await lockDataDir(lockPath()).then(
          () => undefined,
          (e: { code: string; message: string }) => e,
        );
        expect(err?.code).toBe('ERR_STORE_LOCKED');
        expect(err?.message).toContain(`process ${pid} on ${hostname()}`);
        // even with its lock file removed by hand, the live holder's socket still refuses
        rmSync(lockPath());
        expect(await codeOf(lockDataDir(lockPath()))).toBe('ERR_STORE_LOCKED');
      } finally {
        process.kill(pid, 'SIGKILL');
        wrapper.kill('SIGKILL');
      }
    }, 60_000);

    it('a holder killed and left a zombie (its wrapper never reaps it) does not block a restart', async () => {
      const { pid, wrapper } = await startHolder(lockPath());
      try {
        process.kill(pid, 'SIGKILL');
        for (let i = 0; i < 200 && procState(pid) !== 'Z'; i++) await new Promise((r) => setTimeout(r, 10));
        // what fooled the pid check: the zombie's pid is still there for kill(pid, 0)
        expect(procState(pid)).toBe('Z');
        expect(() => process.kill(pid, 0)).not.toThrow();
        const lock = await lockDataDir(lockPath());
        expect(JSON.parse(readFileSync(lockPath(), 'utf8')).pid).toBe(process.pid);
        lock.release();
      } finally {
        wrapper.kill('SIGKILL'); // the zombie goes to init, which reaps it
      }
    }, 60_000);
  });

  describe('openStore', () => {
    if (!requireVmModules()) return;

    it(
      'refuses a second store on an open data directory, writes nothing, and opens once the first is closed',
      async () => {
        const masterKey = randomBytes(32);
        const first = await openStore({ driver: 'pglite', dataDir: dir, masterKey });
        await first.putPolicy('p', { allow: ['x'] });
        await expect(openStore({ driver: 'pglite', dataDir: dir, masterKey })).rejects.toMatchObject({ code: 'ERR_STORE_LOCKED' });
        expect(await first.getPolicy('p')).toBeDefined(); // the first store is unharmed
        await first.close();
        expect(existsSync(lockPath())).toBe(false);
        const second = await openStore({ driver: 'pglite', dataDir: dir, masterKey });
        expect((await second.getPolicy('p'))?.document).toEqual({ allow: ['x'] });
        await second.close();
      },
      SLOW,
    );

    it(
      'releases the lock when the open fails (wrong master key)',
      async () => {
        const first = await openStore({ driver: 'pglite', dataDir: dir, masterKey: randomBytes(32) });
        await first.close();
        await expect(openStore({ driver: 'pglite', dataDir: dir, masterKey: randomBytes(32) })).rejects.toMatchObject({ code: 'ERR_STORE_MASTER_KEY' });
        expect(existsSync(lockPath())).toBe(false);
      },
      SLOW,
    );
  });
});
