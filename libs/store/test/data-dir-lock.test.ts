import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import * as path from 'node:path';
import { lockDataDir } from '../src/data-dir-lock';
import { openStore, PGLITE_LOCK_FILE } from '../src/open';
import { requireVmModules } from './support/pglite';

function syncCode(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (e) {
    return (e as { code?: string }).code;
  }
  return undefined;
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
    it('is taken once: a second taker is refused with the holder named, and release leaves a lock that is not ours', () => {
      const first = lockDataDir(lockPath());
      expect(JSON.parse(readFileSync(lockPath(), 'utf8'))).toMatchObject({ pid: process.pid, host: hostname() });
      expect(() => lockDataDir(lockPath())).toThrow(/already open in this process/);
      first.release();
      expect(existsSync(lockPath())).toBe(false);
      // a live holder on this host: our parent process
      writeFileSync(lockPath(), holder(process.ppid));
      expect(syncCode(() => lockDataDir(lockPath()))).toBe('ERR_STORE_LOCKED');
      expect(() => lockDataDir(lockPath())).toThrow(new RegExp(`process ${process.ppid} on ${hostname()}`));
      // a lock released after someone else's file replaced it does not remove that file
      const own = lockDataDir(path.join(dir, 'other.lock'));
      writeFileSync(path.join(dir, 'other.lock'), holder(process.ppid));
      own.release();
      expect(existsSync(path.join(dir, 'other.lock'))).toBe(true);
    });

    it('is held by a live process of this host (a separate process), and taken over once that process is gone', async () => {
      const child = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 60000)'], { stdio: 'ignore' });
      try {
        writeFileSync(lockPath(), holder(child.pid!));
        expect(syncCode(() => lockDataDir(lockPath()))).toBe('ERR_STORE_LOCKED');
      } finally {
        const exited = new Promise((r) => child.once('exit', r));
        child.kill('SIGKILL');
        await exited;
      }
      const lock = lockDataDir(lockPath()); // stale now: its holder is gone
      expect(JSON.parse(readFileSync(lockPath(), 'utf8')).pid).toBe(process.pid);
      lock.release();
      expect(existsSync(lockPath())).toBe(false);
      lock.release(); // idempotent
      // a file naming our own pid that this process does not hold was left by an earlier process (a restarted container)
      writeFileSync(lockPath(), holder(process.pid));
      lockDataDir(lockPath()).release();
      expect(existsSync(lockPath())).toBe(false);
    });

    it('refuses a lock from another host (its holder cannot be checked) and an unreadable lock file', () => {
      writeFileSync(lockPath(), holder(12345, `${hostname()}-elsewhere`));
      expect(() => lockDataDir(lockPath())).toThrow(/elsewhere.*remove the lock file/);
      writeFileSync(lockPath(), 'not json');
      expect(syncCode(() => lockDataDir(lockPath()))).toBe('ERR_STORE_LOCKED');
      expect(readFileSync(lockPath(), 'utf8')).toBe('not json'); // nothing removed on a guess
    });
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
