/**
 * A test guest client speaking the KBS protocol the way guest-components' kbs_protocol does (§1.2): a cookie jar,
 * the first resource GET before any handshake, `{"version":"0.4.0",...}` requests, and the client's own binding and
 * JWE decryption (support/client.ts). The transport is a function, so the same client runs over real HTTP.
 */
import type { KeyObject } from 'node:crypto';
import { clientDecrypt, newTeeKey, sampleAttestation, type ClientJwe } from './client';

export interface Wire {
  (
    method: 'GET' | 'POST',
    path: string,
    opts: { cookie?: string; authorization?: string; body?: string | Buffer; contentType?: string },
  ): Promise<{ status: number; headers: Record<string, string | undefined>; body: string }>;
}

export const AUTH_BODY_SAMPLE = '{"version":"0.4.0","tee":"sample","extra-params":{"supported-hash-algorithms":["sha256","sha384","sha512","sm3"]}}';

export class KbsTestClient {
  cookie: string | undefined;
  token: string | undefined;
  nonce: string | undefined;
  readonly key: { privateKey: KeyObject; jwk: Record<string, string> };

  constructor(
    readonly wire: Wire,
    key?: { privateKey: KeyObject; jwk: Record<string, string> },
  ) {
    this.key = key ?? newTeeKey('P-256');
  }

  /** Keeps kbs-session-id from Set-Cookie, as reqwest's cookie store would. */
  private keep(headers: Record<string, string | undefined>) {
    const sc = headers['set-cookie'];
    const m = sc && /(?:^|,\s*)kbs-session-id=([^;]*)/.exec(sc);
    if (m) this.cookie = `kbs-session-id=${m[1]}`;
  }

  async auth(body = AUTH_BODY_SAMPLE) {
    const r = await this.wire('POST', '/kbs/v0/auth', { body, contentType: 'application/json', ...(this.cookie ? { cookie: this.cookie } : {}) });
    this.keep(r.headers);
    if (r.status === 200) this.nonce = (JSON.parse(r.body) as { nonce: string }).nonce;
    return r;
  }

  async attest(body?: unknown) {
    const b = body ?? sampleAttestation(this.nonce!, this.key.jwk);
    const r = await this.wire('POST', '/kbs/v0/attest', {
      body: typeof b === 'string' ? b : JSON.stringify(b),
      contentType: 'application/json',
      ...(this.cookie ? { cookie: this.cookie } : {}),
    });
    this.keep(r.headers);
    if (r.status === 200) this.token = (JSON.parse(r.body) as { token: string }).token;
    return r;
  }

  async resource(path: string, how: 'cookie' | 'bearer' = 'cookie') {
    return this.wire(
      'GET',
      `/kbs/v0/resource/${path}`,
      how === 'cookie' ? (this.cookie ? { cookie: this.cookie } : {}) : { authorization: `Bearer ${this.token}` },
    );
  }

  decrypt(body: string): Buffer {
    return clientDecrypt(JSON.parse(body) as ClientJwe, this.key.privateKey);
  }

  /** Flow A of §1.2: GET → 401 → auth → attest → GET. */
  async fetchResource(path: string): Promise<Buffer> {
    const first = await this.resource(path);
    if (first.status === 200) return this.decrypt(first.body);
    if (first.status !== 401) throw new Error(`first GET: ${first.status} ${first.body}`);
    const a = await this.auth();
    if (a.status !== 200) throw new Error(`auth: ${a.status} ${a.body}`);
    const t = await this.attest();
    if (t.status !== 200) throw new Error(`attest: ${t.status} ${t.body}`);
    const r = await this.resource(path);
    if (r.status !== 200) throw new Error(`GET: ${r.status} ${r.body}`);
    return this.decrypt(r.body);
  }
}
