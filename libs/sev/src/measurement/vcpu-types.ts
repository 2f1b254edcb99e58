/**
 * The guest vCPU signature (CPUID Fn0000_0001_EAX) that QEMU loads into RDX at reset and that therefore lands in the
 * VMSA. AMD CPUID Specification #25481; sev-snp-measure `vcpu_types.py`; sev crate `measurement/vcpu_types.rs`.
 * ../shared/specs/launch-digest.md §1.5.
 */
import { SevError } from '../errors';

/** The extended family field adds at most 0xFF to the base family 0xF. */
const MAX_FAMILY = 0xf + 0xff;

function checkField(name: string, value: number, max: number): void {
  if (!Number.isInteger(value) || value < 0 || value > max) {
    throw new SevError('ERR_SEV_RANGE', `vCPU ${name} must be an integer in 0..${max}, got ${value}`);
  }
}

/**
 * Rejects out-of-range fields instead of masking them as the reference tools do: a masked typo would silently give
 * the signature of another CPU and an unexplained digest mismatch.
 */
export function cpuSignature(family: number, model: number, stepping: number): number {
  checkField('family', family, MAX_FAMILY);
  checkField('model', model, 0xff);
  checkField('stepping', stepping, 0xf);
  const [familyLow, familyHigh] = family > 0xf ? [0xf, family - 0xf] : [family, 0];
  return ((familyHigh << 20) | ((model >> 4) << 16) | (familyLow << 8) | ((model & 0xf) << 4) | stepping) >>> 0;
}

/** QEMU `builtin_x86_defs` models with SEV-capable signatures, as listed by sev-snp-measure. */
export const QEMU_CPU_SIGNATURES: Readonly<Record<string, number>> = Object.freeze({
  EPYC: cpuSignature(23, 1, 2),
  'EPYC-v1': cpuSignature(23, 1, 2),
  'EPYC-v2': cpuSignature(23, 1, 2),
  'EPYC-IBPB': cpuSignature(23, 1, 2),
  'EPYC-v3': cpuSignature(23, 1, 2),
  'EPYC-v4': cpuSignature(23, 1, 2),
  'EPYC-Rome': cpuSignature(23, 49, 0),
  'EPYC-Rome-v1': cpuSignature(23, 49, 0),
  'EPYC-Rome-v2': cpuSignature(23, 49, 0),
  'EPYC-Rome-v3': cpuSignature(23, 49, 0),
  'EPYC-Milan': cpuSignature(25, 1, 1),
  'EPYC-Milan-v1': cpuSignature(25, 1, 1),
  'EPYC-Milan-v2': cpuSignature(25, 1, 1),
  'EPYC-Genoa': cpuSignature(25, 17, 0),
  'EPYC-Genoa-v1': cpuSignature(25, 17, 0),
  'EPYC-Turin': cpuSignature(26, 0, 0),
});

export function cpuSignatureForModel(name: string): number {
  const sig = Object.prototype.hasOwnProperty.call(QEMU_CPU_SIGNATURES, name) ? QEMU_CPU_SIGNATURES[name] : undefined;
  if (sig === undefined) {
    throw new SevError('ERR_SEV_ARGUMENT', `unknown QEMU vCPU model ${JSON.stringify(name)}; known: ${Object.keys(QEMU_CPU_SIGNATURES).join(', ')}`);
  }
  return sig;
}

/** The three ways a user names the guest CPU (sev-snp-measure `--vcpu-sig`, `--vcpu-type`, `--vcpu-family/...`). */
export type VcpuSpec = { sig: number } | { type: string } | { family: number; model: number; stepping: number };

/** Exactly one form must be given: the reference CLI's silent precedence between them hides mistakes. */
export function resolveVcpuSignature(spec: VcpuSpec): number {
  const s = spec as Partial<{ sig: number; type: string; family: number; model: number; stepping: number }>;
  const triplet = s.family !== undefined || s.model !== undefined || s.stepping !== undefined;
  const forms = [s.sig !== undefined, s.type !== undefined, triplet].filter(Boolean).length;
  if (forms !== 1) {
    throw new SevError('ERR_SEV_ARGUMENT', 'give the vCPU as exactly one of: sig, type, or family/model/stepping');
  }
  if (s.sig !== undefined) {
    if (!Number.isInteger(s.sig) || s.sig < 0 || s.sig > 0xffffffff) {
      throw new SevError('ERR_SEV_RANGE', `vCPU signature must be a u32, got ${s.sig}`);
    }
    return s.sig;
  }
  if (s.type !== undefined) return cpuSignatureForModel(s.type);
  if (s.family === undefined || s.model === undefined || s.stepping === undefined) {
    throw new SevError('ERR_SEV_ARGUMENT', 'vCPU family, model and stepping must be given together');
  }
  return cpuSignature(s.family, s.model, s.stepping);
}
