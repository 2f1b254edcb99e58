import { constants, verify, type KeyObject } from 'node:crypto';
import { SnpError } from './errors';
import type { SnpCertificate } from './certificate';
import { SNP_PRODUCT_NAME, type SnpGeneration } from './generation';
import type { SnpRootSet } from './roots';

/**
 * The chain ARK → ASK → VCEK or ARK → ASVK → VLEK (../shared/specs/snp-attestation.md §3.1, checklist step 8).
 * Every link is RSASSA-PSS / SHA-384 / MGF1-SHA-384 / salt 48 under an RSA-4096 key. node:crypto's
 * X509Certificate.verify would trust whatever parameters a certificate states, so the signatureAlgorithm bytes are
 * pinned to the two encodings AMD uses and the PSS parameters are passed explicitly.
 */
export const PSS_ALGORITHM_IDENTIFIERS: readonly string[] = [
  // explicit trailerField 1: all ARK/ASK/ASVK, VCEKs issued up to 2023
  '304606092a864886f70d01010a3039a00f300d06096086480165030402020500a11c301a06092a864886f70d010108300d06096086480165030402020500a203020130a303020101',
  // no trailerField: VCEKs from November 2024, the 2024 VLEK
  '304106092a864886f70d01010a3034a00f300d06096086480165030402020500a11c301a06092a864886f70d010108300d06096086480165030402020500a203020130',
];

export type VekKind = 'vcek' | 'vlek';

export interface VerifiedChain {
  generation: SnpGeneration;
  kind: VekKind;
  ark: SnpCertificate;
  intermediate: SnpCertificate;
  vek: SnpCertificate;
}

export function isPinnedPssAlgorithm(algorithmDer: Buffer): boolean {
  return PSS_ALGORITHM_IDENTIFIERS.includes(algorithmDer.toString('hex'));
}

export function verifyPss(signed: Buffer, signature: Buffer, key: KeyObject): boolean {
  try {
    return verify('sha384', signed, { key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: 48 }, signature);
  } catch {
    return false; // a non-RSA key or a malformed signature is simply not a valid signature here
  }
}

/** VEK kind from its subject CN (§3.3); anything else is not a VEK. */
export function vekKindOf(vek: SnpCertificate): VekKind | undefined {
  return vek.subjectCn === 'SEV-VCEK' ? 'vcek' : vek.subjectCn === 'SEV-VLEK' ? 'vlek' : undefined;
}

const profileOk = new WeakSet<SnpCertificate>();

function checkProfile(c: SnpCertificate, what: string): void {
  if (profileOk.has(c)) return;
  if (!isPinnedPssAlgorithm(c.signatureAlgorithm) || !c.signatureAlgorithm.equals(c.tbsSignatureAlgorithm)) {
    throw new SnpError('SNP_CERT_PROFILE', `${what} is not signed with AMD's RSASSA-PSS/SHA-384/salt-48 algorithm identifier`);
  }
  profileOk.add(c);
}

function isRsa4096(k: KeyObject): boolean {
  return (k.asymmetricKeyType === 'rsa' || k.asymmetricKeyType === 'rsa-pss') && k.asymmetricKeyDetails?.modulusLength === 4096;
}

/** Memo of links already verified: issuer object → subjects' SHA-256. Parsed certificates are shared, frozen objects. */
const verifiedLinks = new WeakMap<SnpCertificate, Set<string>>();
const LINKS_MAX = 4096;

function linkVerifies(subject: SnpCertificate, issuer: SnpCertificate): boolean {
  let set = verifiedLinks.get(issuer);
  if (set?.has(subject.sha256)) return true;
  if (!isRsa4096(issuer.publicKey) || !verifyPss(subject.tbs, subject.signature, issuer.publicKey)) return false;
  if (!set) verifiedLinks.set(issuer, (set = new Set()));
  if (set.size >= LINKS_MAX) set.clear();
  set.add(subject.sha256);
  return true;
}

/** Whether the generation's pinned intermediate for `kind` signed the VEK (used to tell Milan from Genoa on v2). */
export function pinnedIntermediateSigns(roots: SnpRootSet, kind: VekKind, vek: SnpCertificate): boolean {
  return linkVerifies(vek, kind === 'vcek' ? roots.ask : roots.asvk);
}

/**
 * Step 8 for one generation: (a) a supplied ARK must be the pinned one (same DER or same public key); (b) the
 * intermediate is the pinned ASK/ASVK, or a supplied one that the pinned ARK signed; (c) CNs and algorithm
 * identifiers as AMD issues them; (d) the PSS signatures. Links already verified are memoised, so a cached chain
 * costs a hash lookup.
 */
export function verifySnpChain(
  generation: SnpGeneration,
  roots: SnpRootSet,
  vek: SnpCertificate,
  supplied: { ark?: SnpCertificate; intermediate?: SnpCertificate } = {},
): VerifiedChain {
  const product = SNP_PRODUCT_NAME[generation];
  const { ark } = roots;
  if (supplied.ark && supplied.ark.sha256 !== ark.sha256 && !supplied.ark.spki.equals(ark.spki)) {
    throw new SnpError('SNP_ARK_MISMATCH', `the supplied ARK (${supplied.ark.subjectCn ?? 'no CN'}) is not the pinned ARK-${product}`);
  }
  const kind = vekKindOf(vek);
  if (!kind) throw new SnpError('SNP_CERT_PROFILE', `the VEK's subject CN is ${JSON.stringify(vek.subjectCn)}, expected SEV-VCEK or SEV-VLEK`);
  checkProfile(ark, `ARK-${product}`);
  if (!linkVerifies(ark, ark)) throw new SnpError('SNP_CHAIN_SIGNATURE', `the ${product} ARK's self-signature does not verify`);

  const pinnedIntermediate = kind === 'vcek' ? roots.ask : roots.asvk;
  const role = kind === 'vcek' ? 'ASK' : 'ASVK';
  let intermediate = pinnedIntermediate;
  if (supplied.intermediate && supplied.intermediate.sha256 !== pinnedIntermediate.sha256) {
    const i = supplied.intermediate;
    const cn = kind === 'vcek' ? `SEV-${product}` : `SEV-VLEK-${product}`;
    // another generation's (or role's) intermediate cannot have signed this chain: a chain failure, like its signature
    if (i.subjectCn !== cn) throw new SnpError('SNP_CHAIN_SIGNATURE', `the supplied ${role} is ${JSON.stringify(i.subjectCn)}, not ${cn}`);
    checkProfile(i, `the supplied ${role}`);
    if (!linkVerifies(i, ark)) throw new SnpError('SNP_CHAIN_SIGNATURE', `the supplied ${role} is not signed by the pinned ARK-${product}`);
    intermediate = i;
  } else {
    checkProfile(intermediate, `${role}-${product}`);
    if (!linkVerifies(intermediate, ark)) throw new SnpError('SNP_CHAIN_SIGNATURE', `the pinned ${role} is not signed by ARK-${product}`);
  }

  checkProfile(vek, `the ${kind.toUpperCase()}`);
  if (vek.issuerCn !== intermediate.subjectCn) {
    throw new SnpError(
      'SNP_CHAIN_SIGNATURE',
      `the ${kind.toUpperCase()} was issued by ${JSON.stringify(vek.issuerCn)}, not by ${intermediate.subjectCn} (${product} ${role})`,
    );
  }
  if (!linkVerifies(vek, intermediate)) {
    throw new SnpError('SNP_CHAIN_SIGNATURE', `the ${kind.toUpperCase()}'s signature does not verify under the ${product} ${role}`);
  }
  return { generation, kind, ark, intermediate, vek };
}
