/**
 * SEV-SNP rules of a policy document (the `snp` member) and the facts of a verified SNP attestation report they are
 * checked against (../shared/specs/snp-attestation.md §5.2 steps 13, 15–20; kbs-protocol.md §9.5 "things trustee
 * does not check that a broker SHOULD decide on by policy"). Same fail-closed rules as SEV: `allowedMeasurements` is
 * mandatory (a list or "any"), a debuggable or migration-agent guest is refused unless the document allows it, and an
 * SNP launch checked against a document without an `snp` member is refused.
 */
import { PolicyError } from './errors';
import { jsonType, plural, show, showList } from './describe';
import type { AllowList } from './policy';

export const SNP_MEASUREMENT_BYTES = 48;

/** TCB components, Turin adds fmc (snp-attestation.md §1.6). */
export const SNP_TCB_COMPONENTS = ['bootloader', 'tee', 'snp', 'microcode', 'fmc'] as const;
export type SnpTcbComponent = (typeof SNP_TCB_COMPONENTS)[number];

/** Guest policy bits (SEV-SNP ABI, GUEST_POLICY; kbs-protocol.md §9.2). */
export const SNP_POLICY_BITS = { SMT: 16n, MIGRATE_MA: 18n, DEBUG: 19n, SINGLE_SOCKET: 20n } as const;

export interface SnpPolicy {
  /** Accepted MEASUREMENT values (48 bytes, lowercase hex), from `kbctl measure --mode snp` or `kbctl igvm`. */
  readonly allowedMeasurements: AllowList<string>;
  /** Accept guests whose policy allows debugging (bit 19). Absent or false: refuse them. */
  readonly allowDebug?: boolean;
  /** Accept guests that may be bound to a migration agent (bit 18). Absent or false: refuse them. */
  readonly allowMigrationAgent?: boolean;
  /** Refuse guests whose policy allows SMT (bit 16). */
  readonly requireNoSmt?: boolean;
  /** Refuse guests not restricted to a single socket (bit 20). */
  readonly requireSingleSocket?: boolean;
  /** Minimum guest policy ABI (major, minor), compared as a version. */
  readonly minAbiMajor?: number;
  readonly minAbiMinor?: number;
  /** Minimum REPORTED_TCB per component (fmc: Turin only; a non-Turin report then refuses). */
  readonly minTcb?: { readonly [K in SnpTcbComponent]?: number };
  /** Minimum GUEST_SVN. */
  readonly minGuestSvn?: number;
  /** HOST_DATA values (32 bytes, hex). */
  readonly allowedHostData?: AllowList<string>;
  /** ID_KEY_DIGEST / AUTHOR_KEY_DIGEST values (48 bytes, hex). */
  readonly allowedIdKeyDigests?: AllowList<string>;
  readonly allowedAuthorKeyDigests?: AllowList<string>;
  /** FAMILY_ID / IMAGE_ID values (16 bytes, hex). */
  readonly allowedFamilyIds?: AllowList<string>;
  readonly allowedImageIds?: AllowList<string>;
  /** VMPLs the report may come from; default [0] (only the guest's most privileged level). */
  readonly allowedVmpls?: readonly number[];
}

export const SNP_POLICY_FIELDS = [
  'allowedMeasurements',
  'allowDebug',
  'allowMigrationAgent',
  'requireNoSmt',
  'requireSingleSocket',
  'minAbiMajor',
  'minAbiMinor',
  'minTcb',
  'minGuestSvn',
  'allowedHostData',
  'allowedIdKeyDigests',
  'allowedAuthorKeyDigests',
  'allowedFamilyIds',
  'allowedImageIds',
  'allowedVmpls',
] as const satisfies readonly (keyof SnpPolicy)[];

