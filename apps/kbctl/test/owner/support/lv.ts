import { execFile, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import type { Result } from './cli';

/**
 * libvirt's virt-qemu-sev-validate as Debian ships it (package libvirt-clients-qemu 9.0.0). It is run with Debian's
 * own /usr/bin/python3 because its `#!/usr/bin/env python3` may find another Python without the bindings.
 */
export const LV = '/usr/bin/virt-qemu-sev-validate';
export const PYTHON = '/usr/bin/python3';
export const CI_PACKAGES = 'libvirt-clients-qemu libvirt-clients python3-libvirt python3-lxml python3-cryptography';

/** Throws (failing the suite, never skipping it) with what to install when the reference tool cannot run. */
export function requireLv(): void {
  if (!existsSync(LV) || !existsSync(PYTHON)) {
    throw new Error(`${LV} is missing: the differential test needs Debian's virt-qemu-sev-validate (apt-get install ${CI_PACKAGES})`);
  }
  const r = spawnSync(PYTHON, ['-c', 'import libvirt, lxml.etree, cryptography.hazmat.primitives.ciphers'], { encoding: 'utf8' });
  if (r.status !== 0) {
    throw new Error(`virt-qemu-sev-validate cannot import its Python modules (${r.stderr.trim().split('\n').pop()}): apt-get install ${CI_PACKAGES}`);
  }
}

export function requireVirsh(): void {
  const r = spawnSync('virsh', ['--version'], { encoding: 'utf8' });
  if (r.error || r.status !== 0) throw new Error('virsh is missing: apt-get install libvirt-clients');
}

export function runLv(args: string[], opts: { cwd: string; env?: NodeJS.ProcessEnv }): Promise<Result> {
  return new Promise((resolve) => {
    execFile(
      PYTHON,
      [LV, ...args],
      { cwd: opts.cwd, env: opts.env ?? { PATH: process.env.PATH, HOME: process.env.HOME }, timeout: 30_000 },
      (error, stdout, stderr) => {
        const code = error ? (typeof (error as { code?: unknown }).code === 'number' ? (error as { code: number }).code : -1) : 0;
        resolve({ code, out: stdout.trimEnd(), err: stderr.trimEnd() });
      },
    );
  });
}

/** Runs `jobs` with at most `n` at a time, keeping their order. */
export async function pool<T>(n: number, jobs: (() => Promise<T>)[]): Promise<T[]> {
  const results: T[] = new Array(jobs.length);
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(n, jobs.length) }, async () => {
      while (next < jobs.length) {
        const i = next++;
        results[i] = await jobs[i]!();
      }
    }),
  );
  return results;
}

/** `[DEBUG]: Label: value` lines, first occurrence of each label (both tools log the same labels). */
export function debugLines(stderr: string): Map<string, string> {
  const m = new Map<string, string>();
  for (const line of stderr.split('\n')) {
    const x = /^\[DEBUG\]: ([^:]+): (.*)$/.exec(line);
    if (x && !m.has(x[1]!)) m.set(x[1]!, x[2]!);
  }
  return m;
}
