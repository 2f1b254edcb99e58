import * as fs from 'node:fs';
import * as path from 'node:path';
import { SevError } from '../../src/errors';

/** CI clones the repository with ../shared beside it. */
export const SEV_VECTORS = path.resolve(__dirname, '../../../../../shared/vectors/sev');

export function readVectorJson<T = any>(name: string): T {
  return JSON.parse(fs.readFileSync(path.join(SEV_VECTORS, name), 'utf8')) as T;
}

/** sevctl vectors name their inputs by upstream path; the files were copied under sevctl/. */
export function readSevctlFile(upstreamPath: string): Buffer {
  const rel = upstreamPath.replace(/^virtee-sevctl\/tests\/data\//, '');
  return fs.readFileSync(path.join(SEV_VECTORS, 'sevctl', rel));
}

export function readVectorFile(rel: string): Buffer {
  return fs.readFileSync(path.join(SEV_VECTORS, rel));
}

export const hex = (s: string): Buffer => Buffer.from(s, 'hex');
export const b64 = (s: string): Buffer => Buffer.from(s, 'base64');

/** Runs fn and returns the SevError code it threw; fails the test if it threw anything else or nothing. */
export function sevErrorCode(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    if (e instanceof SevError) return e.code;
    throw e;
  }
  throw new Error('expected a SevError, nothing was thrown');
}
