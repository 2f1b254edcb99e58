import { readFileSync } from 'node:fs';
import { credentials, status, type ChannelCredentials, type ServiceError } from '@grpc/grpc-js';
import { keybroker } from '@kb/grpc-api';
import { LaunchError } from './errors';
import type { ExitCodeName } from './exit-codes';

export interface BrokerOptions {
  address: string;
  /** PEM CA for a TLS broker; plaintext otherwise (as the kata shim and LaunchVM.py dial simple-kbs) */
  caFile?: string;
  timeoutSeconds: number;
}

/** Status codes that mean "no answer" rather than "the broker said no". */
const TRANSPORT = new Set<number>([status.UNAVAILABLE, status.DEADLINE_EXCEEDED, status.CANCELLED]);

/** The two keybroker calls a launch makes, with failures classified for the exit code. */
export class BrokerClient {
  private readonly client: keybroker.KeyBrokerServiceClient;

  constructor(private readonly opts: BrokerOptions) {
    let creds: ChannelCredentials = credentials.createInsecure();
    if (opts.caFile) creds = credentials.createSsl(readFileSync(opts.caFile));
    this.client = new keybroker.KeyBrokerServiceClient(opts.address, creds);
  }

  getBundle(req: keybroker.BundleRequest): Promise<keybroker.BundleResponse> {
    return this.call('getBundle', req, 'BUNDLE_REFUSED');
  }

  getSecret(req: keybroker.SecretRequest): Promise<keybroker.SecretResponse> {
    return this.call('getSecret', req, 'SECRET_REFUSED');
  }

  close(): void {
    this.client.close();
  }

  private call<Res>(method: 'getBundle' | 'getSecret', req: unknown, refused: ExitCodeName): Promise<Res> {
    const deadline = Date.now() + this.opts.timeoutSeconds * 1000;
    const fn = this.client[method] as unknown as (r: unknown, o: object, cb: (e: ServiceError | null, res: Res) => void) => void;
    return new Promise((resolve, reject) => {
      fn.call(this.client, req, { deadline }, (err, res) => {
        if (!err) return resolve(res);
        const code = status[err.code] ?? String(err.code);
        if (TRANSPORT.has(err.code)) {
          reject(
            new LaunchError('BROKER_UNREACHABLE', `broker ${this.opts.address} unreachable (${code}): ${plainTransportError(err.details || err.message)}`),
          );
        } else {
          reject(new LaunchError(refused, `the broker refused: ${err.details || err.message} [${code}]`));
        }
      });
    });
  }
}

/**
 * grpc-js's transport details ("No connection established. Last error: Error: connect ECONNREFUSED 1.2.3.4:5.
 * Resolution note: ", "Name resolution failed for target dns:h") in the user's terms.
 */
export function plainTransportError(details: string): string {
  const code = /\b(ECONNREFUSED|ENOTFOUND|EAI_AGAIN|ETIMEDOUT|EHOSTUNREACH|ENETUNREACH|ECONNRESET)\b/.exec(details)?.[1];
  if (code === 'ECONNREFUSED') return 'connection refused (is the broker running, and is this its --listen address?)';
  if (code === 'ENOTFOUND' || code === 'EAI_AGAIN' || /Name resolution failed/i.test(details)) return 'the host name does not resolve';
  if (code === 'ETIMEDOUT') return 'the connection timed out';
  if (code === 'EHOSTUNREACH' || code === 'ENETUNREACH') return 'no route to that host';
  if (code === 'ECONNRESET') return 'the connection was reset (TLS on one side only?)';
  return (
    details
      .replace(/\s*Resolution note:.*$/s, '')
      .replace(/\s*\(\d{4}-\d\d-\d\dT[^)]*\)/g, '')
      .trim() || 'unavailable'
  );
}
