import { readFileSync } from 'node:fs';
import { request as httpRequest, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { resolve } from 'node:path';
import { CliError, type Io } from '../cli';
import { DEFAULT_SERVICE_URL, normalizeServiceUrl } from './flags';

const TIMEOUT_MS = 30_000;
const DEFAULT_TOKEN_FILE = '.kb-data/admin.token';
const MAX_RESPONSE = 16 << 20;

export const EXIT_TOKEN_REFUSED = 3;
export const EXIT_UNREACHABLE = 4;

export interface ServiceResponse {
  status: number;
  json?: Record<string, unknown>;
}

/**
 * The owner's calls to the attestation service: JSON (or raw firmware bytes) over HTTP/1.1, TLS for https://, the
 * bearer token attached. node:http(s) rather than the built-in fetch: fetch takes no CA (--tls-ca) without adding
 * undici as a dependency. Nothing is read until the first call, so a command rejects its own arguments first.
 */
export class ServiceConnection {
  readonly base: string;
  private token?: string;
  private tokenSource = 'KB_ADMIN_TOKEN';
  private ca?: Buffer;

  constructor(
    private readonly values: Record<string, unknown>,
    private readonly io: Io,
  ) {
    const flag = values.service as string | undefined;
    const given = flag ?? io.env.KB_SERVICE_URL ?? DEFAULT_SERVICE_URL;
    const n = normalizeServiceUrl(given);
    if ('problem' in n) throw new CliError(`${flag !== undefined ? '--service' : 'KB_SERVICE_URL'} ${given}: ${n.problem}`, 2);
    this.base = n.url;
  }

  private credentials(): void {
    if (this.token) return;
    const { values, io } = this;
    let token = io.env.KB_ADMIN_TOKEN;
    const tokenFile = (values['token-file'] as string | undefined) ?? io.env.KB_ADMIN_TOKEN_FILE ?? (token ? undefined : DEFAULT_TOKEN_FILE);
    if (tokenFile) {
      this.tokenSource = tokenFile;
      try {
        token = readFileSync(resolve(io.cwd, tokenFile), 'utf8');
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        const hint = tokenFile === DEFAULT_TOKEN_FILE ? ' (the broker writes it there on its first start: run kbctl where you started it)' : '';
        throw new CliError(
          `cannot read the token from ${tokenFile}: ${code === 'ENOENT' ? 'no such file' : (code ?? String(e))}${hint}; pass --token-file or set KB_ADMIN_TOKEN`,
        );
      }
    }
    token = token?.trim();
    if (!token) throw new CliError(`the token in ${this.tokenSource} is empty`);
    if (!/^[\x21-\x7e]+$/.test(token)) throw new CliError(`the token in ${this.tokenSource} is not one printable word`);
    this.token = token;
    const ca = values['tls-ca'] as string | undefined;
    if (ca) {
      try {
        this.ca = readFileSync(resolve(io.cwd, ca));
      } catch (e) {
        throw new CliError(`cannot read the CA certificate ${ca}: ${(e as NodeJS.ErrnoException).code ?? e}`);
      }
    }
  }

  /** One call; `ok` lists the statuses that are success (the rest become a CliError in the service's words). */
  async call(method: string, path: string, body: { json: unknown } | { bytes: Buffer } | undefined, ok: number[]): Promise<ServiceResponse> {
    this.credentials();
    const url = new URL(this.base + path);
    const payload = body === undefined ? undefined : 'json' in body ? Buffer.from(JSON.stringify(body.json)) : body.bytes;
    const headers: Record<string, string | number> = { authorization: `Bearer ${this.token}`, accept: 'application/json' };
    if (payload) {
      headers['content-type'] = body && 'json' in body ? 'application/json' : 'application/octet-stream';
      headers['content-length'] = payload.length;
    }
    const request = url.protocol === 'https:' ? httpsRequest : httpRequest;
    const { status, text } = await new Promise<{ status: number; text: string }>((done, fail) => {
      const req = request(url, { method, headers, timeout: TIMEOUT_MS, ...(url.protocol === 'https:' && this.ca ? { ca: this.ca } : {}) }, (res) =>
        readAll(res).then((t) => done({ status: res.statusCode ?? 0, text: t }), fail),
      );
      req.on('timeout', () => req.destroy(Object.assign(new Error('timed out'), { code: 'ETIMEDOUT' })));
      req.on('error', (e) => fail(this.unreachable(e)));
      req.end(payload);
    });
    let json: Record<string, unknown> | undefined;
    try {
      const parsed: unknown = text ? JSON.parse(text) : undefined;
      if (parsed && typeof parsed === 'object' && !Array.isArray(parsed)) json = parsed as Record<string, unknown>;
    } catch {
      json = undefined;
    }
    if (ok.includes(status)) return { status, json };
    const message = typeof json?.message === 'string' ? json.message : text.trim().slice(0, 200) || `HTTP ${status}`;
    if (status === 401 || status === 403) {
      throw new CliError(
        `the service refused the token from ${this.tokenSource}: ${message}; check --token-file / KB_ADMIN_TOKEN (an owner token reaches only its own VMs)`,
        EXIT_TOKEN_REFUSED,
      );
    }
    if (status === 404 && !json) throw new CliError(`${url.pathname} not found (HTTP 404): is ${this.base} the service's base URL (…/sev/v1)?`);
    if (status === 502 || status === 503 || status === 504)
      throw new CliError(`the service at ${this.base} is unavailable (HTTP ${status}): ${message}`, EXIT_UNREACHABLE);
    throw Object.assign(new CliError(message), { status });
  }

  private unreachable(e: unknown): CliError {
    const err = e as NodeJS.ErrnoException;
    const text = `${err.code ?? ''} ${err.message}`;
    let why = err.message;
    if (/ECONNREFUSED/.test(text)) why = 'connection refused (is the broker running with --http-listen at this address?)';
    else if (/ENOTFOUND|EAI_AGAIN/.test(text)) why = 'the host name does not resolve';
    else if (/ETIMEDOUT/.test(text)) why = 'the connection timed out';
    else if (/ECONNRESET|EPROTO|wrong version number/i.test(text)) why = 'the connection was reset (https:// against a plain HTTP service, or the reverse?)';
    else if (/certificate|self[- ]signed|CERT_/i.test(text)) why = `TLS: ${err.message} (give the service's CA with --tls-ca FILE)`;
    return new CliError(`cannot reach the attestation service at ${this.base}: ${why}`, EXIT_UNREACHABLE);
  }
}

function readAll(res: IncomingMessage): Promise<string> {
  return new Promise((done, fail) => {
    const parts: Buffer[] = [];
    let size = 0;
    res.on('data', (c: Buffer) => {
      size += c.length;
      if (size > MAX_RESPONSE) res.destroy(new Error('the answer is too large'));
      else parts.push(c);
    });
    res.on('end', () => done(Buffer.concat(parts).toString('utf8')));
    res.on('error', fail);
  });
}
