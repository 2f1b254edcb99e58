import { PolicyError } from './errors';
import { jsonType, show } from './describe';
import {
  SEV_POLICY_BITS,
  SEV_POLICY_BIT_NAMES,
  SEV_POLICY_FLAGS_MASK,
  SEV_POLICY_RESERVED_MASK,
  hex32,
  isSevPolicyBitName,
  maskOf,
  namesOf,
  type SevPolicyBitName,
} from './guest-policy';
import { normaliseDigest } from './launch-digest';
import { POLICY_FIELDS, POLICY_VERSION, type AllowList, type Policy } from './policy';
import { normaliseTimestamp } from './timestamp';
import { parseSnpPolicy } from './snp';

const U8_MAX = 0xff;
const U32_MAX = 0xffff_ffff;
const CHIP_ID_MAX = 256;
const CHIP_ID_RE = /^[\x21-\x7e]+$/;

type Draft = { -readonly [K in keyof Policy]: Policy[K] };

/**
 * Validates an untrusted JSON value (an admin API body, a stored row) and returns the normalised Policy, or throws a
 * PolicyError naming the first offending field. Validation happens at write time so that a malformed document can
 * never be stored and later crash or silently widen evaluation (simple-kbs#55).
 */
export function parsePolicy(json: unknown): Policy {
  if (!isPlainObject(json)) {
    throw new PolicyError('ERR_POLICY_TYPE', `a policy must be a JSON object, got ${jsonType(json)}`);
  }
  for (const key of Object.keys(json)) {
    if (!(POLICY_FIELDS as readonly string[]).includes(key)) {
      const hint = suggestField(key);
      throw new PolicyError(
        'ERR_POLICY_UNKNOWN_FIELD',
        `unknown field ${show(key)}${hint ? ` (did you mean ${hint}?)` : ''}; version ${POLICY_VERSION} fields are ${POLICY_FIELDS.join(', ')}`,
        key,
      );
    }
  }
  const has = (k: string): boolean => Object.prototype.hasOwnProperty.call(json, k);

  if (!has('version')) {
    throw new PolicyError('ERR_POLICY_MISSING_FIELD', `version is required (the current version is ${POLICY_VERSION})`, 'version');
  }
  if (json.version !== POLICY_VERSION) {
    const code = typeof json.version === 'number' ? 'ERR_POLICY_VERSION' : 'ERR_POLICY_TYPE';
    throw new PolicyError(code, `version must be ${POLICY_VERSION}, got ${show(json.version)}`, 'version');
  }
  if (!has('allowedDigests') && !has('snp')) {
    throw new PolicyError(
      'ERR_POLICY_MISSING_FIELD',
      'allowedDigests is required: list the launch digests this policy accepts, or write "any" to accept every digest explicitly',
      'allowedDigests',
    );
  }

  const out: Draft = { version: POLICY_VERSION };
  if (has('allowedDigests')) out.allowedDigests = allowList(json.allowedDigests, 'allowedDigests', normaliseDigest);
  if (has('allowedPolicies')) out.allowedPolicies = allowList(json.allowedPolicies, 'allowedPolicies', sevPolicyValue);
  if (has('requiredPolicyBits')) out.requiredPolicyBits = policyBits(json.requiredPolicyBits, 'requiredPolicyBits', 'required');
  if (has('forbiddenPolicyBits')) out.forbiddenPolicyBits = policyBits(json.forbiddenPolicyBits, 'forbiddenPolicyBits', 'forbidden');
  if (has('allowDebug')) out.allowDebug = boolean(json.allowDebug, 'allowDebug');
  if (has('minFwApiMajor')) out.minFwApiMajor = integer(json.minFwApiMajor, 'minFwApiMajor', U8_MAX);
  if (has('minFwApiMinor')) out.minFwApiMinor = integer(json.minFwApiMinor, 'minFwApiMinor', U8_MAX);
  if (has('allowedBuildIds')) {
    out.allowedBuildIds = allowList(json.allowedBuildIds, 'allowedBuildIds', (v, f) => integer(v, f, U8_MAX));
  }
  if (has('allowedChips')) out.allowedChips = allowList(json.allowedChips, 'allowedChips', chipId);
  if (has('maxReleases')) out.maxReleases = integer(json.maxReleases, 'maxReleases', Number.MAX_SAFE_INTEGER);
  if (has('notBefore')) out.notBefore = normaliseTimestamp(json.notBefore, 'notBefore');
  if (has('notAfter')) out.notAfter = normaliseTimestamp(json.notAfter, 'notAfter');
  if (has('simpleKbsCompat')) out.simpleKbsCompat = boolean(json.simpleKbsCompat, 'simpleKbsCompat');
  if (has('snp')) out.snp = parseSnpPolicy(json.snp);

  checkConsistency(out);
  return deepFreeze(out);
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return false;
  const proto: unknown = Object.getPrototypeOf(v);
  return proto === Object.prototype || proto === null;
}

