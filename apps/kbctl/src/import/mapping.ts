/**
 * simple-kbs rows → what the broker stores, so that every host keeps receiving the same bytes (issue #14;
 * ../shared/specs/kbs-compat.md §1.3–1.5). Pure: the rows, the default policy text and a file reader in, a plan out.
 *
 * Three kinds of findings:
 *  - problems: rows simple-kbs serves that cannot be carried exactly (or fail-open rows, unless the operator chose
 *    what they become). Any problem refuses the whole import.
 *  - fail-open: an item whose policy id names no usable policy. simple-kbs logs that and releases the item under the
 *    tenant default alone; `--on-missing-policy deny|default-only` decides, otherwise each one is a problem.
 *  - notices: rows simple-kbs itself can never serve (NULL columns, missing secrets…): skipped, so a host asking for
 *    them is refused here as it was there; and other facts worth knowing (duplicates, ids hosts cannot send here).
 */
import { createPrivateKey } from 'node:crypto';
import { resolve, relative, isAbsolute } from 'node:path';
import { fromSimpleKbsPolicy, isPolicyError, POLICY_VERSION, type Policy } from '@kb/policy';
import type { ImportBatch } from '@kb/store';
import type { Row, SimpleKbsRows } from './source';

export type MissingPolicyMode = 'refuse' | 'deny' | 'default-only';

export interface MappingOptions {
  /** the broker's tenant default policy name (its --default-policy) */
  defaultPolicyName: string;
  /** simple-kbs policy row N becomes `${policyPrefix}N` */
  policyPrefix: string;
  onMissingPolicy: MissingPolicyMode;
  /** report keys sign the host's LaunchDescription, as simple-kbs did (true keeps its bytes) */
  reportSignsLaunchDescription: boolean;
  /** connections expire this many seconds after the import */
  connectionExpirySeconds: number;
  now: Date;
}

export interface DefaultPolicySource {
  /** where it was read from, for messages */
  path: string;
  /** its text, or undefined if the file does not exist */
  text: string | undefined;
}

export interface Plan {
  batch: ImportBatch;
  problems: string[];
  failOpen: string[];
  notices: string[];
}

/** The policy fail-open items get with --on-missing-policy deny: it refuses every launch. */
export const DENY_POLICY_NAME = 'simple-kbs-import-deny';
const DENY_POLICY: Policy = { version: POLICY_VERSION, allowedDigests: 'any', notAfter: '1970-01-01T00:00:00.000Z' };

/** Imported connections have no launch id or chip identity on record. */
export const IMPORTED_LAUNCH_ID = '00000000-0000-0000-0000-000000000000';
export const IMPORTED_CHIP_ID = 'unknown (imported from simple-kbs)';

/** What the broker's GetSecret accepts as an Id (apps/broker/src/keybroker/validate.ts). */
const REQUESTABLE_ID = /^[\x21-\x7e]{1,256}$/;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

class BrokenValue extends Error {}

