import { isGuid } from '@kb/sev';
import type { keybroker } from '@kb/grpc-api';
import { invalid } from '../errors';

/**
 * Field checks for host-supplied input. They run before anything is read or written, so a malformed request changes
 * nothing (in particular it does not consume its launch id); their messages describe the expected format only.
 */

const B64 = /^[A-Za-z0-9+/]*={0,2}$/;

export function base64Field(name: string, value: string, size: { exact?: number; max: number }): Buffer {
  if (typeof value !== 'string' || value.length === 0) throw invalid(`${name} is required`);
  if (value.length > Math.ceil(size.max / 3) * 4 + 4) throw invalid(`${name} is too long`);
  const v = value.trim();
  if (v.length % 4 !== 0 || !B64.test(v)) throw invalid(`${name} is not valid base64`);
  const bytes = Buffer.from(v, 'base64');
  if (size.exact !== undefined && bytes.length !== size.exact) throw invalid(`${name} must decode to ${size.exact} bytes, got ${bytes.length}`);
  if (bytes.length > size.max) throw invalid(`${name} must decode to at most ${size.max} bytes`);
  return bytes;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export function uuidField(name: string, value: string): string {
  if (typeof value !== 'string' || !UUID.test(value)) throw invalid(`${name} must be a UUID`);
  return value.toLowerCase();
}

/** The firmware reports these as single bytes; a larger value can only be a forgery (simple-kbs truncated them). */
export function byteField(name: string, value: number): number {
  if (!Number.isInteger(value) || value < 0 || value > 0xff) throw invalid(`${name} must be 0..255, got ${value}`);
  return value;
}

export const SECRET_TYPES = ['key', 'bundle', 'report', 'connection', 'resource'] as const;
export type SecretType = (typeof SECRET_TYPES)[number];
export type SecretFormat = 'binary' | 'json';

export interface SecretRequestItem {
  guid: string;
  type: SecretType;
  format: SecretFormat;
  id: string;
}

const ID_RE = /^[\x21-\x7e]{1,256}$/;
const NIL_GUID = '00000000-0000-0000-0000-000000000000';

/**
 * simple-kbs matched `SecretType` and `Format` case-sensitively; the kata shim sends "JSON", so both are compared
 * case-insensitively here. Format matters only for `key` and `resource` (the others have one format).
 */
export function secretRequests(list: keybroker.RequestDetails[], max: number, allowed: readonly SecretType[]): SecretRequestItem[] {
  // An empty list is valid: simple-kbs answers it with an empty secret table (clients that attest first, ask later).
  if (!Array.isArray(list)) throw invalid('SecretRequests must be a list');
  if (list.length > max) throw invalid(`SecretRequests may name at most ${max} secrets`);
  const seen = new Set<string>();
  return list.map((r, i) => {
    const where = `SecretRequests[${i}]`;
    if (!isGuid(r.Guid ?? '')) throw invalid(`${where}.Guid must be a GUID`);
    const guid = r.Guid.toLowerCase();
    // efi_secret treats the nil GUID as a deleted entry, so the secret table refuses it
    if (guid === NIL_GUID) throw invalid(`${where}.Guid must not be the nil GUID`);
    if (seen.has(guid)) throw invalid(`${where}.Guid repeats an earlier entry`);
    seen.add(guid);
    const type = (r.SecretType ?? '').toLowerCase() as SecretType;
    if (!SECRET_TYPES.includes(type)) throw invalid(`${where}.SecretType must be one of ${SECRET_TYPES.join(', ')}`);
    if (!allowed.includes(type)) throw invalid(`${where}.SecretType '${type}' is not served by this call`);
    const fmt = (r.Format ?? '').toLowerCase();
    let format: SecretFormat = 'binary';
    if (type === 'key' || type === 'resource') {
      if (fmt !== 'binary' && fmt !== 'json') throw invalid(`${where}.Format must be binary or json`);
      format = fmt;
    }
    const id = r.Id ?? '';
    if (type !== 'connection' && !ID_RE.test(id)) throw invalid(`${where}.Id must be 1–256 printable characters`);
    return { guid, type, format, id };
  });
}