function allowList<T>(v: unknown, field: string, item: (v: unknown, field: string) => T): AllowList<T> {
  if (v === 'any') return 'any';
  if (typeof v === 'string') {
    throw new PolicyError('ERR_POLICY_FORMAT', `${field} must be a non-empty list or the string "any", got ${show(v)}`, field);
  }
  if (!Array.isArray(v)) {
    throw new PolicyError('ERR_POLICY_TYPE', `${field} must be a non-empty list or the string "any", got ${jsonType(v)}`, field);
  }
  if (v.length === 0) {
    throw new PolicyError(
      'ERR_POLICY_EMPTY',
      `${field} is an empty list: simple-kbs read [] as "allow all", this broker does not; write "any" to allow every value, or list the allowed values`,
      field,
    );
  }
  // Duplicates (often the same digest pasted once as hex and once as base64) are harmless: keep the first.
  return [...new Set(v.map((x, i) => item(x, `${field}[${i}]`)))];
}

function integer(v: unknown, field: string, max: number): number {
  if (typeof v !== 'number') throw new PolicyError('ERR_POLICY_TYPE', `${field} must be a number, got ${jsonType(v)}`, field);
  if (!Number.isInteger(v) || v < 0 || v > max) {
    throw new PolicyError('ERR_POLICY_RANGE', `${field} must be an integer in 0..${max}, got ${show(v)}`, field);
  }
  return v;
}

function boolean(v: unknown, field: string): boolean {
  if (typeof v !== 'boolean') throw new PolicyError('ERR_POLICY_TYPE', `${field} must be true or false, got ${jsonType(v)}`, field);
  return v;
}

function sevPolicyValue(v: unknown, field: string): number {
  const p = integer(v, field, U32_MAX);
  const reserved = p & SEV_POLICY_RESERVED_MASK;
  if (reserved !== 0) {
    throw new PolicyError(
      'ERR_POLICY_RANGE',
      `${field} ${hex32(p)} sets reserved bits ${hex32(reserved)} (bits 6..15 must be zero; the firmware refuses such a guest policy)`,
      field,
    );
  }
  return p;
}

function policyBits(v: unknown, field: string, verb: 'required' | 'forbidden'): SevPolicyBitName[] {
  if (!Array.isArray(v)) {
    throw new PolicyError('ERR_POLICY_TYPE', `${field} must be a list of bit names or numbers, got ${jsonType(v)}`, field);
  }
  if (v.length === 0) {
    throw new PolicyError('ERR_POLICY_EMPTY', `${field} is an empty list; omit the field when no bit is ${verb}`, field);
  }
  let mask = 0;
  v.forEach((x, i) => {
    const f = `${field}[${i}]`;
    if (typeof x === 'string') {
      if (!isSevPolicyBitName(x)) {
        const upper = x.toUpperCase();
        const hint = isSevPolicyBitName(upper) ? ` (did you mean ${upper}?)` : '';
        throw new PolicyError('ERR_POLICY_FORMAT', `${f} ${show(x)} is not a SEV policy bit name${hint}; names are ${SEV_POLICY_BIT_NAMES.join(', ')}`, f);
      }
      mask |= SEV_POLICY_BITS[x];
    } else if (typeof x === 'number') {
      if (!Number.isInteger(x) || x < 1 || x > SEV_POLICY_FLAGS_MASK) {
        throw new PolicyError(
          'ERR_POLICY_RANGE',
          `${f} ${show(x)} is not a mask of SEV policy flag bits (an integer in 1..${hex32(SEV_POLICY_FLAGS_MASK)}, e.g. 0x1 = NODBG, 0x4 = ES)`,
          f,
        );
      }
      mask |= x;
    } else {
      throw new PolicyError('ERR_POLICY_TYPE', `${f} must be a bit name or a number, got ${jsonType(x)}`, f);
    }
  });
  return namesOf(mask);
}

