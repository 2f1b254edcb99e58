/**
 * Every invalid policy document is rejected with a PolicyError carrying a stable code and the offending field, so the
 * admin API can answer "which field, what is wrong" without parsing messages, and nothing malformed is ever stored.
 * Evaluation never throws: a refused launch is a result, not an error.
 */
export type PolicyErrorCode =
  | 'ERR_POLICY_TYPE' // a value has the wrong JSON type
  | 'ERR_POLICY_RANGE' // a number is not an integer in the allowed range, or sets bits that must be zero
  | 'ERR_POLICY_FORMAT' // a string is not in the expected format (hex, base64, timestamp, identity)
  | 'ERR_POLICY_LENGTH' // a launch digest decodes to the wrong number of bytes
  | 'ERR_POLICY_EMPTY' // an empty list, which would be ambiguous between "nothing" and "anything"
  | 'ERR_POLICY_UNKNOWN_FIELD' // a field this version does not define (typo or a newer document)
  | 'ERR_POLICY_MISSING_FIELD' // a required field is absent
  | 'ERR_POLICY_VERSION' // an unsupported document version
  | 'ERR_POLICY_CONFLICT'; // fields that contradict each other, so no launch could ever pass

export class PolicyError extends Error {
  override readonly name = 'PolicyError';
  constructor(
    readonly code: PolicyErrorCode,
    message: string,
    /** The offending field as a path into the document (`allowedDigests[2]`), when there is one. */
    readonly field?: string,
  ) {
    super(message);
  }
}

export function isPolicyError(e: unknown, code?: PolicyErrorCode): e is PolicyError {
  return e instanceof PolicyError && (code === undefined || e.code === code);
}
