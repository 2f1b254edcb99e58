/**
 * What the three KBS steps share: the store, the audit trail, the clock, the options and the token signer (its key
 * loaded from the store once, on first use).
 */
import type { SnpRoots } from '@kb/sev';
import type { AuditEntryInput, Store } from '@kb/store';
import type { CertificateSource } from './certificate-source';
import { newTokenKey, TokenSigner } from './token';

export const KBS_PROTOCOL_VERSION = '0.4.0';
export const KBS_SESSION_COOKIE = 'kbs-session-id';

export interface KbsOptions {
  /** accept the test-only `sample` TEE (§10); off by default, never for resources that name a policy */
  sampleTee: boolean;
  /** handshake session lifetime, fixed at /auth (§2.6; trustee's default 5 min) */
  sessionTtlSeconds: number;
  /** token lifetime; ≥ the session's, so a cookie session never outlives its token (§15 #14) */
  tokenTtlSeconds: number;
  /** the tenant default policy, which applies to every SNP release as it does to SEV ones */
  defaultPolicy: string;
  certificates: CertificateSource;
  /** SNP roots other than AMD's pinned ones (the simulator's synthetic chain), by explicit configuration only */
  snpRoots?: SnpRoots;
  allowV2Reports?: boolean;
}

export interface KbsDeps {
  store: Store;
  audit: { record(entry: AuditEntryInput): void };
  now: () => Date;
  options: KbsOptions;
  signer(): Promise<TokenSigner>;
}

/** The broker's token signer with its key sealed in the store (made on first use, shared by replicas). */
export function storeTokenSigner(store: Store): () => Promise<TokenSigner> {
  let signer: Promise<TokenSigner> | undefined;
  return () => {
    signer ??= store.kbsTokenKey(newTokenKey).then((der) => new TokenSigner(der));
    signer.catch(() => {
      signer = undefined; // a database outage at first use is retried on the next request
    });
    return signer;
  };
}

/** What a step hands to the HTTP layer on success. */
export interface KbsReply {
  body: unknown;
  /** Set-Cookie kbs-session-id (§2.6) */
  cookie?: { id: string; expires: Date; now: Date };
}

/** Per request: who asked, and the reference an error or audit entry carries. */
export interface KbsRequestMeta {
  peer: string;
  ref: string;
  /** throws if the call can no longer be answered (its deadline passed, the client left): checked before a step with lasting effects */
  checkDeadline?: (before: string) => void;
}

/**
 * The Set-Cookie value (§2.6): trustee's name and Expires, plus Path=/kbs/v0 (covers /attest and /resource/),
 * Max-Age (RFC 6265 clients prefer it, so the guest clock does not matter) and HttpOnly; never Secure, which would
 * stop the cookie over plain HTTP.
 */
export function sessionCookie(c: NonNullable<KbsReply['cookie']>): string {
  const maxAge = Math.max(0, Math.floor((c.expires.getTime() - c.now.getTime()) / 1000));
  return `${KBS_SESSION_COOKIE}=${c.id}; Expires=${c.expires.toUTCString()}; Max-Age=${maxAge}; Path=/kbs/v0; HttpOnly`;
}

/** The session id from a Cookie header (the last kbs-session-id wins, as a cookie jar would send the newest). */
export function sessionIdFromCookie(header: string | undefined): string | undefined {
  if (!header) return undefined;
  let id: string | undefined;
  for (const part of header.split(';')) {
    const eq = part.indexOf('=');
    if (eq > 0 && part.slice(0, eq).trim() === KBS_SESSION_COOKIE) id = part.slice(eq + 1).trim();
  }
  return id;
}