function chipId(v: unknown, field: string): string {
  if (typeof v !== 'string') throw new PolicyError('ERR_POLICY_TYPE', `${field} must be a string, got ${jsonType(v)}`, field);
  if (v.length > CHIP_ID_MAX || !CHIP_ID_RE.test(v)) {
    throw new PolicyError(
      'ERR_POLICY_FORMAT',
      `${field} ${show(v)} is not a chip identity: expected 1..${CHIP_ID_MAX} printable ASCII characters without spaces (e.g. the hex CEK key hash)`,
      field,
    );
  }
  return v;
}

/** Whether a SEV guest policy value passes the document's bit rules (required, forbidden, the NODBG default). */
function passesBitRules(sevPolicy: number, p: Policy): boolean {
  const required = maskOf(p.requiredPolicyBits ?? []) | (p.allowDebug === true ? 0 : SEV_POLICY_BITS.NODBG);
  const forbidden = maskOf(p.forbiddenPolicyBits ?? []);
  return (sevPolicy & required) === required && (sevPolicy & forbidden) === 0;
}

/** Rejects documents no launch could ever satisfy: they are always a mistake, and one that fails silently. */
function checkConsistency(p: Draft): void {
  const overlap = namesOf(maskOf(p.requiredPolicyBits ?? []) & maskOf(p.forbiddenPolicyBits ?? []));
  if (overlap.length > 0) {
    throw new PolicyError('ERR_POLICY_CONFLICT', `forbiddenPolicyBits forbids ${overlap.join(', ')}, which requiredPolicyBits requires`, 'forbiddenPolicyBits');
  }
  if (p.forbiddenPolicyBits?.includes('NODBG') && p.allowDebug !== true) {
    throw new PolicyError(
      'ERR_POLICY_CONFLICT',
      'forbiddenPolicyBits forbids NODBG, but debuggable guests are refused unless allowDebug is true',
      'forbiddenPolicyBits',
    );
  }
  if (Array.isArray(p.allowedPolicies) && !p.allowedPolicies.some((sp) => passesBitRules(sp, p))) {
    throw new PolicyError(
      'ERR_POLICY_CONFLICT',
      `no entry of allowedPolicies passes the bit rules (required: ${requiredText(p)}; forbidden: ${
        p.forbiddenPolicyBits?.join(', ') ?? 'none'
      }), so every launch would be refused`,
      'allowedPolicies',
    );
  }
  if (p.minFwApiMinor !== undefined && p.minFwApiMajor === undefined) {
    throw new PolicyError('ERR_POLICY_MISSING_FIELD', 'minFwApiMinor needs minFwApiMajor: the minimum firmware is the version (major, minor)', 'minFwApiMajor');
  }
  if (p.notBefore !== undefined && p.notAfter !== undefined && p.notBefore > p.notAfter) {
    throw new PolicyError('ERR_POLICY_CONFLICT', `notBefore ${p.notBefore} is after notAfter ${p.notAfter}`, 'notAfter');
  }
}

function requiredText(p: Policy): string {
  const names = namesOf(maskOf(p.requiredPolicyBits ?? []) | (p.allowDebug === true ? 0 : SEV_POLICY_BITS.NODBG));
  const debug = p.allowDebug === true ? '' : ' (NODBG because allowDebug is not true)';
  return names.length > 0 ? `${names.join(', ')}${debug}` : 'none';
}

function deepFreeze<T extends object>(o: T): T {
  for (const v of Object.values(o)) if (Array.isArray(v)) Object.freeze(v);
  return Object.freeze(o);
}

/** The intended field for a near-miss key: case, `_`/`-` (simple-kbs column names) or up to two typos away. */
function suggestField(key: string): string | undefined {
  const squash = (s: string): string => s.toLowerCase().replace(/[_-]/g, '');
  const k = squash(key);
  return POLICY_FIELDS.find((f) => squash(f) === k) ?? POLICY_FIELDS.find((f) => editDistance(squash(f), k) <= 2);
}

function editDistance(a: string, b: string): number {
  if (Math.abs(a.length - b.length) > 2) return 3;
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) {
      cur[j] = Math.min(prev[j]! + 1, cur[j - 1]! + 1, prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    prev = cur;
  }
  return prev[b.length]!;
}