/** What a verified SNP report proves (the broker fills it after verifySnpReport). */
export interface SnpLaunchFacts {
  /** 48 bytes or 96 hex digits */
  readonly measurement: Uint8Array | string;
  /** the u64 guest policy */
  readonly policy: bigint | number;
  readonly reportedTcb: { readonly bootloader: number; readonly tee: number; readonly snp: number; readonly microcode: number; readonly fmc?: number | null };
  readonly guestSvn: number;
  readonly vmpl: number;
  readonly hostData: Uint8Array | string;
  readonly idKeyDigest: Uint8Array | string;
  readonly authorKeyDigest: Uint8Array | string;
  readonly familyId: Uint8Array | string;
  readonly imageId: Uint8Array | string;
}

const HEX = /^[0-9a-fA-F]*$/;
const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

/** hex or standard base64 of exactly `bytes` bytes → lowercase hex. */
function bytesValue(bytes: number, what: string) {
  return (v: unknown, field: string): string => {
    if (typeof v !== 'string') throw new PolicyError('ERR_POLICY_TYPE', `${field} must be a string (hex or base64), got ${jsonType(v)}`, field);
    // a string of hex digits is read as hex, never as base64 (64 hex digits are also valid base64 of 48 bytes: a
    // pasted 32-byte SEV digest must be refused, not read as some other SNP measurement)
    if (HEX.test(v) && v.length === 2 * bytes) return v.toLowerCase();
    if (v !== '' && !(HEX.test(v) && v.length % 2 === 0) && BASE64.test(v) && v.length % 4 === 0) {
      const raw = Buffer.from(v, 'base64');
      if (raw.toString('base64') === v && raw.length === bytes) return raw.toString('hex');
    }
    const n = HEX.test(v) && v.length % 2 === 0 ? ` (${v.length / 2} bytes of hex)` : '';
    throw new PolicyError('ERR_POLICY_LENGTH', `${field} ${show(v)} is not ${bytes} bytes of hex or base64${n}; ${what}`, field);
  };
}

const measurement = bytesValue(SNP_MEASUREMENT_BYTES, 'an SNP MEASUREMENT is 48 bytes (96 hex digits, as `kbctl measure --mode snp` prints it)');
const hostData = bytesValue(32, 'HOST_DATA is 32 bytes');
const keyDigest = bytesValue(48, 'an ID/author key digest is 48 bytes (SHA-384)');
const id16 = bytesValue(16, 'FAMILY_ID and IMAGE_ID are 16 bytes');

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && [Object.prototype, null].includes(Object.getPrototypeOf(v));
}

function integer(v: unknown, field: string, max: number): number {
  if (typeof v !== 'number') throw new PolicyError('ERR_POLICY_TYPE', `${field} must be a number, got ${jsonType(v)}`, field);
  if (!Number.isInteger(v) || v < 0 || v > max) throw new PolicyError('ERR_POLICY_RANGE', `${field} must be an integer in 0..${max}, got ${show(v)}`, field);
  return v;
}

function boolean(v: unknown, field: string): boolean {
  if (typeof v !== 'boolean') throw new PolicyError('ERR_POLICY_TYPE', `${field} must be true or false, got ${jsonType(v)}`, field);
  return v;
}

function allowList<T>(v: unknown, field: string, item: (v: unknown, field: string) => T): AllowList<T> {
  if (v === 'any') return 'any';
  if (!Array.isArray(v))
    throw new PolicyError(
      typeof v === 'string' ? 'ERR_POLICY_FORMAT' : 'ERR_POLICY_TYPE',
      `${field} must be a non-empty list or the string "any", got ${show(v)}`,
      field,
    );
  if (v.length === 0)
    throw new PolicyError('ERR_POLICY_EMPTY', `${field} is an empty list; write "any" to allow every value, or list the allowed values`, field);
  return [...new Set(v.map((x, i) => item(x, `${field}[${i}]`)))];
}

