import { isSevError, SevError } from '../../errors';
import { parseCaCertificate } from '../ca/certificate';
import { builtinCaCertificates, builtinRoots, type AmdGeneration } from '../builtin/roots';
import { verifySevCertificate } from '../verify';
import type { FullChain, PlatformChain } from './chain';

/**
 * virtee sev `Generation::try_from(&sev::Chain)`: the first AMD generation whose ASK signed the CEK. Nothing else of
 * the chain is checked here; verifyChain does that.
 */
export function builtinGeneration(chain: Pick<PlatformChain, 'cek'>): AmdGeneration {
  for (const root of builtinRoots()) {
    try {
      verifySevCertificate(root.ask, chain.cek);
      return root.name;
    } catch (e) {
      if (!isSevError(e)) throw e;
    }
  }
  throw new SevError('ERR_SEV_UNTRUSTED_ROOT', 'CEK is not signed by the ASK of any AMD generation');
}

/** Complete a platform-only chain with AMD's ARK and ASK for its generation, as `sevctl export --full` does. */
export function withBuiltinCa(chain: PlatformChain): FullChain {
  const { ark, ask } = builtinCaCertificates(builtinGeneration(chain));
  return { pdh: chain.pdh, pek: chain.pek, oca: chain.oca, cek: chain.cek, ask: parseCaCertificate(ask), ark: parseCaCertificate(ark) };
}
