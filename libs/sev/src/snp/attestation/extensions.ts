import { SnpError } from './errors';
import type { SnpCertificate } from './certificate';

/**
 * AMD's VCEK/VLEK extensions under OID arc 1.3.6.1.4.1.3704.1 (../shared/specs/snp-attestation.md §3.4). Each
 * extnValue holds one DER value (INTEGER or IA5String), except hwID whose bytes KDS writes raw (§3.5). Looked up by
 * OID, never by position (Turin puts fmcSPL first).
 */
const ARC = '1.3.6.1.4.1.3704.1';
export const AmdOid = {
  STRUCT_VERSION: `${ARC}.1`,
  PRODUCT_NAME: `${ARC}.2`,
  BL_SPL: `${ARC}.3.1`,
  TEE_SPL: `${ARC}.3.2`,
  SNP_SPL: `${ARC}.3.3`,
  SPL_4: `${ARC}.3.4`,
  SPL_5: `${ARC}.3.5`,
  SPL_6: `${ARC}.3.6`,
  SPL_7: `${ARC}.3.7`,
  UCODE_SPL: `${ARC}.3.8`,
  FMC_SPL: `${ARC}.3.9`,
  HW_ID: `${ARC}.4`,
  CSP_ID: `${ARC}.5`,
} as const;

export interface VekExtensions {
  structVersion?: number;
  productName?: string;
  bootloader?: number;
  tee?: number;
  snp?: number;
  spl4?: number;
  spl5?: number;
  spl6?: number;
  spl7?: number;
  microcode?: number;
  fmc?: number;
  /** the extnValue content as found (raw or an OCTET STRING); decode with decodeHwId once the generation is known */
  hwIdValue?: Buffer;
  cspId?: string;
}

/** One DER TLV filling `v` exactly; returns its content. */
function single(v: Buffer, tag: number, what: string): Buffer {
  if (v.length < 2 || v[0] !== tag) throw new Error(`${what}: expected tag 0x${tag.toString(16)}`);
  let len = v[1]!;
  let head = 2;
  if (len >= 0x80) {
    const n = len & 0x7f;
    if (n === 0 || n > 2 || v.length < 2 + n) throw new Error(`${what}: bad length`);
    len = v.readUIntBE(2, n);
    head += n;
  }
  if (head + len !== v.length) throw new Error(`${what}: length does not match the extension value`);
  return v.subarray(head);
}

/** A non-negative DER INTEGER of at most 4 content bytes (a value above 127 carries a leading 00: parse, never "take the last byte"). */
function integer(v: Buffer, what: string): number {
  const c = single(v, 0x02, what);
  if (c.length === 0 || c.length > 5 || (c[0]! & 0x80) !== 0) throw new Error(`${what}: not a small non-negative INTEGER`);
  if (c.length > 1 && c[0] === 0 && (c[1]! & 0x80) === 0) throw new Error(`${what}: INTEGER not minimally encoded`);
  return c.readUIntBE(0, c.length);
}

function ia5(v: Buffer, what: string): string {
  const c = single(v, 0x16, what);
  if (c.some((x) => x > 0x7f)) throw new Error(`${what}: not an IA5String`);
  return c.toString('latin1');
}

const memo = new WeakMap<SnpCertificate, VekExtensions>();

/** The AMD extensions of a VEK (memoised per parsed certificate; the result is frozen). */
export function vekExtensions(cert: SnpCertificate, what = 'VEK certificate'): VekExtensions {
  const known = memo.get(cert);
  if (known) return known;
  const out = Object.freeze(readExtensions(cert, what));
  memo.set(cert, out);
  return out;
}

function readExtensions(cert: SnpCertificate, what: string): VekExtensions {
  const x = cert.extensions;
  const out: VekExtensions = {};
  try {
    const int = (oid: string, name: string) => {
      const v = x.get(oid);
      return v === undefined ? undefined : integer(v, name);
    };
    const set = <K extends keyof VekExtensions>(k: K, v: VekExtensions[K] | undefined) => {
      if (v !== undefined) out[k] = v;
    };
    set('structVersion', int(AmdOid.STRUCT_VERSION, 'structVersion'));
    const pn = x.get(AmdOid.PRODUCT_NAME);
    if (pn) out.productName = ia5(pn, 'productName');
    set('bootloader', int(AmdOid.BL_SPL, 'blSPL'));
    set('tee', int(AmdOid.TEE_SPL, 'teeSPL'));
    set('snp', int(AmdOid.SNP_SPL, 'snpSPL'));
    set('spl4', int(AmdOid.SPL_4, 'spl_4'));
    set('spl5', int(AmdOid.SPL_5, 'spl_5'));
    set('spl6', int(AmdOid.SPL_6, 'spl_6'));
    set('spl7', int(AmdOid.SPL_7, 'spl_7'));
    set('microcode', int(AmdOid.UCODE_SPL, 'ucodeSPL'));
    set('fmc', int(AmdOid.FMC_SPL, 'fmcSPL'));
    set('hwIdValue', x.get(AmdOid.HW_ID));
    const csp = x.get(AmdOid.CSP_ID);
    if (csp) out.cspId = ia5(csp, 'CSP_ID');
  } catch (e) {
    throw new SnpError('SNP_CERT_PARSE', `${what}: malformed AMD extension: ${(e as Error).message}`, { cause: e });
  }
  return out;
}

/**
 * The hwID (§3.5): `n` = 8 on Turin, 64 otherwise. The raw form is taken as is; else exactly one OCTET STRING whose
 * content is `n` bytes. Decided by length, never by guessing from the first byte (Turin's 8 raw bytes may begin with
 * any value). Undefined when neither form fits.
 */
export function decodeHwId(value: Buffer, n: number): Buffer | undefined {
  if (value.length === n) return value;
  try {
    const c = single(value, 0x04, 'hwID');
    return c.length === n ? c : undefined;
  } catch {
    return undefined;
  }
}
