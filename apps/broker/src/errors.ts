import { randomBytes } from 'node:crypto';
import { status, type ServiceError, Metadata } from '@grpc/grpc-js';
import { isStoreError } from '@kb/store';

/**
 * What an untrusted caller (the host) may learn: the class of failure and a reference id. The owner finds the
 * reason under that reference in the broker log and audit trail. Messages for malformed input describe the input
 * format only — they say nothing about launches, policies or secrets.
 */
export type FailureClass = 'invalid' | 'denied' | 'exhausted' | 'timeout' | 'unavailable' | 'internal' | 'unauthenticated' | 'not-found' | 'conflict';

export class BrokerError extends Error {
  override readonly name = 'BrokerError';
  constructor(
    readonly kind: FailureClass,
    /** safe to return to the caller */
    readonly publicMessage: string,
    /** for the log / audit trail only */
    readonly detail: string = publicMessage,
    /** an HTTP API's own status and error type for this failure (the KBS protocol answers 401s, §7) */
    readonly http?: { status: number; type?: string },
  ) {
    super(detail);
  }
}

export const invalid = (msg: string) => new BrokerError('invalid', msg);
/** Attestation or policy refusal: the caller only learns that it failed. */
export const denied = (detail: string) => new BrokerError('denied', 'attestation failed', detail);

const CODES: Record<FailureClass, status> = {
  invalid: status.INVALID_ARGUMENT,
  denied: status.PERMISSION_DENIED,
  exhausted: status.RESOURCE_EXHAUSTED,
  timeout: status.DEADLINE_EXCEEDED,
  unavailable: status.UNAVAILABLE,
  internal: status.INTERNAL,
  // the owner calls of the attestation service (an owner's token, its own VMs); hosts never get these
  unauthenticated: status.UNAUTHENTICATED,
  'not-found': status.NOT_FOUND,
  conflict: status.ALREADY_EXISTS,
};

/** The call's deadline passed (info.signal aborted): whatever the handler was about to do is abandoned. */
export const timedOut = (detail: string) => new BrokerError('timeout', 'the broker did not answer in time; retry later', detail);

/**
 * A statement cancelled by PostgreSQL's statement timeout (the same --request-timeout) is the call's timeout, not a
 * bug: that failure as a timeout refusal (its transaction rolled back, so nothing it was writing happened); any other
 * failure unchanged.
 */
export function asTimeout(e: unknown): unknown {
  return isStoreError(e, 'ERR_STORE_TIMEOUT') ? timedOut(`a database statement was cancelled (${e.message}); nothing it was writing happened`) : e;
}

/** The database cannot be reached (refused, reset, pool gone, PGlite closed): the caller should retry, not report a bug. */
export const unavailable = (detail: string) => new BrokerError('unavailable', 'the key broker cannot serve this request now; retry later', detail);

/**
 * The one translation of store failures that are not the request's fault into a failure class: an unreachable
 * database is UNAVAILABLE, a cancelled statement the call's timeout (asTimeout); anything else unchanged (INTERNAL).
 */
export function fromStore(e: unknown): unknown {
  if (isStoreError(e, 'ERR_STORE_CONNECT') || isStoreError(e, 'ERR_STORE_CLOSED')) return unavailable(`the database is unreachable (${e.code}: ${e.message})`);
  return asTimeout(e);
}

export function newRefId(): string {
  return randomBytes(6).toString('hex');
}

export function toServiceError(e: BrokerError, refId: string): Partial<ServiceError> {
  const md = new Metadata();
  md.set('kb-ref', refId);
  return { code: CODES[e.kind], details: `${e.publicMessage} (ref ${refId})`, metadata: md };
}

/** The HTTP status of each failure class (the HTTP front-ends' CODES). */
const HTTP_STATUS: Record<FailureClass, number> = {
  invalid: 400,
  denied: 403,
  exhausted: 429,
  timeout: 504,
  unavailable: 503,
  internal: 500,
  unauthenticated: 401,
  'not-found': 404,
  conflict: 409,
};

const CLASS_OF_HTTP_STATUS = new Map(Object.entries(HTTP_STATUS).map(([k, v]) => [v, k as FailureClass]));
/** The failure class an HTTP front-end answers with `status` (the inverse of the table above); undefined if none. */
export function failureClassOfHttpStatus(status: number): FailureClass | undefined {
  return CLASS_OF_HTTP_STATUS.get(status);
}

export interface HttpFailure {
  status: number;
  /** the failure class, as named in the answer's body */
  error: FailureClass;
  /** safe to return: the public message and the reference */
  message: string;
  ref: string;
  /** the API's own error type, when the failure carried one (BrokerError.http) */
  type?: string;
}

/** What an HTTP caller learns of a failure: the same class, message and reference as a gRPC caller would. */
export function toHttpFailure(e: BrokerError, refId: string, status?: number): HttpFailure {
  return {
    status: status ?? e.http?.status ?? HTTP_STATUS[e.kind],
    error: e.kind,
    message: `${e.publicMessage} (ref ${refId})`,
    ref: refId,
    ...(e.http?.type !== undefined ? { type: e.http.type } : {}),
  };
}
