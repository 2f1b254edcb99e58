import { verify, type KeyObject } from 'node:crypto';
import { ReportOffset, SNP_SIGNED_SIZE, type SnpReport } from './report';
import { isZeroRange } from './reserved';

/**
 * The report signature (../shared/specs/snp-attestation.md §2): ECDSA P-384 with SHA-384 over bytes 0x000–0x29F as
 * received. R and S are 72-byte little-endian fields of which the low 48 bytes are significant (the upper 24 are
 * MBZ-checked in step 3); reversing the low 48 gives the big-endian halves of an IEEE-P1363 signature, which avoids
 * DER's minimal-integer pitfalls.
 */
export function reportSignatureP1363(r: SnpReport): Buffer {
  return Buffer.concat([Buffer.from(r.signature.r.subarray(0, 48)).reverse(), Buffer.from(r.signature.s.subarray(0, 48)).reverse()]);
}

export function isZeroSignature(r: SnpReport): boolean {
  return (
    isZeroRange(r.raw, ReportOffset.SIGNATURE_R, ReportOffset.SIGNATURE_R + 72) || isZeroRange(r.raw, ReportOffset.SIGNATURE_S, ReportOffset.SIGNATURE_S + 72)
  );
}

/** True when the VEK's key signed the report. Never a prehashed API: node hashes the 672 bytes itself. */
export function verifyReportSignature(r: SnpReport, vekKey: KeyObject): boolean {
  return verify('sha384', r.raw.subarray(0, SNP_SIGNED_SIZE), { key: vekKey, dsaEncoding: 'ieee-p1363' }, reportSignatureP1363(r));
}