export function mapSimpleKbs(
  rows: SimpleKbsRows,
  defaultPolicy: DefaultPolicySource,
  readResource: (path: string) => Buffer | undefined,
  resourcesDir: string,
  o: MappingOptions,
): Plan {
  const plan: Plan = {
    batch: { policies: [], secrets: [], keysets: [], resources: [], reportKeys: [], connections: [] },
    problems: [],
    failOpen: [],
    notices: [],
  };
  const problem = (s: string) => plan.problems.push(s);
  const notice = (s: string) => plan.notices.push(s);

  // ---- the tenant default (default_policy.json, read by simple-kbs on every request)
  const tenant = tenantDefault(defaultPolicy);
  if ('error' in tenant) problem(tenant.error);
  else plan.batch.policies.push({ name: o.defaultPolicyName, document: tenant.policy as never });

  // ---- policy rows: converted once; an item's polid resolves to a name, or to a fail-open reason
  const policyRows = new Map<number, Row>();
  for (const r of rows.policy) {
    const id = intOf(r.id);
    if (id !== null) policyRows.set(id, r);
  }
  const converted = new Map<number, { name: string } | { failOpen: string } | { broken: string }>();
  const convert = (id: number) => {
    let c = converted.get(id);
    if (!c) {
      c = convertPolicy(id, policyRows.get(id), o.policyPrefix);
      converted.set(id, c);
    }
    return c;
  };
  let denyUsed = false;
  /** undefined: the item is refused (a problem was recorded) */
  const policyFor = (polid: unknown, what: string): { name: string | null } | undefined => {
    const id = intOf(polid);
    if (id === null) return { name: null };
    const c = convert(id);
    if ('name' in c) return { name: c.name };
    if ('broken' in c) {
      problem(`${what} uses ${c.broken}`);
      return undefined;
    }
    const text = `${what}: its policy ${c.failOpen}; simple-kbs releases it under the tenant default alone (fail-open)`;
    plan.failOpen.push(text);
    if (o.onMissingPolicy === 'refuse') {
      problem(`${text} — choose with --on-missing-policy deny|default-only`);
      return undefined;
    }
    if (o.onMissingPolicy === 'deny') {
      denyUsed = true;
      return { name: DENY_POLICY_NAME };
    }
    return { name: null };
  };

  // ---- secrets: the stored string is base64; `binary` releases its decoding, `json` and bundles the string itself
  const secretIds = new Set<string>();
  for (const r of rows.secrets) {
    const where = `secrets row id=${show(r.id)}`;
    try {
      const id = textOf(r.secret_id, `${where}: secret_id`);
      if (id === null) {
        notice(`${where} skipped: secret_id is NULL (no request can name it)`);
        continue;
      }
      const w = `${where} (secret_id '${id}')`;
      const value = textOf(r.secret, `${w}: secret`);
      if (value === null) {
        notice(`${w} skipped: secret is NULL (simple-kbs fails every request for it)`);
        continue;
      }
      const bytes = Buffer.from(value, 'base64');
      if (bytes.toString('base64') !== value) {
        problem(
          `${w}: the stored secret is not canonical base64, so its bundle/json form (the text) and binary form (the decoding) cannot both be kept; store it as base64 of the bytes hosts should get`,
        );
        continue;
      }
      if (!REQUESTABLE_ID.test(id)) notice(`${w}: hosts cannot request this id here (ids are 1–256 printable ASCII characters without spaces)`);
      const pol = policyFor(r.polid, `secret '${id}'`);
      if (!pol) continue;
      secretIds.add(id);
      plan.batch.secrets.push({ id, value: bytes, policyName: pol.name });
    } catch (e) {
      if (e instanceof BrokenValue) problem(e.message);
      else throw e;
    }
  }

  // ---- keysets: kskeys is a JSON list of secret ids; unreadable JSON is an empty list (simple-kbs: unwrap_or)
  for (const r of rows.keysets) {
    const where = `keysets row id=${show(r.id)}`;
    try {
      const id = textOf(r.keysetid, `${where}: keysetid`);
      if (id === null) {
        notice(`${where} skipped: keysetid is NULL`);
        continue;
      }
      const w = `${where} (keysetid '${id}')`;
      const raw = textOf(r.kskeys, `${w}: kskeys`);
      if (raw === null) {
        notice(`${w} skipped: kskeys is NULL (simple-kbs fails every request for it)`);
        continue;
      }
      let ids: string[] = [];
      try {
        const parsed: unknown = JSON.parse(raw);
        if (Array.isArray(parsed) && parsed.every((x) => typeof x === 'string')) ids = parsed;
        else notice(`${w}: kskeys is not a JSON list of strings; simple-kbs reads it as an empty keyset, and so is it imported`);
      } catch {
        notice(`${w}: kskeys is not JSON; simple-kbs reads it as an empty keyset, and so is it imported`);
      }
      const missing = ids.filter((s) => !secretIds.has(s));
      if (missing.length > 0) {
        notice(`${w} skipped: it names secrets that are not imported (${missing.join(', ')}); simple-kbs fails every request for it`);
        continue;
      }
      if (!REQUESTABLE_ID.test(id)) notice(`${w}: hosts cannot request this id here (ids are 1–256 printable ASCII characters without spaces)`);
      const pol = policyFor(r.polid, `keyset '${id}'`);
      if (!pol) continue;
      plan.batch.keysets.push({ id, secretIds: ids, policyName: pol.name });
    } catch (e) {
      if (e instanceof BrokenValue) problem(e.message);
      else throw e;
    }
  }

  // ---- resources: requests name the resource_type column; the file is the first row's, the policy the first
  //      row's with a non-NULL polid (two separate LIMIT 1 queries in simple-kbs's db.rs)
  const byType = new Map<string, Row[]>();
  for (const r of rows.resources) {
    const where = `resources row id=${show(r.id)}`;
    try {
      const type = textOf(r.resource_type, `${where}: resource_type`);
      if (type === null) {
        notice(`${where} skipped: resource_type is NULL (requests name resources by resource_type)`);
        continue;
      }
      const list = byType.get(type) ?? [];
      list.push(r);
      byType.set(type, list);
    } catch (e) {
      if (e instanceof BrokenValue) problem(e.message);
      else throw e;
    }
  }
  for (const [type, list] of byType) {
    const first = list[0]!;
    const where = `resources row id=${show(first.id)} (resource_type '${type}')`;
    try {
      if (list.length > 1) {
        notice(
          `resource_type '${type}' has ${list.length} rows (ids ${list.map((r) => show(r.id)).join(', ')}); simple-kbs serves the first row's file — imported: row id=${show(first.id)}'s file`,
        );
      }
      const rel = textOf(first.resource_path, `${where}: resource_path`);
      if (rel === null) {
        notice(`${where} skipped: resource_path is NULL (simple-kbs fails every request for it)`);
        continue;
      }
      const file = resolve(resourcesDir, rel);
      const inside = relative(resourcesDir, file);
      if (inside.startsWith('..') || isAbsolute(inside))
        notice(`${where}: resource_path '${rel}' is outside the resources directory (simple-kbs reads it anyway); imported from ${file}`);
      const bytes = readResource(file);
      if (bytes === undefined) {
        problem(`${where}: its file ${file} cannot be read; give simple-kbs's resources directory with --resources-dir, or delete the row`);
        continue;
      }
      if (!REQUESTABLE_ID.test(type)) notice(`${where}: hosts cannot request this id here (ids are 1–256 printable ASCII characters without spaces)`);
      const withPolicy = list.find((r) => intOf(r.polid) !== null);
      const pol = policyFor(withPolicy?.polid ?? null, `resource '${type}'`);
      if (!pol) continue;
      plan.batch.resources.push({ id: type, bytes, policyName: pol.name });
    } catch (e) {
      if (e instanceof BrokenValue) problem(e.message);
      else throw e;
    }
  }

  // ---- report keys: base64 of a PKCS#8 ECDSA P-256 key (ring's format)
  for (const r of rows.report_keypair) {
    const where = `report_keypair row id=${show(r.id)}`;
    try {
      const id = textOf(r.key_id, `${where}: key_id`);
      if (id === null) {
        notice(`${where} skipped: key_id is NULL`);
        continue;
      }
      const w = `${where} (key_id '${id}')`;
      const b64 = textOf(r.keypair, `${w}: keypair`);
      if (b64 === null) {
        notice(`${w} skipped: keypair is NULL (simple-kbs fails every request for it)`);
        continue;
      }
      const der = Buffer.from(b64, 'base64');
      let ok = false;
      try {
        const key = createPrivateKey({ key: der, format: 'der', type: 'pkcs8' });
        ok = key.asymmetricKeyType === 'ec' && key.asymmetricKeyDetails?.namedCurve === 'prime256v1';
      } catch {
        ok = false;
      }
      if (!ok) {
        notice(`${w} skipped: keypair is not base64 of a PKCS#8 ECDSA P-256 key (simple-kbs fails every request for it)`);
        continue;
      }
      if (!REQUESTABLE_ID.test(id)) notice(`${w}: hosts cannot request this id here (ids are 1–256 printable ASCII characters without spaces)`);
      const pol = policyFor(r.polid, `report key '${id}'`);
      if (!pol) continue;
      plan.batch.reportKeys.push({ id, privateKeyPkcs8: der, policyName: pol.name, signLaunchDescription: o.reportSignsLaunchDescription });
    } catch (e) {
      if (e instanceof BrokenValue) problem(e.message);
      else throw e;
    }
  }

  // ---- online connections: their launch facts and key, sealed, with the expiry the operator chose
  const expiresAt = new Date(o.now.getTime() + o.connectionExpirySeconds * 1000);
  for (const r of rows.conn_bundle) {
    const where = `conn_bundle row id=${show(r.id)}`;
    try {
      const id = textOf(r.id, `${where}: id`);
      if (id === null || !UUID.test(id)) {
        notice(`${where} skipped: the id is not a UUID (no client can name it)`);
        continue;
      }
      const cols = ['policy', 'fw_api_major', 'fw_api_minor', 'fw_build_id', 'launch_description', 'fw_digest', 'symkey'] as const;
      const nulls = cols.filter((c) => r[c] === null || r[c] === undefined);
      if (nulls.length > 0) {
        notice(`${where} skipped: ${nulls.join(', ')} NULL (simple-kbs fails every request on it)`);
        continue;
      }
      const u32 = (c: (typeof cols)[number]) => {
        const v = intOf(r[c]);
        if (v === null) throw new BrokenValue(`${where}: ${c} ${show(r[c])} is not an integer`);
        return v >>> 0; // simple-kbs: i32 as u32
      };
      const byte = (c: 'fw_api_major' | 'fw_api_minor' | 'fw_build_id') => {
        const v = u32(c);
        if (v > 0xff) throw new BrokenValue(`${where}: ${c} ${v} is above 255 — only a forged GetSecret reports that (kbs-compat §1.8 #2); delete the row`);
        return v;
      };
      const b64 = (c: 'fw_digest' | 'symkey') => {
        const s = textOf(r[c], `${where}: ${c}`)!;
        const b = Buffer.from(s, 'base64');
        if (b.length !== 32 || b.toString('base64') !== s) throw new BrokenValue(`${where}: ${c} is not base64 of 32 bytes`);
        return b;
      };
      const launchDescription = textOf(r.launch_description, `${where}: launch_description`);
      const created = dateOf(r.create_date);
      const createdAt = created && created.getTime() < o.now.getTime() ? created : o.now;
      plan.batch.connections.push({
        clientId: id.toLowerCase(),
        key: b64('symkey'),
        launchId: IMPORTED_LAUNCH_ID,
        sevPolicy: u32('policy'),
        apiMajor: byte('fw_api_major'),
        apiMinor: byte('fw_api_minor'),
        buildId: byte('fw_build_id'),
        launchDigest: b64('fw_digest'),
        chipId: IMPORTED_CHIP_ID,
        launchDescription,
        createdAt,
        expiresAt,
      });
    } catch (e) {
      if (e instanceof BrokenValue) problem(e.message);
      else throw e;
    }
  }

  // ---- policy rows: every one used above, plus unused valid ones (kept for the owner; unused broken ones noted)
  const used = new Set<number>();
  const referenced = new Set(converted.keys());
  for (const [id, c] of converted) if ('name' in c) used.add(id);
  for (const id of [...policyRows.keys()].sort((x, y) => x - y)) {
    if (referenced.has(id)) continue;
    const c = convert(id);
    if ('name' in c) used.add(id);
    else notice(`policy row id=${id} not imported (no item uses it): ${'broken' in c ? c.broken : c.failOpen}`);
  }
  for (const id of [...used].sort((a, b) => a - b)) {
    plan.batch.policies.push({ name: `${o.policyPrefix}${id}`, document: fromSimpleKbsPolicy(policyRow(policyRows.get(id)!)) as never });
  }
  if (denyUsed) plan.batch.policies.push({ name: DENY_POLICY_NAME, document: DENY_POLICY as never });
  return plan;
}

