import type { KeyObject } from 'node:crypto';
import { SevError } from '../errors';
import { caHash, caPublicKey, caSignedBody, type CaCertificate } from './ca/certificate';
import { ecdsaVerifySlot, rsaPssVerifyLe, type SevHash } from './crypto';
import { sevPublicKey, sevSignedBody, type SevCertificate } from './sev/certificate';
import { isEmptySignatureSlot } from './sev/signature';
import { algoHash, algoKind, Usage, usageName } from './sev/usage';

/**
 * One (signer, subject) check of virtee sev `PublicKey::verify` (`certs/sev/crypto.rs`), spec sev-session.md §2.2.
 * A subject signature counts only if its usage, key kind, hash and (for CA certificates) key id all match the signer;
 * then it must verify cryptographically. A subject with no matching signature is a chain error (wrong signer, order
 * or id), one whose matching signatures all fail is a signature error.
 */
interface SignerKey {
  name: string;
  usage: number;
  kind: 'rsa' | 'ec';
  hash: SevHash;
  id: Buffer | undefined;
  key: KeyObject;
}

interface Candidate {
  usage: number;
  kind: 'rsa' | 'ec';
  hash: SevHash;
  /** Only CA signatures carry an id (the subject's certifying_id). */
  id: Buffer | undefined;
  sig: Buffer;
}

function caSigner(cert: CaCertificate): SignerKey {
  return {
    name: usageName(cert.usage),
    usage: cert.usage,
    kind: 'rsa',
    hash: caHash(cert.modulusBits),
    id: cert.keyId,
    key: caPublicKey(cert),
  };
}

function sevSigner(cert: SevCertificate): SignerKey {
  const kind = algoKind(cert.algo);
  const hash = algoHash(cert.algo);
  // parseSevCertificate only admits known algorithms, so this is a hand-built object.
  if (kind === undefined || hash === undefined) {
    throw new SevError('ERR_SEV_FORMAT', `${usageName(cert.usage)} has unknown algorithm 0x${cert.algo.toString(16)}`);
  }
  return { name: usageName(cert.usage), usage: cert.usage, kind, hash, id: undefined, key: sevPublicKey(cert) };
}

function check(signer: SignerKey, subject: string, body: Buffer, candidates: Candidate[]): void {
  const usable = candidates.filter(
    (c) =>
      c.usage === signer.usage &&
      c.kind === signer.kind &&
      c.hash === signer.hash &&
      (c.id === undefined || (signer.id !== undefined && c.id.equals(signer.id))),
  );
  const what = subject === signer.name ? `${subject} self-signature` : `${subject} signature by ${signer.name}`;
  if (usable.length === 0) {
    throw new SevError('ERR_SEV_CHAIN', `${what} is missing (no signature matches the signer's usage, algorithm and key id)`);
  }
  const ok = usable.some((c) => (c.kind === 'rsa' ? rsaPssVerifyLe(signer.key, c.hash, body, c.sig) : ecdsaVerifySlot(signer.key, c.hash, body, c.sig)));
  if (!ok) throw new SevError('ERR_SEV_SIGNATURE', `${what} does not verify`);
}

/**
 * (ARK, ARK) or (ARK, ASK). A CA signature always claims usage ARK and the hash of the subject's key size, so an ASK
 * can never sign a CA certificate and the ARK and ASK must have the same key size.
 */
export function verifyCaCertificate(signer: CaCertificate, subject: CaCertificate): void {
  check(caSigner(signer), usageName(subject.usage), caSignedBody(subject), [
    { usage: Usage.ARK, kind: 'rsa', hash: caHash(subject.modulusBits), id: subject.certifyingId, sig: subject.signature },
  ]);
}

/** (ASK, CEK), (OCA, OCA), (OCA, PEK), (CEK, PEK), (PEK, PDH): any non-empty slot of the subject may carry it. */
export function verifySevCertificate(signer: CaCertificate | SevCertificate, subject: SevCertificate): void {
  const key = 'keyId' in signer ? caSigner(signer) : sevSigner(signer);
  const candidates: Candidate[] = [];
  for (const slot of subject.sigs) {
    if (isEmptySignatureSlot(slot)) continue;
    const kind = algoKind(slot.algo);
    const hash = algoHash(slot.algo);
    if (kind !== undefined && hash !== undefined) candidates.push({ usage: slot.usage, kind, hash, id: undefined, sig: slot.sig });
  }
  check(key, usageName(subject.usage), sevSignedBody(subject), candidates);
}
