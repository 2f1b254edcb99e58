import { decodeTcb, generationFromCpuid, parseSnpReport, SNP_PRODUCT_NAME, type SnpGeneration, type SnpReport, type SnpTcb } from '@kb/sev';

/**
 * Where the certificates for an SNP report come from (issue #17; ../shared/specs/snp-attestation.md §4.4): the one
 * interface the KBS front-end calls. Sources, in the order `chainSources` tries them:
 *   1. the evidence (the host's certificate table, evidence.ts);
 *   2. the offline store the operator fills with `kbctl snp import-certs` (offline-store.ts);
 *   3. AMD's KDS, only when enabled with --snp-kds URL (kds.ts), cached in the store.
 * A source answers `undefined` when it does not know; nothing returned here is trusted: verifySnpReport checks every
 * certificate against the pinned roots (or the explicitly configured synthetic ones) each time.
 */
export type SnpProduct = 'Milan' | 'Genoa' | 'Turin';

export interface SnpChain {
  /** ASK (VCEK side) */
  ask: Buffer;
  ark: Buffer;
}

export interface CertificateSource {
  /** The VCEK of the report's chip at its REPORTED_TCB (DER), or undefined. */
  getVcek(report: SnpReport | Uint8Array): Promise<Buffer | undefined>;
  /** The ASK and ARK of a product (DER), or undefined. */
  getChain(product: SnpProduct): Promise<SnpChain | undefined>;
  /** The ARK-signed CRL of a product (DER), or undefined. */
  getCrl(product: SnpProduct): Promise<Buffer | undefined>;
}

export const productOf = (g: SnpGeneration): SnpProduct => SNP_PRODUCT_NAME[g] as SnpProduct;

export function asReport(r: SnpReport | Uint8Array): SnpReport {
  return r instanceof Uint8Array ? parseSnpReport(r) : r;
}

/** What identifies a VCEK (§4.2, §4.4): product, hwID hex (8 bytes on Turin, 64 otherwise), REPORTED_TCB. */
export interface VcekId {
  product: SnpProduct;
  hwId: string;
  tcb: SnpTcb;
}

/**
 * The VCEKs a report may be signed by: one for v3+ (CPUID names the generation); Milan then Genoa for v2 (§1.7).
 * None when CHIP_ID is masked (all zero): such a report cannot be looked up (§3.5).
 */
export function vcekIds(r: SnpReport): VcekId[] {
  if (r.chipId.every((b) => b === 0)) return [];
  const gens: SnpGeneration[] = r.cpuid
    ? [generationFromCpuid(r.cpuid.family, r.cpuid.model)].filter((g): g is SnpGeneration => g !== undefined)
    : ['milan', 'genoa'];
  return gens.map((g) => ({ product: productOf(g), hwId: r.chipId.subarray(0, g === 'turin' ? 8 : 64).toString('hex'), tcb: decodeTcb(r.reportedTcb, g) }));
}

const two = (n: number | undefined) => String(n ?? 0).padStart(2, '0');

/** Trustee's offline-store TCB prefix (§4.4): `bl02_tee00_snp06_ucode21`, plus `_fmc05` on Turin. */
export function tcbPrefix(t: Pick<SnpTcb, 'bootloader' | 'tee' | 'snp' | 'microcode' | 'fmc'>): string {
  return `bl${two(t.bootloader)}_tee${two(t.tee)}_snp${two(t.snp)}_ucode${two(t.microcode)}${t.fmc === undefined ? '' : `_fmc${two(t.fmc)}`}`;
}

/** Tries each source in order; the first that knows answers. */
export function chainSources(sources: readonly CertificateSource[]): CertificateSource {
  const first = async <T>(f: (s: CertificateSource) => Promise<T | undefined>): Promise<T | undefined> => {
    for (const s of sources) {
      const v = await f(s);
      if (v !== undefined) return v;
    }
    return undefined;
  };
  return {
    getVcek: (report) => {
      const r = asReport(report);
      return first((s) => s.getVcek(r));
    },
    getChain: (p) => first((s) => s.getChain(p)),
    getCrl: (p) => first((s) => s.getCrl(p)),
  };
}
