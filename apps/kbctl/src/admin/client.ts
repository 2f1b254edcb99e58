import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { credentials, Metadata, status, type CallOptions, type ChannelCredentials, type ServiceError } from '@grpc/grpc-js';
import { admin } from '@kb/grpc-api';
import { CliError, type Io } from '../cli';

export const CONNECTION_HELP = `Connection (every admin command):
  --admin-url HOST:PORT   admin listener (KB_ADMIN_URL, default 127.0.0.1:44445)
  --token-file FILE       file with the admin token (KB_ADMIN_TOKEN_FILE; KB_ADMIN_TOKEN gives it directly;
                          default ./.kb-data/admin.token, where the broker writes it on first run)
  --tls-ca FILE           use TLS, trusting this CA certificate (PEM)`;

export const connectionOptions = {
  'admin-url': { type: 'string' },
  'token-file': { type: 'string' },
  'tls-ca': { type: 'string' },
} as const;

type Values = Record<string, unknown>;

const TIMEOUT_MS = 15_000;

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
    this.url = (values['admin-url'] as string | undefined) ?? io.env.KB_ADMIN_URL ?? '127.0.0.1:44445';
  }

  private connect(): admin.BrokerAdminClient {
    if (this.client) return this.client;
    const { values, io } = this;
    let token = io.env.KB_ADMIN_TOKEN;
    const tokenFile = (values['token-file'] as string | undefined) ?? io.env.KB_ADMIN_TOKEN_FILE ?? (token ? undefined : '.kb-data/admin.token');
    if (tokenFile) {
      this.tokenSource = tokenFile;
      try {
        token = readFileSync(resolve(io.cwd, tokenFile), 'utf8').trim();
      } catch (e) {
        throw new CliError(`cannot read the admin token from ${tokenFile} (${(e as NodeJS.ErrnoException).code ?? e}); pass --token-file or set KB_ADMIN_TOKEN`);
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
        if (err) reject(new CliError(this.describe(err, timeoutMs), err.code === status.UNAUTHENTICATED ? 3 : 1));
        else resolvePromise(res);
      });
    });
  }

  close(): void {
    this.client?.close();
    this.client = undefined;
  }

  private describe(err: ServiceError, timeoutMs: number): string {
    switch (err.code) {
      case status.UNAVAILABLE:
        return `the broker's admin API at ${this.url} is unreachable (${err.details})`;
      case status.UNAUTHENTICATED:
        return `the broker refused the admin token from ${this.tokenSource}; check --token-file / KB_ADMIN_TOKEN`;
      case status.DEADLINE_EXCEEDED:
        return `the broker at ${this.url} did not answer within ${timeoutMs / 1000} s`;
      default:
        return err.details || err.message;
    }
  }
}
