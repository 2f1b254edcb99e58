import { isSevError, SevError } from '../../errors';
import { parseCaCertificate } from '../ca/certificate';
import { builtinRoots, type TrustedRoot } from '../builtin/roots';
import type { SevCertificate } from '../sev/certificate';
import { Curve } from '../sev/layout';
import { Usage } from '../sev/usage';
import { verifyCaCertificate, verifySevCertificate } from '../verify';
import { decodeChain, encodeChain, type FullChain } from './chain';

/** An ARK/ASK pair the caller trusts explicitly (a simulator, a lab machine); `name` is reported as the generation. */
export interface ExtraRoot {
  name: string;
  ark: Uint8Array;
  ask: Uint8Array;
}

export interface VerifyChainOptions {
  extraRoots?: readonly ExtraRoot[];
}

export interface VerifiedChain {
  /** Decoded from the verified bytes. */
  chain: FullChain;
  pdh: SevCertificate;
  cek: SevCertificate;
  /** An AMD generation ('naples' … 'turin') or the name of the extra root that matched. */
  generation: string;
  trustedBy: 'amd' | 'extra';
}

/** Roots whose self-signature and ASK signature have been checked; pinned bytes never change, so once is enough. */
const verifiedRoots = new WeakSet<TrustedRoot>();

function ensureVerified(root: TrustedRoot): void {
  if (verifiedRoots.has(root)) return;
  verifyCaCertificate(root.ark, root.ark);
  verifyCaCertificate(root.ark, root.ask);
  verifiedRoots.add(root);
}

/** Parsed once per ExtraRoot object: callers pass the same configuration on every request. */
const parsedExtraRoots = new WeakMap<ExtraRoot, TrustedRoot>();

function parseExtraRoot(extra: ExtraRoot): TrustedRoot {
  let root = parsedExtraRoots.get(extra);
  if (root) return root;
  try {
    root = { name: extra.name, ark: parseCaCertificate(extra.ark), ask: parseCaCertificate(extra.ask) };
  } catch (e) {
    if (isSevError(e)) throw new SevError('ERR_SEV_ARGUMENT', `extra root '${extra.name}': ${e.message}`);
    throw e;
  }
  if (root.ark.usage !== Usage.ARK || root.ask.usage !== Usage.ASK) {
    throw new SevError('ERR_SEV_ARGUMENT', `extra root '${extra.name}' must be an ARK and an ASK`);
  }
  parsedExtraRoots.set(extra, root);
  return root;
}

function findTrustedRoot(chain: FullChain, extraRoots: readonly ExtraRoot[]): { root: TrustedRoot; trustedBy: 'amd' | 'extra' } | undefined {
  const same = (r: TrustedRoot) => r.ark.raw.equals(chain.ark.raw) && r.ask.raw.equals(chain.ask.raw);
  const amd = builtinRoots().find(same);
  if (amd) return { root: amd, trustedBy: 'amd' };
  const extra = extraRoots.map(parseExtraRoot).find(same);
  return extra && { root: extra, trustedBy: 'extra' };
}

/**
 * Verify a full chain as virtee sev `Session::start` does (ARK self, ARK→ASK, ASK→CEK, OCA self, OCA→PEK, CEK→PEK,
 * PEK→PDH), then require what the crate does not (kbs-compat.md §5.1): the ARK and ASK must be byte-identical to
 * AMD's published roots or to an explicitly trusted extra root, and the PDH must be a P-384 key.
 *
 * Signatures are checked before trust so a tampered chain reports what is wrong with it; an untrusted root costs
 * no more than a genuine one (two RSA verifications).
 */
export function verifyChain(input: Uint8Array | FullChain, options: VerifyChainOptions = {}): VerifiedChain {
  // Re-decoding an already decoded chain is cheap and guarantees every returned field comes from the verified bytes
  // (a hand-assembled object could pair AMD's raw bytes with other key fields).
  const chain = decodeChain('pdh' in input ? encodeChain(input) : input);
  const trusted = findTrustedRoot(chain, options.extraRoots ?? []);
  if (trusted) {
    ensureVerified(trusted.root);
  } else {
    verifyCaCertificate(chain.ark, chain.ark);
    verifyCaCertificate(chain.ark, chain.ask);
  }
  // The pinned ASK object carries a cached KeyObject; the chain's copy would build a new one.
  verifySevCertificate(trusted ? trusted.root.ask : chain.ask, chain.cek);
  verifySevCertificate(chain.oca, chain.oca);
  verifySevCertificate(chain.oca, chain.pek);
  verifySevCertificate(chain.cek, chain.pek);
  verifySevCertificate(chain.pek, chain.pdh);
  if (chain.pdh.key.kind !== 'ec' || chain.pdh.key.curve !== Curve.P384) {
    throw new SevError('ERR_SEV_FORMAT', 'PDH is not a P-384 key, so no ECDH with the guest owner key is possible');
  }
  if (!trusted) {
    throw new SevError(
      'ERR_SEV_UNTRUSTED_ROOT',
      `the chain verifies but its ARK (key_id ${chain.ark.keyId.toString('hex')}) is neither an AMD root nor an explicitly trusted one`,
    );
  }
  return { chain, pdh: chain.pdh, cek: chain.cek, generation: trusted.root.name, trustedBy: trusted.trustedBy };
}