/** Validates the `snp` member of a policy document (field paths are reported as `snp.<field>`). */
export function parseSnpPolicy(json: unknown): SnpPolicy {
  if (!isPlainObject(json)) throw new PolicyError('ERR_POLICY_TYPE', `snp must be an object of SNP rules, got ${jsonType(json)}`, 'snp');
  for (const key of Object.keys(json)) {
    if (!(SNP_POLICY_FIELDS as readonly string[]).includes(key)) {
      throw new PolicyError('ERR_POLICY_UNKNOWN_FIELD', `unknown field snp.${key}; snp fields are ${SNP_POLICY_FIELDS.join(', ')}`, `snp.${key}`);
    }
  }
  const has = (k: string) => Object.prototype.hasOwnProperty.call(json, k);
  const f = (k: string) => `snp.${k}`;
  if (!has('allowedMeasurements')) {
    throw new PolicyError(
      'ERR_POLICY_MISSING_FIELD',
      'snp.allowedMeasurements is required: list the MEASUREMENTs this policy accepts, or write "any" explicitly',
      f('allowedMeasurements'),
    );
  }
  const out: { -readonly [K in keyof SnpPolicy]: SnpPolicy[K] } = {
    allowedMeasurements: allowList(json.allowedMeasurements, f('allowedMeasurements'), measurement),
  };
  if (has('allowDebug')) out.allowDebug = boolean(json.allowDebug, f('allowDebug'));
  if (has('allowMigrationAgent')) out.allowMigrationAgent = boolean(json.allowMigrationAgent, f('allowMigrationAgent'));
  if (has('requireNoSmt')) out.requireNoSmt = boolean(json.requireNoSmt, f('requireNoSmt'));
  if (has('requireSingleSocket')) out.requireSingleSocket = boolean(json.requireSingleSocket, f('requireSingleSocket'));
  if (has('minAbiMajor')) out.minAbiMajor = integer(json.minAbiMajor, f('minAbiMajor'), 255);
  if (has('minAbiMinor')) out.minAbiMinor = integer(json.minAbiMinor, f('minAbiMinor'), 255);
  if (out.minAbiMinor !== undefined && out.minAbiMajor === undefined)
    throw new PolicyError('ERR_POLICY_MISSING_FIELD', 'snp.minAbiMinor needs snp.minAbiMajor', f('minAbiMajor'));
  if (has('minTcb')) {
    const t = json.minTcb;
    if (!isPlainObject(t)) throw new PolicyError('ERR_POLICY_TYPE', `snp.minTcb must be an object of component minimums, got ${jsonType(t)}`, f('minTcb'));
    const tcb: { [K in SnpTcbComponent]?: number } = {};
    for (const [k, v] of Object.entries(t)) {
      if (!(SNP_TCB_COMPONENTS as readonly string[]).includes(k))
        throw new PolicyError(
          'ERR_POLICY_UNKNOWN_FIELD',
          `unknown TCB component snp.minTcb.${k}; components are ${SNP_TCB_COMPONENTS.join(', ')}`,
          `snp.minTcb.${k}`,
        );
      tcb[k as SnpTcbComponent] = integer(v, `snp.minTcb.${k}`, 255);
    }
    if (Object.keys(tcb).length === 0) throw new PolicyError('ERR_POLICY_EMPTY', 'snp.minTcb is empty; omit it when no minimum applies', f('minTcb'));
    out.minTcb = Object.freeze(tcb);
  }
  if (has('minGuestSvn')) out.minGuestSvn = integer(json.minGuestSvn, f('minGuestSvn'), 0xffff_ffff);
  if (has('allowedHostData')) out.allowedHostData = allowList(json.allowedHostData, f('allowedHostData'), hostData);
  if (has('allowedIdKeyDigests')) out.allowedIdKeyDigests = allowList(json.allowedIdKeyDigests, f('allowedIdKeyDigests'), keyDigest);
  if (has('allowedAuthorKeyDigests')) out.allowedAuthorKeyDigests = allowList(json.allowedAuthorKeyDigests, f('allowedAuthorKeyDigests'), keyDigest);
  if (has('allowedFamilyIds')) out.allowedFamilyIds = allowList(json.allowedFamilyIds, f('allowedFamilyIds'), id16);
  if (has('allowedImageIds')) out.allowedImageIds = allowList(json.allowedImageIds, f('allowedImageIds'), id16);
  if (has('allowedVmpls')) {
    const v = json.allowedVmpls;
    if (!Array.isArray(v) || v.length === 0)
      throw new PolicyError('ERR_POLICY_TYPE', 'snp.allowedVmpls must be a non-empty list of VMPLs 0..3', f('allowedVmpls'));
    out.allowedVmpls = [...new Set(v.map((x, i) => integer(x, `snp.allowedVmpls[${i}]`, 3)))];
  }
  for (const v of Object.values(out)) if (Array.isArray(v)) Object.freeze(v);
  return Object.freeze(out);
}

