/**
 * A VM registration (issue #15, the seed's `POST /vm/<UUID>` body plus the extensions the seed invites under "any
 * other criteria"): checked field by field into the form the broker stores (sealed, whole) and launches from.
 * Every check here runs before anything is written, so a bad registration changes nothing; messages say what the
 * field must be, in the API's own field names.
 */
import {
  assertRepresentablePolicy,
  buildSecretTable,
  cpuSignature,
  cpuSignatureForModel,
  isGuid,
  isSevError,
  parseSevCertificate,
  PolicyFlag,
  SEV_CERT_SIZE,
  Usage,
} from '@kb/sev';
import { invalid } from '../errors';

/** The GUID grub's cryptodisk and OVMF look up for a LUKS passphrase injected with LAUNCH_SECRET. */
export const LUKS_PASSPHRASE_GUID = '736869e5-84f0-4973-92ec-06879ce3da0b';
const NIL_GUID = '00000000-0000-0000-0000-000000000000';

export const LIMITS = {
  cloudCerts: 16,
  firmwareHashes: 32,
  launchDigests: 64,
  cpuModels: 64,
  policies: 16,
  secrets: 64,
  cpuCount: 512,
  passphrase: 1024,
} as const;

export type VmsaFpu = 'legacy' | 'init2';

/** The stored registration (JSON, sealed): normalized, so launches never re-parse what the owner sent. */
export interface Registration {
  scheme: 'amd-sev';
  policy: number;
  cpuCount: number;
  /** base64 of each accepted OCA certificate (0x824 bytes) */
  cloudCerts: string[];
  /** lowercase hex SHA-256 */
  firmwareHashes: string[];
  kernelHashes?: { kernel: string; initrd?: string; cmdline?: string };
  secrets: { guid: string; type: 'luks-passphrase' | 'generic'; data: string }[];
  /** allowed SEV-ES vCPU signatures (CPUID Fn0000_0001_EAX); absent: any the measurement proves */
  cpuSignatures?: number[];
  launchDigests?: string[];
  notBefore?: string;
  notAfter?: string;
  maxLaunches?: number;
  policies?: string[];
  vmsaFpu?: VmsaFpu;
}

export const REGISTRATION_FIELDS = [
  'scheme',
  'cloud-cert',
  'cloud-certs',
  'policy',
  'cpu-count',
  'firmware-hashes',
  'kernel-hash',
  'initrd-hash',
  'cmdline-hash',
  'secrets',
  'cpu-models',
  'launch-digests',
  'not-before',
  'not-after',
  'max-launches',
  'policies',
  'vmsa-fpu',
] as const;

const HEX64 = /^[0-9a-fA-F]{64}$/;
const B64 = /^[A-Za-z0-9+/]*={0,2}$/;
const DATE_TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/;
const POLICY_NAME = /^[\x21-\x7e]{1,128}$/;

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function list(body: Record<string, unknown>, name: string, max: number, min = 0): unknown[] {
  const v = body[name];
  if (!Array.isArray(v)) throw invalid(`${name} must be a list`);
  if (v.length < min) throw invalid(`${name} must have at least ${min} entr${min === 1 ? 'y' : 'ies'}`);
  if (v.length > max) throw invalid(`${name} may have at most ${max} entries`);
  return v;
}

function integer(v: unknown, name: string, min: number, max: number): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) throw invalid(`${name} must be an integer in ${min}..${max}`);
  return v;
}

export function hex32(v: unknown, name: string): string {
  if (typeof v !== 'string' || !HEX64.test(v)) throw invalid(`${name} must be a SHA-256 as 64 hex digits`);
  return v.toLowerCase();
}

export function base64(v: unknown, name: string, maxBytes: number): Buffer {
  if (typeof v !== 'string' || v.length === 0) throw invalid(`${name} must be a non-empty base64 string`);
  if (v.length > Math.ceil(maxBytes / 3) * 4 + 4) throw invalid(`${name} is too long (at most ${maxBytes} bytes)`);
  if (v.length % 4 !== 0 || !B64.test(v)) throw invalid(`${name} is not valid base64`);
  const bytes = Buffer.from(v, 'base64');
  if (bytes.length > maxBytes) throw invalid(`${name} must decode to at most ${maxBytes} bytes`);
  return bytes;
}

function ocaCert(v: unknown, name: string): string {
  const bytes = base64(v, name, SEV_CERT_SIZE);
  try {
    const cert = parseSevCertificate(bytes);
    if (cert.usage !== Usage.OCA) throw invalid(`${name} is a SEV certificate but not an OCA (usage 0x${cert.usage.toString(16)})`);
  } catch (e) {
    if (isSevError(e)) throw invalid(`${name} is not a SEV OCA certificate (${SEV_CERT_SIZE} bytes): ${e.message}`);
    throw e;
  }
  return bytes.toString('base64');
}

