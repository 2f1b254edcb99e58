import { createHash } from 'node:crypto';
import { AsnConvert } from '@peculiar/asn1-schema';
import { CertificateList } from '@peculiar/asn1-x509';
import { SnpError } from './errors';
import { assertSingleTlv, serialHex } from './certificate';
import { isPinnedPssAlgorithm, verifyPss, type VerifiedChain } from './chain';
import { derOf } from './pem';

/**
 * AMD's certificate revocation lists (../shared/specs/snp-attestation.md §4.6): one X.509 CRL per product and
 * endorser, signed by the ARK (RSASSA-PSS like the certificates). The broker's checks, in order: the issuer is the
 * pinned ARK → the PSS signature with the ARK key → thisUpdate ≤ now < nextUpdate → neither the intermediate (ASK or
 * ASVK) nor the VEK in use is listed.
 *
 * AMD is not expected to revoke individual VEKs (they are replaced by a TCB change, and every VEK has serial 0), but a
 * listed VEK serial is refused too: the CRL is treated as covering the whole chain of its ARK.
 */
export interface SnpCrl {
  der: Buffer;
  sha256: string;
  tbs: Buffer;
  issuerName: Buffer;
  signatureAlgorithm: Buffer;
  tbsSignatureAlgorithm: Buffer;
  signature: Buffer;
  thisUpdate: Date;
  nextUpdate?: Date;
  /** serials (lowercase hex, no leading zero bytes) */
  revoked: ReadonlySet<string>;
}

/** `require`: no applicable valid CRL fails; `if-available` (default): used when supplied; `off`: not consulted. */
export type SnpCrlMode = 'require' | 'if-available' | 'off';

export function parseSnpCrl(input: Uint8Array): SnpCrl {
  try {
    const der = derOf(input, 'X509 CRL', 'CRL');
    assertSingleTlv(der);
    const l = AsnConvert.parse(der, CertificateList);
    const t = l.tbsCertList;
    if (!l.tbsCertListRaw) throw new Error('no tbsCertList bytes');
    return {
      der,
      sha256: createHash('sha256').update(der).digest('hex'),
      tbs: Buffer.from(l.tbsCertListRaw),
      issuerName: Buffer.from(AsnConvert.serialize(t.issuer)),
      signatureAlgorithm: Buffer.from(AsnConvert.serialize(l.signatureAlgorithm)),
      tbsSignatureAlgorithm: Buffer.from(AsnConvert.serialize(t.signature)),
      signature: Buffer.from(l.signature),
      thisUpdate: t.thisUpdate.getTime(),
      ...(t.nextUpdate ? { nextUpdate: t.nextUpdate.getTime() } : {}),
      revoked: new Set((t.revokedCertificates ?? []).map((r) => serialHex(r.userCertificate))),
    };
  } catch (e) {
    throw new SnpError('SNP_CRL_UNAVAILABLE', `the CRL cannot be parsed: ${(e as Error).message}`, { cause: e });
  }
}

export interface RevocationOutcome {
  /** false when no CRL was consulted (mode off, or none supplied in if-available mode) */
  checked: boolean;
  detail: string;
}

const goodSignatures = new WeakMap<object, Set<string>>();

/**
 * Step 9's revocation part. CRLs issued by another ARK (another generation) are ignored; an applicable CRL that is
 * badly signed always fails; an expired one fails in `require` mode and is still read for revocations otherwise
 * (a revocation does not expire with its list).
 */
export function checkRevocation(chain: VerifiedChain, crls: readonly SnpCrl[], mode: SnpCrlMode, now: Date): RevocationOutcome {
  if (mode === 'off') return { checked: false, detail: 'CRL check off' };
  const ark = chain.ark;
  const mine = crls.filter((c) => c.issuerName.equals(ark.subjectName));
  if (mine.length === 0) {
    if (mode === 'require') throw new SnpError('SNP_CRL_UNAVAILABLE', `no CRL issued by ${ark.subjectCn} was supplied`);
    return { checked: false, detail: `no CRL issued by ${ark.subjectCn} supplied (not checked)` };
  }
  const notes: string[] = [];
  for (const crl of mine) {
    let ok = goodSignatures.get(ark);
    if (!ok?.has(crl.sha256)) {
      if (!isPinnedPssAlgorithm(crl.signatureAlgorithm) || !crl.signatureAlgorithm.equals(crl.tbsSignatureAlgorithm)) {
        throw new SnpError('SNP_CRL_UNAVAILABLE', `the CRL of ${ark.subjectCn} is not signed with AMD's RSASSA-PSS algorithm identifier`);
      }
      if (!verifyPss(crl.tbs, crl.signature, ark.publicKey))
        throw new SnpError('SNP_CRL_UNAVAILABLE', `the CRL's signature does not verify under ${ark.subjectCn}`);
      if (!ok) goodSignatures.set(ark, (ok = new Set()));
      ok.add(crl.sha256);
    }
    const t = now.getTime();
    const stale =
      crl.thisUpdate.getTime() > t
        ? 'not yet valid'
        : crl.nextUpdate && t >= crl.nextUpdate.getTime()
          ? `expired at ${crl.nextUpdate.toISOString()}`
          : undefined;
    if (stale && mode === 'require') throw new SnpError('SNP_CRL_UNAVAILABLE', `the CRL of ${ark.subjectCn} is ${stale}`);
    const role = chain.kind === 'vcek' ? 'ASK' : 'ASVK';
    if (crl.revoked.has(chain.intermediate.serial)) {
      throw new SnpError(
        'SNP_REVOKED',
        `the ${role} ${chain.intermediate.subjectCn} (serial 0x${chain.intermediate.serial}) is revoked by the CRL of ${ark.subjectCn}`,
      );
    }
    if (crl.revoked.has(chain.vek.serial)) {
      throw new SnpError('SNP_REVOKED', `the ${chain.kind.toUpperCase()} (serial 0x${chain.vek.serial}) is revoked by the CRL of ${ark.subjectCn}`);
    }
    notes.push(
      `${role} and ${chain.kind.toUpperCase()} not revoked (CRL of ${crl.thisUpdate.toISOString().slice(0, 10)}, ${crl.revoked.size} entries${stale ? `; ${stale}` : ''})`,
    );
  }
  return { checked: true, detail: notes.join('; ') };
}
