/**
 * One process per PGlite directory. PGlite is PostgreSQL compiled to WebAssembly, single-process, with no postmaster to
 * refuse a second opener: two brokers started on one --data-dir would both write the same files and corrupt them.
 *
 * The lock is a file created exclusively beside the database, naming its holder (pid, host). A lock left by a process
 * that is gone (same host, pid no longer running — or our own pid, after a container restart reused it) is taken over;
 * one from another host cannot be checked and is refused with the way out in the message.
 */
import { closeSync, openSync, readFileSync, unlinkSync, writeSync } from 'node:fs';
import { hostname } from 'node:os';
import { resolve } from 'node:path';
import { StoreError } from './errors';

export interface DataDirLock {
  readonly path: string;
  /** Removes the lock file if it is still ours. Idempotent. */
  release(): void;
}

interface Holder {
  pid: number;
  host: string;
  since: string;
}

/** Lock files this process holds: a file naming our pid is stale only if it is not one of these. */
const heldHere = new Set<string>();

export function lockDataDir(lockPath: string): DataDirLock {
  const me: Holder = { pid: process.pid, host: hostname(), since: new Date().toISOString() };
  if (heldHere.has(resolve(lockPath))) {
    throw new StoreError('ERR_STORE_LOCKED', `the database in this data directory is already open in this process (lock file ${lockPath})`);
  }
  for (let attempt = 0; attempt < 2; attempt++) {
    if (tryCreate(lockPath, me)) return held(lockPath, me);
    const holder = readHolder(lockPath);
    if (holder === undefined) continue; // released meanwhile (or unreadable and removed): try again
    if (!isStale(holder, me)) {
      throw new StoreError(
        'ERR_STORE_LOCKED',
        `the database in this data directory is in use by process ${holder.pid} on ${holder.host} since ${holder.since} ` +
          `(lock file ${lockPath}). Stop that broker first; if it is gone (e.g. another container that was killed), remove the lock file.`,
      );
    }
    removeIfSame(lockPath, holder);
  }
  throw new StoreError('ERR_STORE_LOCKED', `could not take the lock file ${lockPath}: another process keeps re-creating it`);
}

function tryCreate(lockPath: string, me: Holder): boolean {
  let fd: number;
  try {
    fd = openSync(lockPath, 'wx', 0o600);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw new StoreError('ERR_STORE_CONNECT', `cannot create the lock file ${lockPath}: ${(e as Error).message}`, { cause: e });
  }
  try {
    writeSync(fd, JSON.stringify(me) + '\n');
  } finally {
    closeSync(fd);
  }
  return true;
}

function readHolder(lockPath: string): Holder | undefined {
  let text: string;
  try {
    text = readFileSync(lockPath, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new StoreError('ERR_STORE_CONNECT', `cannot read the lock file ${lockPath}: ${(e as Error).message}`, { cause: e });
  }
  try {
    const h = JSON.parse(text) as Partial<Holder>;
    if (Number.isSafeInteger(h.pid) && typeof h.host === 'string') return { pid: h.pid!, host: h.host, since: String(h.since) };
  } catch {
    // fall through: a torn or foreign file
  }
  // Written by a process that died between create and write, or not ours at all: refuse rather than guess.
  throw new StoreError('ERR_STORE_LOCKED', `the lock file ${lockPath} is not readable as a broker lock; remove it if no broker uses this data directory`);
}

function isStale(holder: Holder, me: Holder): boolean {
  if (holder.host !== me.host) return false;
  if (holder.pid === me.pid) return true; // not held here (checked first), so left by an earlier process with our pid
  try {
    process.kill(holder.pid, 0);
    return false;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'ESRCH';
  }
}

function removeIfSame(lockPath: string, holder: Holder): void {
  try {
    const now = JSON.parse(readFileSync(lockPath, 'utf8')) as Holder;
    if (now.pid === holder.pid && now.host === holder.host && String(now.since) === holder.since) unlinkSync(lockPath);
  } catch {
    // gone already, or replaced: the next attempt sees the current state
  }
}

function held(lockPath: string, me: Holder): DataDirLock {
  let released = false;
  heldHere.add(resolve(lockPath));
  return {
    path: lockPath,
    release() {
      if (released) return;
      released = true;
      heldHere.delete(resolve(lockPath));
      removeIfSame(lockPath, me);
    },
  };
}
