import { parseCaCertificate, type CaCertificate } from '../ca/certificate';
import { GENOA_ARK_BASE64, GENOA_ASK_BASE64 } from './genoa';
import { MILAN_ARK_BASE64, MILAN_ASK_BASE64 } from './milan';
import { NAPLES_ARK_BASE64, NAPLES_ASK_BASE64 } from './naples';
import { ROME_ARK_BASE64, ROME_ASK_BASE64 } from './rome';
import { TURIN_ARK_BASE64, TURIN_ASK_BASE64 } from './turin';

/** In the order `Generation::try_from` tries them. */
export const AMD_GENERATIONS = ['naples', 'rome', 'milan', 'genoa', 'turin'] as const;
export type AmdGeneration = (typeof AMD_GENERATIONS)[number];

const BASE64: Record<AmdGeneration, { ark: string; ask: string }> = {
  naples: { ark: NAPLES_ARK_BASE64, ask: NAPLES_ASK_BASE64 },
  rome: { ark: ROME_ARK_BASE64, ask: ROME_ASK_BASE64 },
  milan: { ark: MILAN_ARK_BASE64, ask: MILAN_ASK_BASE64 },
  genoa: { ark: GENOA_ARK_BASE64, ask: GENOA_ASK_BASE64 },
  turin: { ark: TURIN_ARK_BASE64, ask: TURIN_ASK_BASE64 },
};

/** AMD's ARK and ASK for a generation, as fresh copies the caller may keep or append to a chain. */
export function builtinCaCertificates(generation: AmdGeneration): { ark: Buffer; ask: Buffer } {
  const b = BASE64[generation];
  return { ark: Buffer.from(b.ark, 'base64'), ask: Buffer.from(b.ask, 'base64') };
}

/** An ARK/ASK pair a verifier accepts as the top of a chain, under the name reported as the chain's generation. */
export interface TrustedRoot<Name extends string = string> {
  name: Name;
  ark: CaCertificate;
  ask: CaCertificate;
}

let builtin: readonly TrustedRoot<AmdGeneration>[] | undefined;

/**
 * The pinned roots, parsed once on first use so their KeyObjects (cached per parsed certificate) are built once per
 * process. Module-private objects: never hand them to callers, who could mutate their buffers.
 */
export function builtinRoots(): readonly TrustedRoot<AmdGeneration>[] {
  builtin ??= AMD_GENERATIONS.map((name) => {
    const { ark, ask } = builtinCaCertificates(name);
    return { name, ark: parseCaCertificate(ark), ask: parseCaCertificate(ask) };
  });
  return builtin;
}
