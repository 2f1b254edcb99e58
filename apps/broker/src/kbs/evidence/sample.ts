/**
 * The test-only `sample` TEE (../shared/specs/kbs-protocol.md §10): `{"svn", "report_data": base64(digest)}`, no
 * signature. Accepted only when the operator enabled it (`--kbs-sample-tee`), and never for a resource that names an
 * SNP policy: sample evidence proves nothing (§15 #19).
 */
import { timingSafeEqual } from 'node:crypto';
import { KbsError } from '../errors';
import { deviceBindingDigest, type TeePubKey } from '../binding';

const B64 = /^[A-Za-z0-9+/]*={0,2}$/;

function reportDataOf(evidence: unknown, what: string): Buffer {
  if (typeof evidence !== 'object' || evidence === null || Array.isArray(evidence))
    throw new KbsError('AttestationError', `${what} evidence must be an object`);
  const rd = (evidence as Record<string, unknown>).report_data ?? '';
  if (typeof rd !== 'string' || !B64.test(rd) || rd.length % 4 !== 0) throw new KbsError('AttestationError', `${what} report_data must be standard base64`);
  return Buffer.from(rd, 'base64');
}

function equal(a: Buffer, b: Buffer): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}

export function verifySampleEvidence(evidence: unknown, expected: Buffer): Record<string, unknown> {
  if (!equal(reportDataOf(evidence, 'sample'), expected))
    throw new KbsError('AttestationError', 'sample report_data is not the binding of the session nonce and tee-pubkey');
  const e = evidence as Record<string, unknown>;
  return { svn: e.svn ?? null, report_data: e.report_data, launch_digest: 'abcde', platform_version: { major: 1, minor: 4 }, debug: false };
}

/** §4.4: `additional_evidence` as `{"sampledevice": {...}}`, each bound with the two-member digest. */
export function verifyAdditionalEvidence(text: string, key: TeePubKey, nonce: string, sampleEnabled: boolean): void {
  if (text === '') return;
  let devices: unknown;
  try {
    devices = JSON.parse(text);
  } catch {
    throw new KbsError('AttestationError', 'additional_evidence is not JSON text');
  }
  if (typeof devices !== 'object' || devices === null || Array.isArray(devices))
    throw new KbsError('AttestationError', 'additional_evidence must be a JSON object of device evidence');
  for (const [tee, ev] of Object.entries(devices)) {
    if (tee !== 'sampledevice' || !sampleEnabled) throw new KbsError('AttestationError', `additional evidence of '${tee}' is not supported`);
    if (!equal(reportDataOf(ev, 'sampledevice'), deviceBindingDigest(key, nonce)))
      throw new KbsError('AttestationError', 'sampledevice report_data is not the device binding');
  }
}
