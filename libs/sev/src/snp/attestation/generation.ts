/**
 * SEV-SNP processor generations and how a report tells them (../shared/specs/snp-attestation.md §1.7). The generation
 * decides the TCB layout, the pinned roots and the product name, so it is settled before anything else is interpreted.
 */
export const SNP_GENERATIONS = ['milan', 'genoa', 'turin'] as const;
export type SnpGeneration = (typeof SNP_GENERATIONS)[number];

/** KDS product names and the productName prefix of VEK certificates (§3.4, §4.1). */
export const SNP_PRODUCT_NAME: Record<SnpGeneration, string> = { milan: 'Milan', genoa: 'Genoa', turin: 'Turin' };

/**
 * The generation of a v3+ report from its CPUID family/model bytes (§1.7 table). Venice is recognised but has no
 * pinned roots anywhere, so it is refused like an unknown part. Ranges are inclusive (Genoa includes 0xAF like VS and
 * MS; TR's half-open range is a known off-by-one).
 */
export function generationFromCpuid(family: number, model: number): SnpGeneration | undefined {
  if (family === 0x19) {
    if (model <= 0x0f) return 'milan';
    if ((model >= 0x10 && model <= 0x1f) || (model >= 0xa0 && model <= 0xaf)) return 'genoa';
    return undefined;
  }
  if (family === 0x1a && model <= 0x11) return 'turin';
  return undefined;
}

/** A human name for a CPUID pair no root exists for (error messages only). */
export function describeCpuid(family: number, model: number): string {
  const venice = family === 0x1a && ((model >= 0x50 && model <= 0x57) || (model >= 0x90 && model <= 0xaf) || (model >= 0xc0 && model <= 0xc7));
  const hex = (n: number) => `0x${n.toString(16).padStart(2, '0')}`;
  return `family ${hex(family)} model ${hex(model)}${venice ? ' (Venice: AMD publishes no SNP roots for it yet)' : ''}`;
}
