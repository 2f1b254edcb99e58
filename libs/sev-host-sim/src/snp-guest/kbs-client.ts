import { KbsProtocolError, runtimeDataDigest, selectedHash } from './binding';
import { TeeKeyPair } from './tee-key';

/**
 * The client side of the KBS protocol (RCAR) with the message shapes of guest-components' kbs_protocol 0.4.0
 * (../shared/specs/kbs-protocol.md): the cookie ("background-check") flow of §1.2 A — a resource GET that gets 401,
 * then /auth, /attest, and the GET again with the session cookie — and the Bearer-token flow of §1.2 B.
 *
 * Exact bytes: the Request body of §2.1, the Attestation body of §3.1 (members init-data, runtime-data, tee-evidence;
 * tee-pubkey members kty, crv, alg, x, y), the binding of §4, the token checks of §5.1, the JWE of §6.
 */
export const KBS_PROTOCOL_VERSION = '0.4.0';
export const SUPPORTED_HASH_ALGORITHMS = ['sha256', 'sha384', 'sha512', 'sm3'] as const;
const USER_AGENT = 'attestation-agent-kbs-client/0.1.0';
/** KBS_GET_RESOURCE_MAX_ATTEMPT (§7.3) */
const MAX_RESOURCE_ATTEMPTS = 3;

/** What a TEE attester provides: evidence bound to the digest of the runtime data (§4.2). */
export interface EvidenceProvider {
  tee: 'snp' | 'sample';
  evidence(runtimeDigest: Buffer): Promise<unknown>;
}

/** The sample TEE's evidence (§10): report_data = standard base64 of the digest, no padding to 64. */
export const sampleEvidenceProvider: EvidenceProvider = {
  tee: 'sample',
  evidence: async (d) => ({ svn: '1', report_data: d.toString('base64') }),
};

export interface KbsToken {
  token: string;
  exp?: number;
  nbf?: number;
  claims: Record<string, unknown>;
}

export interface KbsClientOptions {
  /** the TEE key; a fresh P-256 key per client by default, as the client does */
  teeKey?: TeeKeyPair;
  /** init-data document (TOML text) whose digest the host bound into HOST_DATA (§11) */
  initData?: string;
  /** an HTTP timeout per request (the client's is 60 s, §13) */
  timeoutMs?: number;
  /** transcript hook for demos and tests: every request and response, bodies as text */
  onExchange?: (e: { method: string; path: string; status: number; requestBody?: string; responseBody: string }) => void;
}

export class KbsClient {
  readonly teeKey: TeeKeyPair;
  private cookie?: { value: string; expiresAt: number };
  private tokenValue?: KbsToken;
  private readonly base: string;

  constructor(
    baseUrl: string,
    readonly provider: EvidenceProvider,
    private readonly opts: KbsClientOptions = {},
  ) {
    this.base = baseUrl.replace(/\/+$/, '');
    this.teeKey = opts.teeKey ?? new TeeKeyPair();
  }

  get token(): KbsToken | undefined {
    return this.tokenValue;
  }

  /** The Request body bytes of §2.1 (serde order version, tee, extra-params; compact). */
  requestBody(): string {
    return JSON.stringify({
      version: KBS_PROTOCOL_VERSION,
      tee: this.provider.tee,
      'extra-params': { 'supported-hash-algorithms': SUPPORTED_HASH_ALGORITHMS },
    });
  }

  /** The Attestation body of §3.1 for a challenge, with the evidence bound to it (§4). */
  async attestationBody(challenge: { nonce: string; 'extra-params'?: unknown }): Promise<string> {
    const teePubkey = this.teeKey.publicJwk();
    const additional = '';
    const digest = runtimeDataDigest({ nonce: challenge.nonce, teePubkey, additionalEvidence: additional }, selectedHash(challenge['extra-params']));
    const primary = await this.provider.evidence(digest);
    return JSON.stringify({
      'init-data': this.opts.initData === undefined ? null : { format: 'toml', body: this.opts.initData },
      'runtime-data': { nonce: challenge.nonce, 'tee-pubkey': teePubkey },
      'tee-evidence': { primary_evidence: primary, additional_evidence: additional },
    });
  }

  /** RCAR handshake: /auth then /attest; keeps the cookie and the token. */
  async attest(): Promise<KbsToken> {
    this.cookie = undefined;
    const auth = await this.http('POST', '/kbs/v0/auth', this.requestBody());
    if (auth.status !== 200) throw this.failure(auth, 'auth');
    const challenge = parseJson(auth.body, 'challenge') as Record<string, unknown>;
    if (typeof challenge.nonce !== 'string' || !('extra-params' in challenge))
      throw new KbsProtocolError('KBS_CHALLENGE', 'the challenge lacks nonce or extra-params', 200);
    const att = await this.http('POST', '/kbs/v0/attest', await this.attestationBody(challenge as { nonce: string; 'extra-params': unknown }));
    if (att.status !== 200) throw this.failure(att, 'attest');
    const t = (parseJson(att.body, 'attestation response') as Record<string, unknown>).token;
    if (typeof t !== 'string') throw new KbsProtocolError('KBS_TOKEN', 'the attestation response has no token', 200);
    this.tokenValue = decodeToken(t);
    return this.tokenValue;
  }

