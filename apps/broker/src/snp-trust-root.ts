import { readFileSync } from 'node:fs';
import { isPem, pemBlocks, pinnedSnpRoots, snpRootSet, SNP_GENERATIONS, type SnpGeneration, type SnpRoots } from '@kb/sev';

/**
 * `--snp-trust-root FILE`: a non-AMD SNP root set (a lab's or the simulator's synthetic CA) trusted because the operator
 * says so. FILE is PEM with the ARK and the ASK, optionally the ASVK (any order; the KDS `cert_chain` files hold
 * ASK+ARK). Each certificate is recognised by its CN suffix -Milan/-Genoa/-Turin and its role: the self-signed one is
 * the ARK, a CN with "VLEK" the ASVK, the other the ASK (../shared/specs/snp-attestation.md §3.2). The set replaces
 * AMD's pinned root for that generation only; the other generations stay AMD's.
 *
 * Without an ASVK the ASVK slot holds the ARK: VLEKs must then be signed by the ARK itself, which only the holder of
 * the lab CA can do (real VLEK chains need the ASVK in FILE).
 */
export function readSnpTrustRoot(file: string): { generation: SnpGeneration; roots: SnpRoots; arkCn: string } {
  const fail = (why: string) => new Error(`--snp-trust-root ${file} must hold the ARK and ASK (optionally the ASVK) of one SNP generation as PEM: ${why}`);
  let bytes: Buffer;
  try {
    bytes = readFileSync(file);
  } catch (e) {
    throw fail((e as Error).message);
  }
  if (!isPem(bytes)) throw fail('not PEM');
  let ders: Buffer[];
  try {
    ders = pemBlocks(bytes.toString('latin1'), 'CERTIFICATE');
  } catch (e) {
    throw fail((e as Error).message);
  }
  const found: { ark?: Buffer; ask?: Buffer; asvk?: Buffer } = {};
  let generation: SnpGeneration | undefined;
  for (const der of ders) {
    const cert = snpRootSet({ ark: der, ask: der, asvk: der }).ark;
    const cn = cert.subjectCn ?? '';
    const g = SNP_GENERATIONS.find((x) => cn.toLowerCase().endsWith(`-${x}`));
    if (!g) throw fail(`the certificate CN ${JSON.stringify(cn)} names no generation (-Milan, -Genoa, -Turin)`);
    if (generation && g !== generation) throw fail(`certificates of ${generation} and ${g}`);
    generation = g;
    const role = cert.subjectName.equals(cert.issuerName) ? 'ark' : /VLEK/i.test(cn) ? 'asvk' : 'ask';
    if (found[role]) throw fail(`two ${role.toUpperCase()} certificates`);
    found[role] = der;
  }
  if (!found.ark || !found.ask || !generation)
    throw fail(
      `found ${
        Object.keys(found)
          .map((k) => k.toUpperCase())
          .join(', ') || 'no certificate'
      }`,
    );
  const set = snpRootSet({ ark: found.ark, ask: found.ask, asvk: found.asvk ?? found.ark });
  return { generation, roots: { ...pinnedSnpRoots(), [generation]: set }, arkCn: set.ark.subjectCn ?? '' };
}
