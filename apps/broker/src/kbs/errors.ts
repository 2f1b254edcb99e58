/**
 * The KBS error body (../shared/specs/kbs-protocol.md §7): every non-200 answer carries
 * `{"type": ".../errors/<Type>", "detail": "..."}`, because the cookie client only starts its handshake after a 401
 * whose body parses as ErrorInformation (§1.2, §15 #1). The guest is untrusted: `detail` names the class of failure
 * and a reference only; the reason goes to the audit trail under that reference (§7.4, §15 #22).
 */
export const KBS_ERROR_TYPE_PREFIX = 'https://github.com/confidential-containers/kbs/errors/';

export type KbsErrorType =
  | 'AttestationError'
  | 'TokenNotFound'
  | 'TokenVerifierError'
  | 'PolicyDeny'
  | 'PluginInternalError'
  | 'ResourceNotFound'
  | 'JweError'
  | 'PluginNotFound'
  | 'InvalidRequest'
  | 'Unavailable'
  | 'InternalError';

/** Status per class (§7.4): credentials and attestation 401 (the client re-attests), a policy refusal 403 (the client
 * stops at once instead of re-attesting three times), a missing resource 404, a malformed path 400. */
const STATUS: Record<KbsErrorType, number> = {
  AttestationError: 401,
  TokenNotFound: 401,
  TokenVerifierError: 401,
  PolicyDeny: 403,
  PluginInternalError: 401,
  ResourceNotFound: 404,
  JweError: 401,
  PluginNotFound: 404,
  InvalidRequest: 400,
  Unavailable: 503,
  InternalError: 500,
};

/** Public detail per class: no policy internals, no evidence contents. */
const DETAIL: Record<KbsErrorType, string> = {
  AttestationError: 'Attestation error: RCAR handshake failed',
  TokenNotFound: 'Attestation Token not found',
  TokenVerifierError: 'Token Verifier error',
  PolicyDeny: 'Access denied by policy',
  PluginInternalError: 'Plugin internal error',
  ResourceNotFound: 'Resource not found',
  JweError: 'JWE failed',
  PluginNotFound: 'Plugin not found',
  InvalidRequest: 'Invalid request',
  Unavailable: 'The key broker cannot serve this request now; retry later',
  InternalError: 'Internal error',
};

export class KbsError extends Error {
  override readonly name = 'KbsError';
  constructor(
    readonly type: KbsErrorType,
    /** for the audit trail and log only */
    readonly reason: string,
    /** replaces the class's public detail (only for texts clients look for, e.g. the version mismatch of §2.2) */
    readonly publicDetail: string = DETAIL[type],
    options?: { cause?: unknown },
  ) {
    super(reason, options);
  }

  get status(): number {
    return STATUS[this.type];
  }
}

export const isKbsError = (e: unknown): e is KbsError => e instanceof KbsError;

export interface ErrorInformation {
  type: string;
  detail: string;
}

/** The §7.1 body, with the reference the owner looks up with `kbctl audit --ref`. */
export function errorBody(e: KbsError, ref: string): ErrorInformation {
  return { type: `${KBS_ERROR_TYPE_PREFIX}${e.type}`, detail: `${e.publicDetail} (ref ${ref})` };
}