function cpuModel(v: unknown, name: string): number {
  try {
    if (typeof v === 'string') return cpuSignatureForModel(v);
    if (isObject(v) && Object.keys(v).length === 1 && 'signature' in v) return integer(v.signature, `${name}.signature`, 0, 0xffffffff);
    if (isObject(v) && Object.keys(v).sort().join() === 'family,model,stepping') {
      return cpuSignature(
        integer(v.family, `${name}.family`, 0, 0x10e),
        integer(v.model, `${name}.model`, 0, 0xff),
        integer(v.stepping, `${name}.stepping`, 0, 0xf),
      );
    }
  } catch (e) {
    if (isSevError(e)) throw invalid(`${name}: ${e.message}`);
    throw e;
  }
  throw invalid(`${name} must be a QEMU CPU model name, {"signature"} or {"family","model","stepping"}`);
}

/** The host's `cpu-id` at /launch: the same forms as `cpu-models` entries except a model name. */
export function cpuId(v: unknown): number {
  if (typeof v === 'string') throw invalid('cpu-id must be {"signature"} or {"family","model","stepping"}');
  return cpuModel(v, 'cpu-id');
}

function secret(v: unknown, i: number): Registration['secrets'][number] {
  const where = `secrets[${i}]`;
  if (!isObject(v)) throw invalid(`${where} must be an object`);
  if (v.type === 'luks-passphrase') {
    const extra = Object.keys(v).filter((k) => k !== 'type' && k !== 'passphrase');
    if (extra.length) throw invalid(`${where} has unknown field ${extra[0]} (a luks-passphrase has type and passphrase)`);
    if (typeof v.passphrase !== 'string' || v.passphrase.length === 0 || Buffer.byteLength(v.passphrase) > LIMITS.passphrase) {
      throw invalid(`${where}.passphrase must be a non-empty string of at most ${LIMITS.passphrase} bytes`);
    }
    return { guid: LUKS_PASSPHRASE_GUID, type: 'luks-passphrase', data: Buffer.from(v.passphrase, 'utf8').toString('base64') };
  }
  if (v.type !== undefined) throw invalid(`${where}.type must be luks-passphrase (or absent, with guid and data)`);
  const extra = Object.keys(v).filter((k) => k !== 'guid' && k !== 'data');
  if (extra.length) throw invalid(`${where} has unknown field ${extra[0]} (a generic secret has guid and data)`);
  if (typeof v.guid !== 'string' || !isGuid(v.guid)) throw invalid(`${where}.guid must be a GUID`);
  const guid = v.guid.toLowerCase();
  // efi_secret treats the nil GUID as a deleted entry
  if (guid === NIL_GUID) throw invalid(`${where}.guid must not be the nil GUID`);
  return { guid, type: 'generic', data: base64(v.data, `${where}.data`, 4096).toString('base64') };
}

/**
 * Checks a registration body (already shape-checked against the OpenAPI schema by the HTTP layer; checked again here
 * so the service never depends on it). `policyExists` answers whether a broker policy named in `policies` exists.
 */