function tenantDefault(src: DefaultPolicySource): { policy: Policy } | { error: string } {
  if (src.text === undefined) {
    return {
      error: `the tenant default policy ${src.path} does not exist (simple-kbs reads default_policy.json from its working directory; give it with --default-policy-file)`,
    };
  }
  let json: unknown;
  try {
    json = JSON.parse(src.text);
  } catch (e) {
    return { error: `${src.path} is not JSON (${(e as Error).message}); simple-kbs could not have released anything with it` };
  }
  const o = json as Record<string, unknown>;
  if (typeof o !== 'object' || o === null || Array.isArray(o)) return { error: `${src.path} must be a JSON object` };
  for (const k of ['allowed_digests', 'allowed_policies', 'min_fw_api_major', 'min_fw_api_minor', 'allowed_build_ids']) {
    if (!(k in o)) return { error: `${src.path} lacks '${k}'; simple-kbs could not have released anything with it` };
  }
  try {
    return { policy: fromSimpleKbsPolicy(o as never) };
  } catch (e) {
    if (isPolicyError(e)) return { error: `${src.path}: ${e.message}` };
    throw e;
  }
}

/**
 * simple-kbs's get_policy: `WHERE id = ? AND valid = 1`, every column decoded (NULL or malformed JSON is an error, and
 * the caller then fails open). Rows that decode but cannot convert are broken: they refuse the import.
 */
