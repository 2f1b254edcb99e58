import { createHash } from 'node:crypto';

/**
 * The binding of the KBS nonce and the TEE public key into the evidence (../shared/specs/kbs-protocol.md §4):
 * HASH(JCS({"tee-pubkey", "nonce", "additional-evidence"})), SHA-384 unless the challenge selected another
 * algorithm (§2.5). For the values that occur here (strings and nested objects of strings) RFC 8785 JCS is a
 * recursive key sort followed by JSON.stringify (§4.1).
 */
export type KbsHashAlgorithm = 'sha256' | 'sha384' | 'sha512';

export function canonicalJson(value: unknown): string {
  const sort = (v: unknown): unknown => {
    if (Array.isArray(v)) return v.map(sort);
    if (v !== null && typeof v === 'object') {
      // JCS sorts by UTF-16 code units, which is what the default string comparison does
      return Object.fromEntries(
        Object.keys(v as object)
          .sort()
          .map((k) => [k, sort((v as Record<string, unknown>)[k])]),
      );
    }
    return v;
  };
  return JSON.stringify(sort(value));
}

export interface RuntimeData {
  nonce: string;
  teePubkey: Record<string, string>;
  /** the additional_evidence string exactly as sent ("" when there are no devices) */
  additionalEvidence?: string;
}

/** The digest a guest puts into its evidence for this runtime data (§4.1). */
export function runtimeDataDigest(rd: RuntimeData, hash: KbsHashAlgorithm = 'sha384'): Buffer {
  const obj = { 'tee-pubkey': rd.teePubkey, nonce: rd.nonce, 'additional-evidence': rd.additionalEvidence ?? '' };
  return createHash(hash).update(canonicalJson(obj), 'utf8').digest();
}

/** SNP REPORT_DATA: the digest right-padded with zero bytes to 64 (§4.2; more than 64 is refused, as the attester does). */
export function snpReportData(digest: Uint8Array): Buffer {
  if (digest.length > 64) throw new RangeError(`a ${digest.length}-byte digest does not fit REPORT_DATA`);
  const b = Buffer.alloc(64);
  b.set(digest);
  return b;
}

/** The hash the challenge selects (§2.5): `extra-params.selected-hash-algorithm` if present, else SHA-384. */
export function selectedHash(extraParams: unknown): KbsHashAlgorithm {
  if (extraParams === null || typeof extraParams !== 'object' || Array.isArray(extraParams)) return 'sha384';
  const v = (extraParams as Record<string, unknown>)['selected-hash-algorithm'];
  if (v === undefined) return 'sha384';
  if (typeof v !== 'string') throw new KbsProtocolError('KBS_CHALLENGE', 'selected-hash-algorithm is not a string');
  const name = v.toLowerCase();
  if (name === 'sha256' || name === 'sha384' || name === 'sha512') return name;
  throw new KbsProtocolError('KBS_CHALLENGE', `the challenge selects an unsupported hash algorithm ${JSON.stringify(v)}`);
}

export type KbsClientErrorCode =
  'KBS_CHALLENGE' | 'KBS_HTTP' | 'KBS_UNAUTHORIZED' | 'KBS_NOT_FOUND' | 'KBS_TOKEN' | 'KBS_JWE' | 'KBS_RESPONSE' | 'KBS_EVIDENCE';

export class KbsProtocolError extends Error {
  constructor(
    readonly code: KbsClientErrorCode,
    message: string,
    readonly status?: number,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'KbsProtocolError';
  }
}
