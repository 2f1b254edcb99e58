import { createHash } from 'node:crypto';
import { chmodSync, closeSync, existsSync, mkdirSync, openSync, readFileSync, readSync, statSync, writeFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { isGuid, isSevError } from '@kb/sev';
import { CliError, type Io } from '../cli';

/**
 * Helpers shared by the guest-owner commands (measure, measurement build, validate, session, secret build, policy
 * from-configs). None of them needs a broker: they read files, compute with @kb/sev and write files.
 */

export type Values = Record<string, string | boolean | string[] | boolean[] | undefined>;

export const str = (v: Values, k: string): string | undefined => v[k] as string | undefined;
export const list = (v: Values, k: string): string[] => (v[k] as string[] | undefined) ?? [];
export const flag = (v: Values, k: string): boolean => v[k] === true;

export function resolvePath(io: Io, path: string): string {
  return resolve(io.cwd, path);
}

/** The bytes of FILE (relative to io.cwd; '-' is standard input). Failures exit with `code` (1 unless told). */
export function readInput(io: Io, path: string, what: string, code = 1): Buffer {
  try {
    if (path === '-') return io.stdin ? io.stdin() : readFileSync(0);
    return readFileSync(resolvePath(io, path));
  } catch (e) {
    throw new CliError(`cannot read ${what} from ${path}: ${(e as NodeJS.ErrnoException).code ?? String(e)}`, code);
  }
}

export function writeOutput(io: Io, path: string, data: Uint8Array | string, what: string, mode?: number, code = 1): void {
  const full = resolvePath(io, path);
  try {
    writeFileSync(full, data, mode === undefined ? undefined : { mode });
    if (mode !== undefined) chmodSync(full, mode); // an existing file keeps its mode otherwise
  } catch (e) {
    throw new CliError(`cannot write ${what} to ${path}: ${(e as NodeJS.ErrnoException).code ?? String(e)}`, code);
  }
}

export function ensureDir(io: Io, path: string, what: string): string {
  const full = resolvePath(io, path);
  try {
    mkdirSync(full, { recursive: true });
  } catch (e) {
    throw new CliError(`cannot create ${what} ${path}: ${(e as NodeJS.ErrnoException).code ?? String(e)}`);
  }
  return full;
}

export function parentExists(io: Io, path: string): boolean {
  return existsSync(dirname(resolvePath(io, path)));
}

/**
 * An unsigned integer written in decimal or with a 0x prefix (sevctl's "int or hex"; libvirt and sev-snp-measure
 * accept decimal for most flags). Out of range or malformed is a usage error.
 */
export function parseUint(value: string, what: string, max: number, code = 2): number {
  const s = value.trim();
  let n: number;
  if (/^0x[0-9a-f]+$/i.test(s)) n = parseInt(s.slice(2), 16);
  else if (/^[0-9]+$/.test(s)) n = parseInt(s, 10);
  else throw new CliError(`${what} must be a decimal or 0x-prefixed hex integer, got ${JSON.stringify(value)}`, code);
  if (!Number.isSafeInteger(n) || n > max) throw new CliError(`${what} must be at most ${max} (0x${max.toString(16)}), got ${value}`, code);
  return n;
}

export function optUint(v: Values, k: string, max: number, code = 2): number | undefined {
  const s = str(v, k);
  return s === undefined ? undefined : parseUint(s, `--${k}`, max, code);
}

const BASE64_RE = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/** Standard padded base64, surrounding whitespace ignored (files written by other tools often end with a newline). */
export function decodeBase64(value: string, what: string, code = 2): Buffer {
  const s = value.replace(/\s+/g, '');
  if (!BASE64_RE.test(s)) throw new CliError(`${what} is not valid base64`, code);
  return Buffer.from(s, 'base64');
}

/**
 * sevctl's "path or base64" arguments (--tik, --tek, --nonce, --launch-measure-blob): an existing file is read,
 * anything else must be base64.
 */
export function base64OrPath(io: Io, value: string, what: string): Buffer {
  const full = resolvePath(io, value);
  let isFile = false;
  try {
    isFile = statSync(full).isFile();
  } catch {
    isFile = false;
  }
  if (isFile) return readInput(io, value, what);
  return decodeBase64(value, `${what} (${JSON.stringify(value)} is neither an existing file nor base64)`);
}

export function expectBytes(b: Buffer, n: number, what: string, code = 2): Buffer {
  if (b.length !== n) throw new CliError(`${what} must be ${n} bytes, got ${b.length}`, code);
  return b;
}

/** libvirt's secret aliases (virt-qemu-sev-validate `SecretsTable.GUID_ALIASES`). */
export const SECRET_GUID_ALIASES: Readonly<Record<string, string>> = Object.freeze({
  'luks-key': '736869e5-84f0-4973-92ec-06879ce3da0b',
});

export function secretGuid(aliasOrGuid: string, code = 2): string {
  if (isGuid(aliasOrGuid)) return aliasOrGuid.toLowerCase();
  const alias = Object.prototype.hasOwnProperty.call(SECRET_GUID_ALIASES, aliasOrGuid) ? SECRET_GUID_ALIASES[aliasOrGuid] : undefined;
  if (alias === undefined) {
    throw new CliError(`secret '${aliasOrGuid}' is neither a GUID nor a known alias (${Object.keys(SECRET_GUID_ALIASES).join(', ')})`, code);
  }
  return alias;
}

/**
 * A SevError from @kb/sev as a CliError: argument and range problems are usage errors (exit `usage`), everything
 * else exits `other`. Anything that is not a SevError is rethrown untouched.
 */
export function sevToCli(e: unknown, other = 1, usage = 2): never {
  if (isSevError(e)) {
    const code = e.code === 'ERR_SEV_ARGUMENT' || e.code === 'ERR_SEV_RANGE' || e.code === 'ERR_SEV_POLICY' ? usage : other;
    throw new CliError(e.message, code);
  }
  throw e;
}

export function withSev<T>(f: () => T, other = 1, usage = 2): T {
  try {
    return f();
  } catch (e) {
    return sevToCli(e, other, usage);
  }
}

export const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');

/** A guest policy as the firmware sees it (u32), for messages. */
export const hex32 = (n: number): string => `0x${(n >>> 0).toString(16)}`;

/** SHA-256 of a file read in 1 MiB chunks (kernels and initrds can be large); `onBytes` sees the running total. */
export function sha256File(io: Io, path: string, what: string, onBytes?: (done: number) => void, code = 1): { sha256: Buffer; size: number } {
  let fd: number;
  try {
    fd = path === '-' ? -1 : openSync(resolvePath(io, path), 'r');
  } catch (e) {
    throw new CliError(`cannot read ${what} from ${path}: ${(e as NodeJS.ErrnoException).code ?? String(e)}`, code);
  }
  if (fd === -1) {
    const data = readInput(io, path, what, code);
    onBytes?.(data.length);
    return { sha256: createHash('sha256').update(data).digest(), size: data.length };
  }
  const hash = createHash('sha256');
  const buf = Buffer.alloc(1 << 20);
  let size = 0;
  try {
    for (;;) {
      const n = readSync(fd, buf, 0, buf.length, null);
      if (n === 0) break;
      hash.update(buf.subarray(0, n));
      size += n;
      onBytes?.(size);
    }
  } catch (e) {
    throw new CliError(`cannot read ${what} from ${path}: ${(e as NodeJS.ErrnoException).code ?? String(e)}`, code);
  } finally {
    closeSync(fd);
  }
  return { sha256: hash.digest(), size };
}

export function fileSize(io: Io, path: string): number {
  try {
    return path === '-' ? 0 : statSync(resolvePath(io, path)).size;
  } catch {
    return 0;
  }
}