function convertPolicy(id: number, row: Row | undefined, prefix: string): { name: string } | { failOpen: string } | { broken: string } {
  const where = `policy row id=${id}`;
  if (!row) return { failOpen: `${where} does not exist` };
  const valid = intOf(row.valid);
  if (valid !== 1) return { failOpen: `${where} is not valid (valid = ${show(row.valid)})` };
  for (const c of ['allowed_digests', 'allowed_policies', 'min_fw_api_major', 'min_fw_api_minor', 'allowed_build_ids']) {
    if (row[c] === null || row[c] === undefined) return { failOpen: `${where} has ${c} NULL` };
  }
  let decoded: ReturnType<typeof policyRow>;
  try {
    decoded = policyRow(row);
  } catch (e) {
    return { failOpen: `${where} cannot be decoded (${(e as Error).message})` };
  }
  // serde: Vec<String> and Vec<u32>
  if (!Array.isArray(decoded.allowed_digests) || !decoded.allowed_digests.every((d) => typeof d === 'string')) {
    return { failOpen: `${where} has allowed_digests that are not a JSON list of strings` };
  }
  for (const c of ['allowed_policies', 'allowed_build_ids'] as const) {
    const list = decoded[c];
    if (!Array.isArray(list) || !list.every((v) => typeof v === 'number' && Number.isInteger(v) && v >= 0 && v <= 0xffffffff)) {
      return { failOpen: `${where} has ${c} that are not a JSON list of u32` };
    }
  }
  try {
    fromSimpleKbsPolicy(decoded);
  } catch (e) {
    if (isPolicyError(e)) return { broken: `${where} (${prefix}${id}), which cannot be converted: ${e.message}` };
    throw e;
  }
  return { name: `${prefix}${id}` };
}

