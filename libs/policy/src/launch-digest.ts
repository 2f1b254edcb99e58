import { PolicyError } from './errors';
import { jsonType, show } from './describe';

/** SEV and SEV-ES launch digests are SHA-256 (AMD SEV API, LAUNCH_MEASURE). */
export const LAUNCH_DIGEST_BYTES = 32;

const HEX_RE = /^[0-9a-fA-F]*$/;
const BASE64_RE = /^[A-Za-z0-9+/]*={0,2}$/;

function lengthHint(bytes: number): string {
  // An SNP digest is the likeliest wrong paste: say so instead of only giving a number.
  return bytes === 48 ? ' (48 bytes is an SEV-SNP SHA-384 digest; this broker serves SEV and SEV-ES only)' : '';
}

/**
 * Normalises an owner-supplied digest to lowercase hex. Hex (what sevctl/sev-snp-measure print) and standard padded
 * base64 (what simple-kbs stores and the kata shim sends as FwDigest) are both accepted; the two cannot be confused
 * because 32 bytes are 64 hex digits but 44 base64 characters ending in "=".
 */
export function normaliseDigest(value: unknown, field: string): string {
  if (typeof value !== 'string') {
    throw new PolicyError('ERR_POLICY_TYPE', `${field} must be a string (hex or base64), got ${jsonType(value)}`, field);
  }
  if (value === '') throw new PolicyError('ERR_POLICY_FORMAT', `${field} is an empty string, expected a launch digest`, field);
  if (HEX_RE.test(value) && value.length % 2 === 0) {
    const bytes = value.length / 2;
    if (bytes !== LAUNCH_DIGEST_BYTES) {
      throw new PolicyError(
        'ERR_POLICY_LENGTH',
        `${field} is ${bytes} bytes of hex, a launch digest is ${LAUNCH_DIGEST_BYTES} bytes (64 hex digits)${lengthHint(bytes)}`,
        field,
      );
    }
    return value.toLowerCase();
  }
  if (BASE64_RE.test(value) && value.length % 4 === 0) {
    const raw = Buffer.from(value, 'base64');
    // Buffer's decoder ignores stray trailing bits; re-encoding catches strings that are not the one encoding of raw.
    if (raw.toString('base64') !== value) {
      throw new PolicyError('ERR_POLICY_FORMAT', `${field} ${show(value)} is not canonical base64`, field);
    }
    if (raw.length !== LAUNCH_DIGEST_BYTES) {
      throw new PolicyError(
        'ERR_POLICY_LENGTH',
        `${field} is base64 of ${raw.length} bytes, a launch digest is ${LAUNCH_DIGEST_BYTES} bytes${lengthHint(raw.length)}`,
        field,
      );
    }
    return raw.toString('hex');
  }
  throw new PolicyError(
    'ERR_POLICY_FORMAT',
    `${field} ${show(value)} is neither hex (64 digits) nor standard padded base64 of ${LAUNCH_DIGEST_BYTES} bytes`,
    field,
  );
}

/** The launch digest fact as lowercase hex, or why it is unusable (a refusal reason, never an exception). */
export function digestFact(value: unknown): { hex: string } | { problem: string } {
  if (value instanceof Uint8Array) {
    if (value.length !== LAUNCH_DIGEST_BYTES) {
      return { problem: `launchDigest is ${value.length} bytes, expected ${LAUNCH_DIGEST_BYTES}` };
    }
    return { hex: Buffer.from(value.buffer, value.byteOffset, value.byteLength).toString('hex') };
  }
  if (typeof value === 'string') {
    if (value.length === 2 * LAUNCH_DIGEST_BYTES && HEX_RE.test(value)) return { hex: value.toLowerCase() };
    return { problem: `launchDigest ${show(value)} is not ${LAUNCH_DIGEST_BYTES} bytes of hex` };
  }
  return { problem: `launchDigest must be a Buffer or hex string, got ${jsonType(value)}` };
}
