/**
 * Failures of SEV-SNP attestation-report verification. Each code names one check of the ordered checklist in
 * ../shared/specs/snp-attestation.md §5.2 (the step is in `SNP_ERROR_STEP`), so callers map them to exit codes,
 * audit reasons or policy classes without parsing messages. Codes are stable: tests and the CLI's --json output use them.
 */
export const SNP_ERROR_STEP = {
  SNP_EVIDENCE_FORMAT: 1, // evidence JSON that does not describe a report (trustee's SnpEvidence form, §4.5)
  SNP_REPORT_SIZE: 1,
  SNP_REPORT_VERSION: 2,
  SNP_REPORT_RESERVED: 3,
  SNP_SIG_ALGO: 4,
  SNP_UNSIGNED: 5,
  SNP_GENERATION: 6,
  SNP_VEK_MISSING: 7,
  SNP_CERT_PARSE: 7,
  SNP_ARK_MISMATCH: 8,
  SNP_CERT_PROFILE: 8, // also step 11 (structVersion and extension-set rules of §3.6)
  SNP_CHAIN_SIGNATURE: 8,
  SNP_CERT_VALIDITY: 9,
  SNP_REVOKED: 9,
  SNP_CRL_UNAVAILABLE: 9,
  SNP_REPORT_SIGNATURE: 10,
  SNP_SIGNER_MISMATCH: 11,
  SNP_PRODUCT_MISMATCH: 11,
  SNP_TCB_MISMATCH: 11,
  SNP_CHIP_ID_MISMATCH: 11,
  SNP_CHIP_ID_MASKED: 11,
  SNP_VLEK_CSP: 11,
  SNP_REPORT_DATA: 12,
  SNP_VMPL: 14,
  SNP_MEASUREMENT: 16,
  SNP_ARGUMENT: 0, // the caller's input, not the evidence (bad option values)
} as const;

export type SnpErrorCode = keyof typeof SNP_ERROR_STEP;

export class SnpError extends Error {
  override readonly name = 'SnpError';
  constructor(
    readonly code: SnpErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }

  /** The checklist step (§5.2) this failure belongs to. */
  get step(): number {
    return SNP_ERROR_STEP[this.code];
  }
}

export function isSnpError(e: unknown, code?: SnpErrorCode): e is SnpError {
  return e instanceof SnpError && (code === undefined || e.code === code);
}
