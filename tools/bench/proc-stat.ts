/**
 * CPU time of processes and of the whole machine, from Linux's /proc: what the broker benchmark charges to the broker
 * process, to the null broker, to itself and to everything else (PostgreSQL) over its measured windows.
 */
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';

let clockTicks: number | undefined;
/** USER_HZ, the unit of utime/stime in /proc/<pid>/stat. */
export function ticksPerSecond(): number {
  if (clockTicks === undefined) {
    try {
      clockTicks = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
    } catch {
      clockTicks = 100;
    }
  }
  return clockTicks;
}

/** ppid and utime+stime (clock ticks) from /proc/<pid>/stat; undefined once the process is gone (or without /proc). */
export function procStat(pid: number): { ppid: number; ticks: number } | undefined {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  // "pid (comm) state ppid … utime stime …": comm may hold spaces and parentheses, so split after the last ')'.
  const f = text.slice(text.lastIndexOf(')') + 2).split(' ');
  return { ppid: Number(f[1]), ticks: Number(f[11]) + Number(f[12]) };
}

/** CPU time the whole machine spent busy (user, nice, system, irq, softirq; all CPUs), ms; undefined without /proc. */
export function machineBusyMs(): number | undefined {
  try {
    const f = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0]!.trim().split(/\s+/).slice(1).map(Number);
    return ((f[0]! + f[1]! + f[2]! + f[5]! + f[6]!) * 1000) / ticksPerSecond();
  } catch {
    return undefined;
  }
}

/** `root` and all its descendants, from a scan of /proc. */
export function processTree(root: number): number[] {
  const children = new Map<number, number[]>();
  let entries: string[];
  try {
    entries = readdirSync('/proc');
  } catch {
    return [root];
  }
  for (const e of entries) {
    if (!/^\d+$/.test(e)) continue;
    const st = procStat(Number(e));
    if (!st) continue;
    const list = children.get(st.ppid) ?? [];
    list.push(Number(e));
    children.set(st.ppid, list);
  }
  const out = [root];
  for (let i = 0; i < out.length; i++) out.push(...(children.get(out[i]!) ?? []));
  return out;
}

/** utime+stime of `pids` together, ms; undefined when none of them can be read (all gone, or no /proc). */
export function cpuMsOf(pids: readonly number[]): number | undefined {
  let ticks = 0;
  let seen = false;
  for (const pid of pids) {
    const st = procStat(pid);
    if (st) ((ticks += st.ticks), (seen = true));
  }
  return seen ? (ticks * 1000) / ticksPerSecond() : undefined;
}
