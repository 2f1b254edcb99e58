import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { runCli, type Io } from '../../../src/cli';
import { tree } from '../../../src/main';

/** ../shared sits beside the repository (CI clones it there). */
export const VECTORS = resolve(__dirname, '../../../../../../shared/vectors');
export const MEASURE = join(VECTORS, 'measure');
export const SEV = join(VECTORS, 'sev');
export const AMDSEV = join(MEASURE, 'sev-snp-measure/fixtures/ovmf_AmdSev_suffix.bin');
export const OVMFX64 = join(MEASURE, 'sev-snp-measure/fixtures/ovmf_OvmfX64_suffix.bin');
export const SEVCTL = join(SEV, 'sevctl');
export const SEVCTL_OVMF = join(SEVCTL, 'OVMF.amdsev.fd_trimmed_edk2-ovmf-20220126gitbb1bba3d77-4.el9');

export interface Result {
  code: number;
  out: string;
  err: string;
}

/** Runs `kbctl ARGV` in-process, as the real entry point does but with captured output. */
export async function kbctl(argv: string[], io: Partial<Io> = {}): Promise<Result> {
  const out: string[] = [];
  const err: string[] = [];
  const code = await runCli('kbctl', 'kbctl — test', tree, argv, {
    out: (s) => out.push(s),
    err: (s) => err.push(s),
    env: {},
    cwd: process.cwd(),
    stdin: () => {
      throw new Error('this test has no stdin');
    },
    ...io,
  });
  return { code, out: out.join('\n'), err: err.join('\n') };
}

export function tempDir(prefix: string): { dir: string; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), `kbctl-${prefix}-`));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

export const read = (p: string): Buffer => readFileSync(p);
export const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');
