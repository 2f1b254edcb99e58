import { readFileSync } from 'node:fs';
import { request as httpRequest, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { LaunchError } from '../errors';
import type { ExitCodeName } from '../exit-codes';
import { plainTransportError } from '../broker-client';

export interface JsonHttpOptions {
  /** PEM CA for an https:// service with a private CA; the system's CAs otherwise */
  caFile?: string;
  timeoutSeconds: number;
}

/** Answers larger than this are not an attestation service's (a secret table is at most 4 KiB). */
const MAX_RESPONSE = 1 << 20;

/**
 * POST one JSON document over HTTP/1.1 (TLS for https://) and return the JSON answer. node:http(s) rather than the
 * built-in fetch: fetch takes no CA without adding undici as a dependency, and --tls-ca is needed for a
 * private-CA service. Failures are classed for the exit code: no answer → BROKER_UNREACHABLE; an answer that
 * refuses → `refused`, in the service's words ({"error","message","ref"}).
 */
export class JsonHttpClient {
  private readonly ca?: Buffer;

  constructor(private readonly opts: JsonHttpOptions) {
    if (opts.caFile) {
      try {
        this.ca = readFileSync(opts.caFile);
      } catch (e) {
        throw new LaunchError('CONFIG', `cannot read the --tls-ca file ${opts.caFile}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
      }
    }
  }

  post(url: string, body: unknown, refused: ExitCodeName): Promise<Record<string, unknown>> {
    const u = new URL(url);
    const payload = Buffer.from(JSON.stringify(body));
    const request = u.protocol === 'https:' ? httpsRequest : httpRequest;
    const where = `${u.protocol}//${u.host}`;
    return new Promise((resolve, reject) => {
      const req = request(
        u,
        {
          method: 'POST',
          headers: { 'content-type': 'application/json', accept: 'application/json', 'content-length': payload.length },
          timeout: this.opts.timeoutSeconds * 1000,
          ...(u.protocol === 'https:' && this.ca ? { ca: this.ca } : {}),
        },
        (res) =>
          readBody(res)
            .then(
              (text) => resolve(answer(res, text, url, refused)),
              (e: unknown) => reject(unreachable(where, e)),
            )
            .catch(reject),
      );
      req.on('timeout', () => req.destroy(Object.assign(new Error('timed out'), { code: 'ETIMEDOUT' })));
      req.on('error', (e) => reject(unreachable(where, e)));
      req.end(payload);
    });
  }
}

function readBody(res: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const parts: Buffer[] = [];
    let size = 0;
    res.on('data', (c: Buffer) => {
      size += c.length;
      if (size > MAX_RESPONSE) res.destroy(new Error(`the answer exceeds ${MAX_RESPONSE} bytes`));
      else parts.push(c);
    });
    res.on('end', () => resolve(Buffer.concat(parts).toString('utf8')));
    res.on('error', reject);
  });
}

function unreachable(where: string, e: unknown): LaunchError {
  if (e instanceof LaunchError) return e;
  const err = e as NodeJS.ErrnoException;
  const tls = /certificate|self[- ]signed|SSL|TLS|CERT_/i.test(`${err.code ?? ''} ${err.message}`);
  const why = tls
    ? `TLS: ${err.message} (give the service's CA with --tls-ca FILE)`
    : plainTransportError(`${err.code ?? ''} ${err.message}`).replace('the broker', 'the attestation service');
  return new LaunchError('BROKER_UNREACHABLE', `attestation service ${where} unreachable: ${why}`);
}

function answer(res: IncomingMessage, text: string, url: string, refused: ExitCodeName): Record<string, unknown> {
  const status = res.statusCode ?? 0;
  let json: unknown;
  try {
    json = text ? JSON.parse(text) : undefined;
  } catch {
    json = undefined;
  }
  const obj = json && typeof json === 'object' && !Array.isArray(json) ? (json as Record<string, unknown>) : undefined;
  if (status >= 200 && status < 300) {
    if (!obj) throw new LaunchError(refused, `the attestation service answered ${status} without a JSON object (${url})`);
    return obj;
  }
  // 502/503/504: a proxy or an overloaded service, i.e. no answer from the service itself; retrying may help
  const cls: ExitCodeName = status === 502 || status === 503 || status === 504 ? 'BROKER_UNREACHABLE' : refused;
  const message = typeof obj?.message === 'string' ? obj.message : text.trim().slice(0, 200) || res.statusMessage || 'no reason given';
  const klass = typeof obj?.error === 'string' ? `${obj.error}, ` : '';
  if (status === 404 && !obj)
    throw new LaunchError(
      refused,
      `the attestation service has no ${new URL(url).pathname} (HTTP 404): is <attestation service> its base URL, e.g. http://HOST:44446/sev/v1?`,
    );
  throw new LaunchError(cls, `the attestation service refused: ${message} [${klass}HTTP ${status}]`);
}
