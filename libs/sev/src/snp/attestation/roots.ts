import { SnpError } from './errors';
import { parseSnpCertificate, type SnpCertificate } from './certificate';
import { SNP_GENERATIONS, type SnpGeneration } from './generation';
import { GENOA_ARK_PEM, GENOA_ASK_PEM, GENOA_ASVK_PEM } from './roots/genoa';
import { MILAN_ARK_PEM, MILAN_ASK_PEM, MILAN_ASVK_PEM } from './roots/milan';
import { TURIN_ARK_PEM, TURIN_ASK_PEM, TURIN_ASVK_PEM } from './roots/turin';

/**
 * The CA certificates a chain must end in, per generation (../shared/specs/snp-attestation.md §3.2): the ARK, and
 * the intermediates it signed — ASK for VCEKs, ASVK for VLEKs. A root supplied in evidence is never trusted by itself.
 * Verifiers take a `SnpRoots` map so tests and simulators can pin a synthetic set explicitly; the default is AMD's.
 */
export interface SnpRootSet {
  ark: SnpCertificate;
  ask: SnpCertificate;
  asvk: SnpCertificate;
}
export type SnpRoots = Readonly<Partial<Record<SnpGeneration, SnpRootSet>>>;

const PEM: Record<SnpGeneration, [string, string, string]> = {
  milan: [MILAN_ARK_PEM, MILAN_ASK_PEM, MILAN_ASVK_PEM],
  genoa: [GENOA_ARK_PEM, GENOA_ASK_PEM, GENOA_ASVK_PEM],
  turin: [TURIN_ARK_PEM, TURIN_ASK_PEM, TURIN_ASVK_PEM],
};

let pinned: SnpRoots | undefined;

/** AMD's pinned SNP roots (Milan, Genoa, Turin), parsed once per process. */
export function pinnedSnpRoots(): SnpRoots {
  pinned ??= Object.freeze(
    Object.fromEntries(
      SNP_GENERATIONS.map((g) => {
        const [ark, ask, asvk] = PEM[g].map((p) => parseSnpCertificate(Buffer.from(p, 'latin1'), `pinned ${g} root`)) as [
          SnpCertificate,
          SnpCertificate,
          SnpCertificate,
        ];
        return [g, Object.freeze({ ark, ask, asvk })];
      }),
    ),
  );
  return pinned;
}

/** The DER certificates of a pinned generation (ARK, ASK, ASVK), as fresh copies. */
export function pinnedSnpRootCertificates(generation: SnpGeneration): { ark: Buffer; ask: Buffer; asvk: Buffer } {
  const r = pinnedSnpRoots()[generation];
  if (!r) throw new SnpError('SNP_ARGUMENT', `no pinned roots for ${generation}`);
  return { ark: Buffer.from(r.ark.der), ask: Buffer.from(r.ask.der), asvk: Buffer.from(r.asvk.der) };
}

/** A root set from DER/PEM certificates (a simulator's synthetic CA, trusted only because the caller says so). */
export function snpRootSet(certs: { ark: Uint8Array; ask: Uint8Array; asvk: Uint8Array }): SnpRootSet {
  return Object.freeze({
    ark: parseSnpCertificate(certs.ark, 'ARK'),
    ask: parseSnpCertificate(certs.ask, 'ASK'),
    asvk: parseSnpCertificate(certs.asvk, 'ASVK'),
  });
}