export interface CheckedSnpFacts {
  measurement?: string;
  policy?: bigint;
  reportedTcb?: SnpLaunchFacts['reportedTcb'];
  guestSvn?: number;
  vmpl?: number;
  hostData?: string;
  idKeyDigest?: string;
  authorKeyDigest?: string;
  familyId?: string;
  imageId?: string;
}

function hexFact(v: unknown, bytes: number, fact: string, problems: { fact: string; reason: string }[]): string | undefined {
  if (v instanceof Uint8Array && v.length === bytes) return Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString('hex');
  if (typeof v === 'string' && v.length === 2 * bytes && HEX.test(v)) return v.toLowerCase();
  problems.push({
    fact: `snp.${fact}`,
    reason: `${fact} must be ${bytes} bytes (or ${2 * bytes} hex digits), got ${show(v instanceof Uint8Array ? `${v.length} bytes` : v)}`,
  });
  return undefined;
}

export function checkSnpFacts(v: unknown, problems: { fact: string; reason: string }[]): CheckedSnpFacts {
  if (!isPlainObject(v)) {
    problems.push({ fact: 'snp', reason: `SNP facts must be an object, got ${jsonType(v)}` });
    return {};
  }
  const out: CheckedSnpFacts = {};
  out.measurement = hexFact(v.measurement, SNP_MEASUREMENT_BYTES, 'measurement', problems);
  const p = v.policy;
  if (typeof p === 'bigint' && p >= 0n && p < 1n << 64n) out.policy = p;
  else if (typeof p === 'number' && Number.isSafeInteger(p) && p >= 0) out.policy = BigInt(p);
  else problems.push({ fact: 'snp.policy', reason: `the SNP guest policy ${show(p)} is not a u64` });
  const t = v.reportedTcb;
  const u8 = (x: unknown) => typeof x === 'number' && Number.isInteger(x) && x >= 0 && x <= 255;
  if (isPlainObject(t) && u8(t.bootloader) && u8(t.tee) && u8(t.snp) && u8(t.microcode) && (t.fmc === undefined || t.fmc === null || u8(t.fmc)))
    out.reportedTcb = t as unknown as SnpLaunchFacts['reportedTcb'];
  else problems.push({ fact: 'snp.reportedTcb', reason: `reportedTcb ${show(t)} is not a TCB of u8 components` });
  for (const k of ['guestSvn', 'vmpl'] as const) {
    const x = v[k];
    if (typeof x === 'number' && Number.isInteger(x) && x >= 0 && x <= 0xffff_ffff) out[k] = x;
    else problems.push({ fact: `snp.${k}`, reason: `${k} ${show(x)} is not a u32` });
  }
  out.hostData = hexFact(v.hostData, 32, 'hostData', problems);
  out.idKeyDigest = hexFact(v.idKeyDigest, 48, 'idKeyDigest', problems);
  out.authorKeyDigest = hexFact(v.authorKeyDigest, 48, 'authorKeyDigest', problems);
  out.familyId = hexFact(v.familyId, 16, 'familyId', problems);
  out.imageId = hexFact(v.imageId, 16, 'imageId', problems);
  return out;
}

const bitSet = (policy: bigint, bit: bigint) => ((policy >> bit) & 1n) === 1n;

