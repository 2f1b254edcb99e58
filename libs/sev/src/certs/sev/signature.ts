import { Algo, Usage } from './usage';

/** Algorithms a signature slot can be made with (ECDH keys cannot sign). */
export const SIGNATURE_ALGOS: readonly number[] = [Algo.RSA_SHA256, Algo.RSA_SHA384, Algo.ECDSA_SHA256, Algo.ECDSA_SHA384];

const SIGNER_USAGES: readonly number[] = [Usage.OCA, Usage.CEK, Usage.PEK, Usage.PDH, Usage.ARK, Usage.ASK];

/**
 * virtee sev `Signature::is_empty` (`sev/cert/v1/sig/mod.rs`): a slot counts only when both its usage and its algorithm
 * name a signer. Verifiers skip empty slots without looking at their (unsigned) bytes.
 */
export function isEmptySignatureSlot(slot: { usage: number; algo: number }): boolean {
  return !SIGNER_USAGES.includes(slot.usage) || !SIGNATURE_ALGOS.includes(slot.algo);
}
