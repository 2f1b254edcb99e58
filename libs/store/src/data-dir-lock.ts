/**
 * One process per PGlite directory. PGlite is PostgreSQL compiled to WebAssembly, single-process, with no postmaster to
 * refuse a second opener: two brokers started on one --data-dir would both write the same files and corrupt them.
 *
 * Two parts:
 * - **The kernel's lock** (Linux): the holder listens on an abstract-namespace Unix socket whose name is derived from
 *   the lock file's real path. Only one socket can have a name in a network namespace (bind fails with EADDRINUSE),
 *   and the kernel closes it when the holder exits — however it exits: SIGKILL, or killed with its wrapper and left a
 *   zombie nobody reaps (a zombie has already released its descriptors, while `kill(pid, 0)` still finds its pid).
 *   No file to clean up, no native addon. Node marks the socket close-on-exec, so no child process inherits it.
 * - **The lock file** beside the database names the holder (pid, host, network namespace) for the messages, and is
 *   what a broker on another host sharing the volume sees: that holder cannot be checked, so it is refused with the
 *   way out in the message, as before.
 * A lock file from this host and network namespace is stale once we hold the socket name: its holder's socket is gone.
 * One from another network namespace of this host (a restarted container), from a broker that predates the socket,
 * or on a system without abstract sockets is judged by its pid, as before: gone, a zombie, or our own pid (a container
 * restart reused it) means stale.
 */
import { createHash } from 'node:crypto';
import { closeSync, openSync, readFileSync, readlinkSync, realpathSync, unlinkSync, writeSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { hostname } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import { StoreError } from './errors';

export interface DataDirLock {
  readonly path: string;
  /** Removes the lock file if it is still ours and closes the socket. Idempotent. */
  release(): void;
}

interface Holder {
  pid: number;
  host: string;
  since: string;
  /** the holder's network namespace (Linux: `net:[inode]`), present when it holds the socket lock */
  netns?: string;
}

/** How long a restart waits for an exiting holder's socket to close (see lockDataDir). */
const EXITING_HOLDER_GRACE_MS = 3000;
const EXITING_HOLDER_POLL_MS = 50;

/** Lock files this process holds: a file naming our pid is stale only if it is not one of these. */
const heldHere = new Set<string>();

export async function lockDataDir(lockPath: string): Promise<DataDirLock> {
  if (heldHere.has(resolve(lockPath))) {
    throw new StoreError('ERR_STORE_LOCKED', `the database in this data directory is already open in this process (lock file ${lockPath})`);
  }
  const netns = networkNamespace();
  let socket = netns === undefined ? undefined : await listenOnLockSocket(lockPath);
  // A holder of this host whose process is already gone or a zombie is exiting: its main thread is a zombie before its
  // other threads have released the descriptor table, so its socket may live a moment longer. Wait for the kernel to
  // close it rather than refuse a restart.
  for (let waited = 0; socket === 'in use' && waited < EXITING_HOLDER_GRACE_MS; waited += EXITING_HOLDER_POLL_MS) {
    const holder = safeReadHolder(lockPath);
    if (!holder || holder.host !== hostname() || holder.pid === process.pid || pidRunning(holder.pid)) break;
    await new Promise((r) => setTimeout(r, EXITING_HOLDER_POLL_MS));
    socket = await listenOnLockSocket(lockPath);
  }
  if (socket === 'in use') {
    const holder = safeReadHolder(lockPath);
    throw new StoreError(
      'ERR_STORE_LOCKED',
      `the database in this data directory is in use by ${holder ? `process ${holder.pid} on ${holder.host} since ${holder.since}` : 'another process of this host'} ` +
        `(lock file ${lockPath}; the process still holds its lock socket). Stop that broker first.`,
    );
  }
  const me: Holder = { pid: process.pid, host: hostname(), since: new Date().toISOString(), ...(socket ? { netns } : {}) };
  try {
    for (let attempt = 0; attempt < 2; attempt++) {
      if (tryCreate(lockPath, me)) return held(lockPath, me, socket);
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
  } catch (e) {
    socket?.close();
    throw e;
  }
}

/** Linux only (abstract Unix sockets live in the network namespace); undefined elsewhere. */
function networkNamespace(): string | undefined {
  if (process.platform !== 'linux') return undefined;
  try {
    return readlinkSync('/proc/self/ns/net');
  } catch {
    return undefined;
  }
}

/** The abstract socket name of a lock file: the same file reached through any path (symlinks) gives the same name. */
export function lockSocketName(lockPath: string): string {
  const real = join(realpathSync(dirname(resolve(lockPath))), basename(lockPath));
  return `\0sev-keybroker/data-dir-lock/${createHash('sha256').update(real).digest('hex').slice(0, 40)}`;
}

function listenOnLockSocket(lockPath: string): Promise<Server | 'in use'> {
  let name: string;
  try {
    name = lockSocketName(lockPath);
  } catch (e) {
    throw new StoreError('ERR_STORE_CONNECT', `cannot resolve the data directory of ${lockPath}: ${(e as Error).message}`, { cause: e });
  }
  return new Promise((done, fail) => {
    // A process that connects (a diagnostic tool) learns the holder is alive; nothing is said on the socket.
    const server = createServer((conn) => conn.destroy());
    server.once('error', (e: NodeJS.ErrnoException) => {
      if (e.code === 'EADDRINUSE') done('in use');
      else fail(new StoreError('ERR_STORE_CONNECT', `cannot take the data directory's lock socket: ${e.message}`, { cause: e }));
    });
    server.listen({ path: name, exclusive: true }, () => {
      server.unref(); // the lock must not keep the process alive
      done(server);
    });
  });
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

function safeReadHolder(lockPath: string): Holder | undefined {
  try {
    return readHolder(lockPath);
  } catch {
    return undefined;
  }
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
    if (Number.isSafeInteger(h.pid) && typeof h.host === 'string') {
      return { pid: h.pid!, host: h.host, since: String(h.since), ...(typeof h.netns === 'string' ? { netns: h.netns } : {}) };
    }
  } catch {
    // fall through: a torn or foreign file
  }
  // Written by a process that died between create and write, or not ours at all: refuse rather than guess.
  throw new StoreError('ERR_STORE_LOCKED', `the lock file ${lockPath} is not readable as a broker lock; remove it if no broker uses this data directory`);
}

function isStale(holder: Holder, me: Holder): boolean {
  if (holder.host !== me.host) return false;
  // We hold the socket name, so a holder that held it in this namespace has exited (the kernel closed its socket).
  if (me.netns !== undefined && holder.netns === me.netns) return true;
  if (holder.pid === me.pid) return true; // not held here (checked first), so left by an earlier process with our pid
  return !pidRunning(holder.pid);
}

/** kill(pid, 0) finds zombies too; on Linux /proc says whether the process is one (state Z) or is being reaped (X). */
function pidRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (e) {
    return (e as NodeJS.ErrnoException).code !== 'ESRCH';
  }
  if (process.platform !== 'linux') return true;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    return state !== 'Z' && state !== 'X';
  } catch {
    return false; // gone between the two looks
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

function held(lockPath: string, me: Holder, socket: Server | undefined): DataDirLock {
  let released = false;
  heldHere.add(resolve(lockPath));
  return {
    path: lockPath,
    release() {
      if (released) return;
      released = true;
      heldHere.delete(resolve(lockPath));
      removeIfSame(lockPath, me);
      socket?.close();
    },
  };
}
