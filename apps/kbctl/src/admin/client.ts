import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { credentials, Metadata, status, type CallOptions, type ChannelCredentials, type ServiceError } from '@grpc/grpc-js';
import { admin } from '@kb/grpc-api';
import { CliError, type Io } from '../cli';
import { DEFAULT_ADMIN_PORT, normalizeAddress } from '../connection-flags';
import { describeUnreachable, probeHealth } from '../grpc/health-probe';

export { CONNECTION_HELP, connectionOptions } from '../connection-flags';

type Values = Record<string, unknown>;

const TIMEOUT_MS = 15_000;
const DEFAULT_TOKEN_FILE = '.kb-data/admin.token';

/**
 * Admin calls as promises, with the bearer token attached and grpc errors turned into one-line messages. Nothing is
 * read or opened until the first call, so a command can reject its own arguments (exit 2) before any token or
 * certificate problem is reported.
 */
export class AdminConnection {
  readonly url: string;
  private client: admin.BrokerAdminClient | undefined;
  private readonly md = new Metadata();
  private tokenSource = 'KB_ADMIN_TOKEN';

  constructor(
    private readonly values: Values,
    private readonly io: Io,
  ) {
    const flag = values['admin-url'] as string | undefined;
    const given = flag ?? io.env.KB_ADMIN_URL;
    const n = normalizeAddress(given ?? `127.0.0.1:${DEFAULT_ADMIN_PORT}`, DEFAULT_ADMIN_PORT);
    if ('problem' in n) throw new CliError(`${flag !== undefined ? '--admin-url' : 'KB_ADMIN_URL'} ${given}: ${n.problem}`, 2);
    this.url = n.target;
  }

  private connect(): admin.BrokerAdminClient {
    if (this.client) return this.client;
    const { values, io } = this;
    let token = io.env.KB_ADMIN_TOKEN;
    const tokenFile = (values['token-file'] as string | undefined) ?? io.env.KB_ADMIN_TOKEN_FILE ?? (token ? undefined : DEFAULT_TOKEN_FILE);
    if (tokenFile) {
      this.tokenSource = tokenFile;
      try {
        token = readFileSync(resolve(io.cwd, tokenFile), 'utf8').trim();
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        const why = code === 'ENOENT' ? 'no such file' : (code ?? String(e));
        const hint = tokenFile === DEFAULT_TOKEN_FILE ? ' (the broker writes it there on its first start: run kbctl where you started it)' : '';
        throw new CliError(`cannot read the admin token from ${tokenFile}: ${why}${hint}; pass --token-file or set KB_ADMIN_TOKEN`);
      }
    }
    token = token?.trim();
    if (!token) throw new CliError(`the admin token in ${this.tokenSource} is empty`);
    // grpc metadata values are printable ASCII; the broker accepts any such token of 16+ characters
    if (!/^[\x20-\x7e]+$/.test(token)) throw new CliError(`the admin token in ${this.tokenSource} is not printable ASCII`);
    let creds: ChannelCredentials = credentials.createInsecure();
    const ca = values['tls-ca'] as string | undefined;
    if (ca) {
      let pem: Buffer;
      try {
        pem = readFileSync(resolve(io.cwd, ca));
      } catch (e) {
        throw new CliError(`cannot read the TLS CA certificate from ${ca} (${(e as NodeJS.ErrnoException).code ?? e})`);
      }
      creds = credentials.createSsl(pem);
    }
    this.md.set('authorization', `Bearer ${token}`);
    this.client = new admin.BrokerAdminClient(this.url, creds);
    return this.client;
  }

  call<Req, Res>(method: keyof admin.BrokerAdminClient & string, req: Req, timeoutMs = TIMEOUT_MS): Promise<Res> {
    return new Promise((resolvePromise, reject) => {
      const client = this.connect(); // a CliError thrown here rejects the promise
      const fn = (client as unknown as Record<string, Function>)[method]!;
      const options: CallOptions = { deadline: Date.now() + timeoutMs };
      fn.call(client, req, this.md, options, (err: ServiceError | null, res: Res) => {
        if (!err) return resolvePromise(res);
        if (err.code === status.UNIMPLEMENTED) {
          // The usual cause: the guest API's address (port 44444) given as the admin URL.
          return this.diagnoseWrongService(client).then((m) => reject(new CliError(m ?? this.describe(err, timeoutMs))), reject);
        }
        reject(new CliError(this.describe(err, timeoutMs), err.code === status.UNAUTHENTICATED ? 3 : 1));
      });
    });
  }

  close(): void {
    this.client?.close();
    this.client = undefined;
  }

  private async diagnoseWrongService(client: admin.BrokerAdminClient): Promise<string | undefined> {
    const guest = await probeHealth(client, 'keybroker.KeyBrokerService', 3000);
    if (guest.status === 'SERVING') {
      return `${this.url} serves the guest API (keybroker.KeyBrokerService), not the admin API; the admin API is on port ${DEFAULT_ADMIN_PORT} by default (--admin-url HOST:${DEFAULT_ADMIN_PORT})`;
    }
    return `${this.url} does not serve the broker's admin API (kb.admin.v1.BrokerAdmin); it is on port ${DEFAULT_ADMIN_PORT} by default`;
  }

  private describe(err: ServiceError, timeoutMs: number): string {
    switch (err.code) {
      case status.UNAVAILABLE:
        return `cannot reach the broker's admin API at ${this.url}: ${describeUnreachable(err.details, `is the broker running? (its admin API is on port ${DEFAULT_ADMIN_PORT} by default)`)}`;
      case status.UNAUTHENTICATED:
        return `the broker refused the admin token from ${this.tokenSource}; check --token-file / KB_ADMIN_TOKEN`;
      case status.DEADLINE_EXCEEDED:
        return `the broker at ${this.url} did not answer within ${timeoutMs / 1000} s`;
      default:
        return err.details || err.message;
    }
  }
}