function policyRow(row: Row) {
  const list = (c: string): unknown[] => {
    const t = textOf(row[c], c);
    const v: unknown = JSON.parse(t ?? 'null');
    return v as unknown[];
  };
  const int = (c: string): number => {
    const v = intOf(row[c]);
    if (v === null) throw new Error(`${c} is not an integer`);
    return v;
  };
  return {
    allowed_digests: list('allowed_digests'),
    allowed_policies: list('allowed_policies'),
    min_fw_api_major: int('min_fw_api_major'),
    min_fw_api_minor: int('min_fw_api_minor'),
    allowed_build_ids: list('allowed_build_ids'),
  };
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

/** Text columns: strings, or bytes (MySQL utf8mb4_bin columns may arrive as Buffers), or NULL. */
function textOf(v: unknown, where: string): string | null {
  if (v === null || v === undefined) return null;
  if (typeof v === 'string') return v;
  if (v instanceof Uint8Array) {
    try {
      return utf8.decode(v);
    } catch {
      throw new BrokenValue(`${where} is not UTF-8 text`);
    }
  }
  if (typeof v === 'number' || typeof v === 'bigint') return String(v);
  throw new BrokenValue(`${where} is not text (${typeof v})`);
}

/** Integer columns: numbers, bigints or decimal strings (pg returns BIGINT as text), or NULL. */
function intOf(v: unknown): number | null {
  if (v === null || v === undefined) return null;
  if (typeof v === 'number') return Number.isInteger(v) ? v : null;
  if (typeof v === 'bigint') return Number(v);
  if (typeof v === 'boolean') return v ? 1 : 0;
  if (typeof v === 'string' && /^-?\d+$/.test(v)) return Number(v);
  return null;
}

function dateOf(v: unknown): Date | undefined {
  if (v instanceof Date) return Number.isNaN(v.getTime()) ? undefined : v;
  if (typeof v === 'string' && v) {
    const d = new Date(/Z|[+-]\d\d:?\d\d$/.test(v) ? v : `${v.replace(' ', 'T')}Z`);
    return Number.isNaN(d.getTime()) ? undefined : d;
  }
  return undefined;
}

function show(v: unknown): string {
  if (v instanceof Uint8Array) return `'${Buffer.from(v).toString('utf8')}'`;
  return typeof v === 'string' ? v : String(v);
}
