import { PolicyError } from './errors';
import { jsonType, show } from './describe';
import { normaliseDigest } from './launch-digest';
import { parsePolicy } from './parse-policy';
import { POLICY_VERSION, type Policy } from './policy';

/**
 * A row of simple-kbs's `policy` table (db/db-*.sql). The list columns are JSON text (as SQLite and most drivers
 * return them) or an already-decoded array; the integer columns may come back as numbers or decimal strings.
 * Other columns (create_date, valid, …) are ignored.
 */
export interface SimpleKbsPolicyRow {
  readonly allowed_digests: string | readonly unknown[];
  readonly allowed_policies: string | readonly unknown[];
  readonly min_fw_api_major: number | string;
  readonly min_fw_api_minor: number | string;
  readonly allowed_build_ids: string | readonly unknown[];
}

const SIMPLE_KBS_DIGEST_RE = /^[A-Za-z0-9+/]{43}=$/;

/**
 * Converts a simple-kbs policy row into an explicit Policy with the same meaning: an empty list becomes "any" (its
 * allow-all semantics, now visible), debugging stays allowed (simple-kbs never looked at NODBG), and the firmware
 * minimum carries over as is: both compare (major, minor) in version order (policy.rs). Values that only the u32→u8
 * truncation could ever satisfy (kbs-compat §1.8 #2) or entries that could never match are rejected, not carried
 * over: the owner must fix the row rather than have a migration silently change what it admits.
 */
export function fromSimpleKbsPolicy(row: SimpleKbsPolicyRow): Policy {
  if (typeof row !== 'object' || row === null) {
    throw new PolicyError('ERR_POLICY_TYPE', `a simple-kbs policy row must be an object, got ${jsonType(row)}`);
  }
  const digests = jsonArray(row.allowed_digests, 'allowed_digests').map((d, i) => simpleKbsDigest(d, `allowed_digests[${i}]`));
  const policies = jsonArray(row.allowed_policies, 'allowed_policies').map((v, i) => u32(v, `allowed_policies[${i}]`));
  const buildIds = jsonArray(row.allowed_build_ids, 'allowed_build_ids').map((v, i) =>
    firmwareByte(v, `allowed_build_ids[${i}]`, 'never matched an honest launch'),
  );
  const minimum = (column: 'min_fw_api_major' | 'min_fw_api_minor'): number =>
    firmwareByte(integerColumn(row[column], column), column, 'admitted only forged versions');
  const [minMajor, minMinor] = [minimum('min_fw_api_major'), minimum('min_fw_api_minor')];

  const doc: Record<string, unknown> = {
    version: POLICY_VERSION,
    allowDebug: true,
    allowedDigests: digests.length > 0 ? digests : 'any',
    allowedPolicies: policies.length > 0 ? policies : 'any',
    allowedBuildIds: buildIds.length > 0 ? buildIds : 'any',
  };
  if (minMajor !== 0 || minMinor !== 0) {
    doc.minFwApiMajor = minMajor;
    doc.minFwApiMinor = minMinor;
  }
  try {
    return parsePolicy(doc);
  } catch (e) {
    if (e instanceof PolicyError) {
      throw new PolicyError(e.code, `the simple-kbs row converts to an invalid policy: ${e.message}`, e.field);
    }
    throw e;
  }
}

function jsonArray(v: unknown, column: string): unknown[] {
  let value = v;
  if (typeof v === 'string') {
    try {
      value = JSON.parse(v);
    } catch (e) {
      throw new PolicyError('ERR_POLICY_FORMAT', `${column} is not valid JSON: ${(e as Error).message}`, column);
    }
  }
  if (!Array.isArray(value)) {
    throw new PolicyError('ERR_POLICY_TYPE', `${column} must be a JSON array, got ${jsonType(value)}`, column);
  }
  return value;
}

/** simple-kbs compares the stored string with the request's base64 FwDigest, so only canonical base64 ever matched. */
function simpleKbsDigest(v: unknown, field: string): string {
  if (typeof v !== 'string' || !SIMPLE_KBS_DIGEST_RE.test(v)) {
    throw new PolicyError(
      'ERR_POLICY_FORMAT',
      `${field} ${show(v)} is not base64 of a 32-byte digest; simple-kbs compared it as a string with the base64 FwDigest, so it never matched a launch: remove or fix it`,
      field,
    );
  }
  return normaliseDigest(v, field);
}

function integerColumn(v: unknown, column: string): number {
  const n = typeof v === 'string' && /^\d{1,10}$/.test(v) ? Number(v) : v;
  if (typeof n !== 'number') {
    throw new PolicyError('ERR_POLICY_TYPE', `${column} must be an integer (a number or decimal digits), got ${show(v)}`, column);
  }
  return n;
}

function u32(v: unknown, field: string): number {
  if (typeof v !== 'number') throw new PolicyError('ERR_POLICY_TYPE', `${field} must be a number, got ${show(v)}`, field);
  if (!Number.isInteger(v) || v < 0 || v > 0xffff_ffff) {
    throw new PolicyError('ERR_POLICY_RANGE', `${field} must be a u32, got ${show(v)}`, field);
  }
  return v;
}

function firmwareByte(v: unknown, field: string, consequence: string): number {
  if (typeof v !== 'number') throw new PolicyError('ERR_POLICY_TYPE', `${field} must be a number, got ${show(v)}`, field);
  if (!Number.isInteger(v) || v < 0) {
    throw new PolicyError('ERR_POLICY_RANGE', `${field} must be a non-negative integer, got ${show(v)}`, field);
  }
  if (v > 0xff) {
    throw new PolicyError(
      'ERR_POLICY_RANGE',
      `${field} ${v} is above 255: the firmware reports one byte, so in simple-kbs this value ${consequence} (u32 to u8 truncation); fix the row`,
      field,
    );
  }
  return v;
}