/** Every refusal of the `snp` rules, as [rule, reason] (the rule is the document path that refused). */
export function snpRefusals(p: SnpPolicy | undefined, f: CheckedSnpFacts): [string, string][] {
  if (p === undefined) return [['snp', 'the policy has no snp rules, so it accepts no SEV-SNP guest (add "snp": {"allowedMeasurements": [...]})']];
  const out: [string, string][] = [];
  const list = (rule: string, allowed: AllowList<string> | undefined, value: string | undefined, what: string) => {
    if (Array.isArray(allowed) && value !== undefined && !allowed.includes(value))
      out.push([rule, `${what} ${value} is not in ${rule} (${plural(allowed.length, 'entry', 'entries')})`]);
  };
  list('snp.allowedMeasurements', p.allowedMeasurements, f.measurement, 'MEASUREMENT');
  const pol = f.policy;
  if (pol !== undefined) {
    const hex = `0x${pol.toString(16)}`;
    if (p.allowDebug !== true && bitSet(pol, SNP_POLICY_BITS.DEBUG))
      out.push([
        'snp.allowDebug',
        `guest policy ${hex} allows debugging (bit 19): the host can read guest memory; the policy does not set snp.allowDebug: true`,
      ]);
    if (p.allowMigrationAgent !== true && bitSet(pol, SNP_POLICY_BITS.MIGRATE_MA))
      out.push(['snp.allowMigrationAgent', `guest policy ${hex} allows a migration agent (bit 18); the policy does not set snp.allowMigrationAgent: true`]);
    if (p.requireNoSmt === true && bitSet(pol, SNP_POLICY_BITS.SMT)) out.push(['snp.requireNoSmt', `guest policy ${hex} allows SMT (bit 16)`]);
    if (p.requireSingleSocket === true && !bitSet(pol, SNP_POLICY_BITS.SINGLE_SOCKET))
      out.push(['snp.requireSingleSocket', `guest policy ${hex} does not restrict the guest to a single socket (bit 20)`]);
    if (p.minAbiMajor !== undefined) {
      const major = Number((pol >> 8n) & 0xffn);
      const minor = Number(pol & 0xffn);
      const minMinor = p.minAbiMinor ?? 0;
      if (!(major > p.minAbiMajor || (major === p.minAbiMajor && minor >= minMinor)))
        out.push(['snp.minAbi', `guest policy ABI ${major}.${minor} is below the minimum ${p.minAbiMajor}.${minMinor}`]);
    }
  }
  if (p.minTcb && f.reportedTcb) {
    for (const [k, min] of Object.entries(p.minTcb) as [SnpTcbComponent, number][]) {
      const have = f.reportedTcb[k];
      if (have === undefined || have === null) out.push([`snp.minTcb.${k}`, `the report has no ${k} TCB component (fmc exists on Turin only), minimum ${min}`]);
      else if (have < min) out.push([`snp.minTcb.${k}`, `REPORTED_TCB ${k} ${have} is below the minimum ${min}`]);
    }
  }
  if (p.minGuestSvn !== undefined && f.guestSvn !== undefined && f.guestSvn < p.minGuestSvn)
    out.push(['snp.minGuestSvn', `GUEST_SVN ${f.guestSvn} is below the minimum ${p.minGuestSvn}`]);
  list('snp.allowedHostData', p.allowedHostData, f.hostData, 'HOST_DATA');
  list('snp.allowedIdKeyDigests', p.allowedIdKeyDigests, f.idKeyDigest, 'ID_KEY_DIGEST');
  list('snp.allowedAuthorKeyDigests', p.allowedAuthorKeyDigests, f.authorKeyDigest, 'AUTHOR_KEY_DIGEST');
  list('snp.allowedFamilyIds', p.allowedFamilyIds, f.familyId, 'FAMILY_ID');
  list('snp.allowedImageIds', p.allowedImageIds, f.imageId, 'IMAGE_ID');
  const vmpls = p.allowedVmpls ?? [0];
  if (f.vmpl !== undefined && !vmpls.includes(f.vmpl)) out.push(['snp.allowedVmpls', `VMPL ${f.vmpl} is not in ${showList(vmpls.map(String))}`]);
  return out;
}