  /**
   * Flow A (§1.2): GET with whatever cookie the jar holds; a 401 starts one handshake and the GET is retried, at
   * most 3 GETs in all; 404 stops at once. Returns the decrypted resource bytes.
   */
  async getResource(path: string): Promise<Buffer> {
    // a token past exp (or before nbf) means a new handshake before the next use, as Token::check_valid does (§5.1)
    const t = this.tokenValue;
    const now = Date.now() / 1000;
    if (t && ((t.exp !== undefined && t.exp <= now) || (t.nbf !== undefined && t.nbf > now))) await this.attest();
    let last: KbsProtocolError | undefined;
    for (let i = 0; i < MAX_RESOURCE_ATTEMPTS; i++) {
      const res = await this.http('GET', `/kbs/v0/resource/${path}`);
      if (res.status === 200) return this.teeKey.decrypt(parseJson(res.body, 'JWE'));
      last = this.failure(res, 'resource');
      if (res.status !== 401) throw last;
      await this.attest();
    }
    throw last!;
  }

  /** Flow B (§1.2): the token as a Bearer credential, no cookie (what the CDH does with the AA's token). */
  async getResourceWithToken(path: string, token = this.tokenValue?.token): Promise<Buffer> {
    if (!token) throw new KbsProtocolError('KBS_TOKEN', 'no token: attest first');
    const res = await this.http('GET', `/kbs/v0/resource/${path}`, undefined, { authorization: `Bearer ${token}` }, false);
    if (res.status !== 200) throw this.failure(res, 'resource');
    return this.teeKey.decrypt(parseJson(res.body, 'JWE'));
  }

  private failure(res: { status: number; body: string }, step: string): KbsProtocolError {
    let info = '';
    try {
      const e = JSON.parse(res.body) as { type?: unknown; detail?: unknown };
      if (typeof e.type === 'string' && typeof e.detail === 'string') info = `${e.type.split('/').pop()}: ${e.detail}`;
    } catch {
      // not ErrorInformation: the client reports the text (§7.3)
    }
    const code = res.status === 401 ? 'KBS_UNAUTHORIZED' : res.status === 404 ? 'KBS_NOT_FOUND' : 'KBS_HTTP';
    return new KbsProtocolError(code, `${step}: HTTP ${res.status}${info ? ` (${info})` : res.body ? ` ${res.body.slice(0, 200)}` : ''}`, res.status);
  }

  private async http(
    method: string,
    path: string,
    body?: string,
    headers: Record<string, string> = {},
    withCookie = true,
  ): Promise<{ status: number; body: string }> {
    const h: Record<string, string> = { 'user-agent': USER_AGENT, ...headers };
    if (body !== undefined) h['content-type'] = 'application/json';
    if (withCookie && this.cookie && this.cookie.expiresAt > Date.now()) h.cookie = `kbs-session-id=${this.cookie.value}`;
    let res: Response;
    try {
      res = await fetch(`${this.base}${path}`, {
        method,
        headers: h,
        ...(body !== undefined ? { body } : {}),
        signal: AbortSignal.timeout(this.opts.timeoutMs ?? 60_000),
      });
    } catch (e) {
      throw new KbsProtocolError('KBS_HTTP', `${method} ${path}: ${(e as Error).message}`, undefined, { cause: e });
    }
    for (const c of res.headers.getSetCookie()) this.takeCookie(c);
    const text = await res.text();
    this.opts.onExchange?.({ method, path, status: res.status, ...(body !== undefined ? { requestBody: body } : {}), responseBody: text });
    return { status: res.status, body: text };
  }

  /** RFC 6265 enough for one cookie: Max-Age wins over Expires; no Secure handling (plain HTTP on loopback). */
  private takeCookie(header: string): void {
    const [pair, ...attrs] = header.split(';').map((s) => s.trim());
    const eq = pair!.indexOf('=');
    if (eq < 0 || pair!.slice(0, eq) !== 'kbs-session-id') return;
    let expiresAt = Number.POSITIVE_INFINITY;
    for (const a of attrs) {
      const [k, v = ''] = a.split('=');
      if (k!.toLowerCase() === 'expires' && expiresAt === Number.POSITIVE_INFINITY) expiresAt = Date.parse(v) || expiresAt;
    }
    for (const a of attrs) {
      const [k, v = ''] = a.split('=');
      if (k!.toLowerCase() === 'max-age' && /^-?\d+$/.test(v)) expiresAt = Date.now() + Number(v) * 1000;
    }
    this.cookie = { value: pair!.slice(eq + 1), expiresAt };
  }
}

function parseJson(text: string, what: string): unknown {
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new KbsProtocolError('KBS_RESPONSE', `the ${what} is not JSON`, undefined, { cause: e });
  }
}

/** Token::new of §5.1: at least two segments, the payload base64url without padding, integer time claims. */
export function decodeToken(token: string): KbsToken {
  const parts = token.split('.');
  if (parts.length < 2 || !/^[A-Za-z0-9_-]+$/.test(parts[1]!)) throw new KbsProtocolError('KBS_TOKEN', 'the token is not a JWS with a base64url payload');
  let claims: unknown;
  try {
    claims = JSON.parse(Buffer.from(parts[1]!, 'base64url').toString('utf8'));
  } catch (e) {
    throw new KbsProtocolError('KBS_TOKEN', 'the token payload is not JSON', undefined, { cause: e });
  }
  if (claims === null || typeof claims !== 'object' || Array.isArray(claims)) throw new KbsProtocolError('KBS_TOKEN', 'the token payload is not an object');
  const c = claims as Record<string, unknown>;
  for (const k of ['exp', 'nbf', 'iat']) {
    if (c[k] !== undefined && !(Number.isSafeInteger(c[k]) && (c[k] as number) >= 0))
      throw new KbsProtocolError('KBS_TOKEN', `the token's ${k} is not a non-negative integer`);
  }
  return { token, claims: c, ...(c.exp !== undefined ? { exp: c.exp as number } : {}), ...(c.nbf !== undefined ? { nbf: c.nbf as number } : {}) };
}