export async function parseRegistration(body: unknown, policyExists: (name: string) => Promise<boolean>): Promise<Registration> {
  if (!isObject(body)) throw invalid('the registration must be a JSON object');
  const unknown = Object.keys(body).filter((k) => !(REGISTRATION_FIELDS as readonly string[]).includes(k));
  if (unknown.length) throw invalid(`unknown field ${unknown[0]}; the fields are ${REGISTRATION_FIELDS.join(', ')}`);
  if (body.scheme !== 'amd-sev') throw invalid('scheme must be "amd-sev"');
  const policy = integer(body.policy, 'policy', 0, 0xffffffff);
  try {
    assertRepresentablePolicy(policy);
  } catch (e) {
    if (isSevError(e)) throw invalid(`policy: ${e.message}`);
    throw e;
  }
  const cpuCount = integer(body['cpu-count'], 'cpu-count', 1, LIMITS.cpuCount);
  if ('cloud-cert' in body === 'cloud-certs' in body) throw invalid('give exactly one of cloud-cert (one OCA certificate) and cloud-certs (a list)');
  const cloudCerts =
    'cloud-cert' in body
      ? [ocaCert(body['cloud-cert'], 'cloud-cert')]
      : list(body, 'cloud-certs', LIMITS.cloudCerts, 1).map((c, i) => ocaCert(c, `cloud-certs[${i}]`));
  const firmwareHashes = [...new Set(list(body, 'firmware-hashes', LIMITS.firmwareHashes, 1).map((h, i) => hex32(h, `firmware-hashes[${i}]`)))];

  const reg: Registration = { scheme: 'amd-sev', policy, cpuCount, cloudCerts, firmwareHashes, secrets: [] };
  if ('kernel-hash' in body || 'initrd-hash' in body || 'cmdline-hash' in body) {
    if (!('kernel-hash' in body)) throw invalid('initrd-hash and cmdline-hash need kernel-hash (direct kernel boot)');
    reg.kernelHashes = { kernel: hex32(body['kernel-hash'], 'kernel-hash') };
    if ('initrd-hash' in body) reg.kernelHashes.initrd = hex32(body['initrd-hash'], 'initrd-hash');
    if ('cmdline-hash' in body) reg.kernelHashes.cmdline = hex32(body['cmdline-hash'], 'cmdline-hash');
  }
  if ('secrets' in body) {
    reg.secrets = list(body, 'secrets', LIMITS.secrets).map(secret);
    const seen = new Set<string>();
    reg.secrets.forEach((s, i) => {
      if (seen.has(s.guid)) throw invalid(`secrets[${i}] repeats the GUID ${s.guid}`);
      seen.add(s.guid);
    });
    try {
      buildSecretTable(reg.secrets.map((s) => ({ guid: s.guid, data: Buffer.from(s.data, 'base64') })));
    } catch (e) {
      if (isSevError(e)) throw invalid(`secrets do not fit one secret table: ${e.message}`);
      throw e;
    }
  }
  const es = (policy & PolicyFlag.ES) !== 0;
  if ('cpu-models' in body) {
    if (!es) throw invalid('cpu-models applies to SEV-ES guests only (policy bit ES, 0x4)');
    reg.cpuSignatures = [...new Set(list(body, 'cpu-models', LIMITS.cpuModels, 1).map((m, i) => cpuModel(m, `cpu-models[${i}]`)))];
  }
  if ('launch-digests' in body)
    reg.launchDigests = [...new Set(list(body, 'launch-digests', LIMITS.launchDigests, 1).map((h, i) => hex32(h, `launch-digests[${i}]`)))];
  for (const k of ['not-before', 'not-after'] as const) {
    if (!(k in body)) continue;
    const v = body[k];
    if (typeof v !== 'string' || !DATE_TIME.test(v) || Number.isNaN(Date.parse(v)))
      throw invalid(`${k} must be an RFC 3339 date-time (e.g. 2026-12-31T23:59:59Z)`);
    reg[k === 'not-before' ? 'notBefore' : 'notAfter'] = new Date(v).toISOString();
  }
  if (reg.notBefore && reg.notAfter && reg.notBefore >= reg.notAfter) throw invalid('not-before must be earlier than not-after');
  if ('max-launches' in body) reg.maxLaunches = integer(body['max-launches'], 'max-launches', 1, 2 ** 31 - 1);
  if ('policies' in body) {
    const names = list(body, 'policies', LIMITS.policies).map((n, i) => {
      if (typeof n !== 'string' || !POLICY_NAME.test(n)) throw invalid(`policies[${i}] must be a policy name`);
      return n;
    });
    for (const n of names) if (!(await policyExists(n))) throw invalid(`policies names '${n}', which is not a broker policy (kbctl policy put)`);
    reg.policies = [...new Set(names)];
  }
  if ('vmsa-fpu' in body) {
    if (body['vmsa-fpu'] !== 'legacy' && body['vmsa-fpu'] !== 'init2') throw invalid('vmsa-fpu must be "legacy" or "init2"');
    if (!es) throw invalid('vmsa-fpu applies to SEV-ES guests only (policy bit ES, 0x4)');
    reg.vmsaFpu = body['vmsa-fpu'];
  }
  return reg;
}

/** What GET returns: the registration in the API's field names, secrets reduced to their GUID and type. */
export function describeRegistration(uuid: string, owner: string, reg: Registration, at: { createdAt: Date; updatedAt: Date }): Record<string, unknown> {
  const out: Record<string, unknown> = {
    uuid,
    owner: owner || null,
    scheme: reg.scheme,
    policy: reg.policy,
    'cpu-count': reg.cpuCount,
    'cloud-certs': reg.cloudCerts,
    'firmware-hashes': reg.firmwareHashes,
  };
  if (reg.kernelHashes) {
    out['kernel-hash'] = reg.kernelHashes.kernel;
    if (reg.kernelHashes.initrd) out['initrd-hash'] = reg.kernelHashes.initrd;
    if (reg.kernelHashes.cmdline) out['cmdline-hash'] = reg.kernelHashes.cmdline;
  }
  out.secrets = reg.secrets.map((s) => ({ guid: s.guid, type: s.type }));
  if (reg.cpuSignatures) out['cpu-models'] = reg.cpuSignatures.map((signature) => ({ signature }));
  if (reg.launchDigests) out['launch-digests'] = reg.launchDigests;
  if (reg.notBefore) out['not-before'] = reg.notBefore;
  if (reg.notAfter) out['not-after'] = reg.notAfter;
  if (reg.maxLaunches !== undefined) out['max-launches'] = reg.maxLaunches;
  if (reg.policies) out.policies = reg.policies;
  if (reg.vmsaFpu) out['vmsa-fpu'] = reg.vmsaFpu;
  out['created-at'] = at.createdAt.toISOString();
  out['updated-at'] = at.updatedAt.toISOString();
  return out;
}
