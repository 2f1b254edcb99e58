import { parseArgs } from 'node:util';
import { listenAddressProblem } from './listen-address';
import type { LogLevel } from './log';

/** Everything the broker can be told, from flags or KB_* environment variables (flags win). */
export interface BrokerConfig {
  listen: string;
  adminListen: string;
  dataDir: string;
  databaseUrl?: string;
  masterKey?: string;
  masterKeyFile?: string;
  adminToken?: string;
  adminTokenFile?: string;
  /** extra trusted roots: files holding ASK‖ARK in AMD CA format, with a name reported as the generation */
  trustRoots: { name: string; file: string }[];
  /** `--snp-trust-root`: PEM files of non-AMD SNP roots (ARK+ASK[+ASVK]), trusted for KBS attestation */
  snpTrustRoots: string[];
  tlsCert?: string;
  tlsKey?: string;
  adminTlsCert?: string;
  adminTlsKey?: string;
  defaultPolicy: string;
  sessionTtlSeconds: number;
  maxPendingSessions: number;
  connectionTtlSeconds: number;
  bundleRatePerSecond: number;
  bundleBurst: number;
  /** Audit entries older than this many days are deleted; 0 keeps them forever. */
  auditRetentionDays: number;
  maxSecretsPerRequest: number;
  /**
   * A guest-facing call not answered within this many seconds gets DEADLINE_EXCEEDED (a client's own shorter
   * deadline applies as well); on PostgreSQL it is also the statement timeout, so a stuck query frees its connection.
   */
  requestTimeoutSeconds: number;
  /* Bounded resources per peer on the guest-facing listener (peer-limits.ts); seconds, 0 = off where allowed. */
  maxConnections: number;
  maxConnectionsPerPeer: number;
  maxStreamsPerConnection: number;
  idleTimeoutSeconds: number;
  maxConnectionAgeSeconds: number;
  keepaliveSeconds: number;
  requestArrivalTimeoutSeconds: number;
  logLevel: LogLevel;
  // --- HTTP APIs (the libvirt attestation service, the KBS protocol) ---
  /** host:port of the HTTP listener (same per-peer limits as the guest port); undefined = off ("--http-listen off"). */
  httpListen?: string;
  httpTlsCert?: string;
  httpTlsKey?: string;
  /** KBS protocol: accept the test-only `sample` TEE (kbs-protocol.md §10); never for resources with a policy */
  kbsSampleTee: boolean;
  // --- observability ---
  /** host:port of the Prometheus metrics listener (GET /metrics); none unless given. */
  metricsListen?: string;
  /** AMD KDS base URL for SNP certificates the evidence and the offline store lack (off unless given; issue #17) */
  snpKdsUrl?: string;
}

export const HELP = `kb-broker — key broker for AMD SEV, SEV-ES and SEV-SNP guests (simple-kbs compatible gRPC; HTTP: the libvirt attestation service, the KBS protocol)

Usage: kb-broker [options]

Guest-facing service (keybroker.KeyBrokerService, plaintext unless --tls-cert/--tls-key):
  --listen ADDR               host:port (KB_LISTEN, default 127.0.0.1:44444)
  --tls-cert FILE --tls-key FILE   serve TLS (KB_TLS_CERT, KB_TLS_KEY)

Admin API (kb.admin.v1.BrokerAdmin, bearer token):
  --admin-listen ADDR         host:port (KB_ADMIN_LISTEN, default 127.0.0.1:44445)
  --admin-token-file FILE     file holding the admin token (KB_ADMIN_TOKEN_FILE); KB_ADMIN_TOKEN gives it directly.
                              Default: <data-dir>/admin.token, generated on first run (mode 0600)
  --admin-tls-cert FILE --admin-tls-key FILE   serve the admin API over TLS

Storage:
  --data-dir DIR              embedded database (PGlite), master key and admin token (KB_DATA_DIR, default ./.kb-data)
  --database-url URL          use a PostgreSQL server instead, e.g. postgres://user:pw@host/db (KB_DATABASE_URL)
  --master-key-file FILE      base64 32-byte key encrypting secrets at rest (KB_MASTER_KEY_FILE; KB_MASTER_KEY gives it
                              directly). Required with --database-url; generated into the data dir otherwise.

Trust:
  --trust-root NAME=FILE      also trust the ARK/ASK pair in FILE (ASK‖ARK, AMD CA format) as generation NAME.
                              Repeatable. For labs and simulators only: logged loudly at start-up.
  --snp-trust-root FILE       SNP guests (KBS): trust the ARK and ASK (optionally ASVK) in FILE (PEM) instead of AMD's
                              root of that generation (KB_SNP_TRUST_ROOTS, comma-separated). Repeatable, one file
                              per generation. For labs and simulators only: logged loudly at start-up.

Policy and limits:
  --default-policy NAME       tenant default policy applied to every release (KB_DEFAULT_POLICY, default "default");
                              while it does not exist, every GetSecret is refused
  --session-ttl SECONDS       how long a GetBundle session waits for its GetSecret (KB_SESSION_TTL, default 600)
  --max-pending-sessions N    cap on unconsumed sessions (KB_MAX_PENDING_SESSIONS, default 10000)
  --connection-ttl SECONDS    lifetime of online connections (KB_CONNECTION_TTL, default 86400)
  --audit-retention DAYS      how long audit entries are kept (KB_AUDIT_RETENTION, default 365; fractions allowed;
                              0 = forever). Older entries are deleted at start-up and then hourly
  --bundle-rate N             GetBundle requests per second per peer (KB_BUNDLE_RATE, default 20; 0 = unlimited)
  --bundle-burst N            burst size of that limit (KB_BUNDLE_BURST, default 40)
  --request-timeout SECONDS   a guest-facing call unanswered this long gets DEADLINE_EXCEEDED; with --database-url
                              also the statement timeout (KB_REQUEST_TIMEOUT, default 10; fractions allowed; 0.05–600)

Connections on the guest-facing listener (untrusted callers):
  --max-connections N         connections open at once, all peers (KB_MAX_CONNECTIONS, default 1024); more are closed
                              at once. Keep it below the process's file descriptor limit (ulimit -n)
  --max-connections-per-peer N   connections open at once from one address (KB_MAX_CONNECTIONS_PER_PEER, default 128)
  --max-streams-per-connection N concurrent calls on one connection (KB_MAX_STREAMS_PER_CONNECTION, default 100)
  --idle-timeout SECONDS      a connection without calls this long is closed (KB_IDLE_TIMEOUT, default 300; 0 = never)
  --max-connection-age SECONDS   a connection is asked to go away after this long; its calls may finish
                              (KB_MAX_CONNECTION_AGE, default 3600; 0 = unlimited)
  --keepalive SECONDS         ping every connection this often; 20 s without an answer closes it (KB_KEEPALIVE,
                              default 60; 0 = off)
  --request-arrival-timeout SECONDS   a request still arriving this long after its headers gets DEADLINE_EXCEEDED
                              (KB_REQUEST_ARRIVAL_TIMEOUT, default 10; 0.05–600)

HTTP APIs (untrusted hosts and guests, and owners with a token; the same connection limits as above):
  --http-listen ADDR          host:port (KB_HTTP_LISTEN, default 127.0.0.1:44446; "off" = no HTTP listener)
  --http-tls-cert FILE --http-tls-key FILE   serve HTTPS, HTTP/2 and HTTP/1.1 (KB_HTTP_TLS_CERT, KB_HTTP_TLS_KEY);
                              plaintext serves HTTP/1.1 only
  --kbs-sample-tee            KBS protocol (/kbs/v0): also accept the test-only "sample" TEE, which proves nothing
                              (KB_KBS_SAMPLE_TEE=1; tests and demos only; never releases a resource with a policy)

  --log-level LEVEL           debug|info|warn|error (KB_LOG_LEVEL, default info)

Observability:
  --metrics-listen HOST:PORT  serve Prometheus metrics at http://HOST:PORT/metrics (KB_METRICS_LISTEN; off unless
                              given). Plain HTTP without authentication: keep it on a private address

SEV-SNP certificates (README "SNP guests"):
  --snp-kds URL               fetch VCEKs, chains and CRLs missing from the evidence and the offline store from AMD's
                              KDS at URL, e.g. https://kdsintf.amd.com (KB_SNP_KDS; off unless given); answers are
                              cached in the database
  -h, --help                  show this help
`;

export class ConfigError extends Error {}

export const MAX_AUDIT_RETENTION_DAYS = 36_500;
/** Below this, ordinary calls on a loaded machine would time out; above it, a stuck call holds its resources too long. */
export const MIN_REQUEST_TIMEOUT_SECONDS = 0.05;
export const MAX_REQUEST_TIMEOUT_SECONDS = 600;
/** setTimeout's limit (2^31 − 1 ms), rounded down: a longer timer would fire at once. */
export const MAX_TIMER_SECONDS = 2_000_000;

/**
 * HOST:PORT or [IPv6]:PORT, checked before anything is opened. The host is required: listening on every interface
 * should be written out (0.0.0.0:PORT), not be what a bare port means.
 */
export function parseHostPort(flag: string, address: string): { host: string; port: number } {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]\s]+)):(\d{1,5})$/.exec(address);
  const port = m ? Number(m[3]) : NaN;
  if (!m || port > 65535) throw new ConfigError(`--${flag} must be HOST:PORT (e.g. 127.0.0.1:9464, 0.0.0.0:9464, [::1]:9464), got ${JSON.stringify(address)}`);
  return { host: m[1] ?? m[2] ?? '', port };
}

function optionalHttpUrl(flag: string, v: string | undefined): string | undefined {
  if (v === undefined || v === '') return undefined;
  let u: URL;
  try {
    u = new URL(v);
  } catch {
    throw new ConfigError(`--${flag} must be an http(s) URL, got ${JSON.stringify(v)}`);
  }
  if (u.protocol !== 'https:' && u.protocol !== 'http:') throw new ConfigError(`--${flag} must be an http(s) URL, got ${JSON.stringify(v)}`);
  return v.replace(/\/+$/, '');
}

function optionalHostPort(flag: string, v: string | undefined): string | undefined {
  if (v === undefined || v === '') return undefined;
  parseHostPort(flag, v);
  return v;
}

export function parseConfig(argv: string[], env: NodeJS.ProcessEnv = process.env): BrokerConfig | 'help' {
  const { values } = parseArgs({
    args: argv,
    strict: true,
    allowPositionals: false,
    options: {
      listen: { type: 'string' },
      'admin-listen': { type: 'string' },
      'data-dir': { type: 'string' },
      'database-url': { type: 'string' },
      'master-key-file': { type: 'string' },
      'admin-token-file': { type: 'string' },
      'trust-root': { type: 'string', multiple: true },
      'snp-trust-root': { type: 'string', multiple: true },
      'tls-cert': { type: 'string' },
      'tls-key': { type: 'string' },
      'admin-tls-cert': { type: 'string' },
      'admin-tls-key': { type: 'string' },
      'default-policy': { type: 'string' },
      'session-ttl': { type: 'string' },
      'max-pending-sessions': { type: 'string' },
      'connection-ttl': { type: 'string' },
      'bundle-rate': { type: 'string' },
      'bundle-burst': { type: 'string' },
      'audit-retention': { type: 'string' },
      'request-timeout': { type: 'string' },
      'max-connections': { type: 'string' },
      'max-connections-per-peer': { type: 'string' },
      'max-streams-per-connection': { type: 'string' },
      'idle-timeout': { type: 'string' },
      'max-connection-age': { type: 'string' },
      keepalive: { type: 'string' },
      'request-arrival-timeout': { type: 'string' },
      'log-level': { type: 'string' },
      'metrics-listen': { type: 'string' },
      'http-listen': { type: 'string' },
      'http-tls-cert': { type: 'string' },
      'http-tls-key': { type: 'string' },
      'snp-kds': { type: 'string' },
      'kbs-sample-tee': { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) return 'help';
  const num = (flag: string, v: string | undefined, dflt: number, min = 0, max = Infinity): number => {
    if (v === undefined || v === '') return dflt;
    // Number('  ') is 0: a blank value must not quietly mean "unlimited" or "keep forever"
    const n = v.trim() === '' ? NaN : Number(v);
    if (!Number.isFinite(n) || n < min || n > max) {
      const range = max === Infinity ? `≥ ${min}` : `in [${min}, ${max}]`;
      throw new ConfigError(`--${flag} must be a number ${range}, got ${JSON.stringify(v)}`);
    }
    return n;
  };
  const int = (flag: string, v: string | undefined, dflt: number, min: number, max = Infinity): number => {
    const n = num(flag, v, dflt, min, max);
    if (!Number.isInteger(n)) throw new ConfigError(`--${flag} must be a whole number, got ${JSON.stringify(v)}`);
    return n;
  };
  const trustRoots = (values['trust-root'] ?? (env.KB_TRUST_ROOTS ? env.KB_TRUST_ROOTS.split(',') : [])).map((s) => {
    const eq = s.indexOf('=');
    if (eq <= 0 || eq === s.length - 1) throw new ConfigError(`--trust-root must be NAME=FILE, got ${JSON.stringify(s)}`);
    return { name: s.slice(0, eq), file: s.slice(eq + 1) };
  });
  const logLevel = (values['log-level'] ?? env.KB_LOG_LEVEL ?? 'info') as LogLevel;
  if (!['debug', 'info', 'warn', 'error'].includes(logLevel)) throw new ConfigError(`unknown log level ${logLevel}`);
  const httpListen = values['http-listen'] ?? env.KB_HTTP_LISTEN ?? '127.0.0.1:44446';
  const cfg: BrokerConfig = {
    listen: values.listen ?? env.KB_LISTEN ?? '127.0.0.1:44444',
    adminListen: values['admin-listen'] ?? env.KB_ADMIN_LISTEN ?? '127.0.0.1:44445',
    dataDir: values['data-dir'] ?? env.KB_DATA_DIR ?? './.kb-data',
    databaseUrl: values['database-url'] ?? env.KB_DATABASE_URL,
    masterKey: env.KB_MASTER_KEY,
    masterKeyFile: values['master-key-file'] ?? env.KB_MASTER_KEY_FILE,
    adminToken: env.KB_ADMIN_TOKEN,
    adminTokenFile: values['admin-token-file'] ?? env.KB_ADMIN_TOKEN_FILE,
    trustRoots,
    snpTrustRoots: values['snp-trust-root'] ?? (env.KB_SNP_TRUST_ROOTS ? env.KB_SNP_TRUST_ROOTS.split(',') : []),
    tlsCert: values['tls-cert'] ?? env.KB_TLS_CERT,
    tlsKey: values['tls-key'] ?? env.KB_TLS_KEY,
    adminTlsCert: values['admin-tls-cert'] ?? env.KB_ADMIN_TLS_CERT,
    adminTlsKey: values['admin-tls-key'] ?? env.KB_ADMIN_TLS_KEY,
    defaultPolicy: values['default-policy'] ?? env.KB_DEFAULT_POLICY ?? 'default',
    sessionTtlSeconds: num('session-ttl', values['session-ttl'] ?? env.KB_SESSION_TTL, 600, 1),
    maxPendingSessions: num('max-pending-sessions', values['max-pending-sessions'] ?? env.KB_MAX_PENDING_SESSIONS, 10_000, 1),
    connectionTtlSeconds: num('connection-ttl', values['connection-ttl'] ?? env.KB_CONNECTION_TTL, 86_400, 1),
    bundleRatePerSecond: num('bundle-rate', values['bundle-rate'] ?? env.KB_BUNDLE_RATE, 20),
    bundleBurst: num('bundle-burst', values['bundle-burst'] ?? env.KB_BUNDLE_BURST, 40, 1),
    // Bounded so that now − retention is always a date JavaScript and PostgreSQL both hold; a century outlasts any audit policy.
    auditRetentionDays: num('audit-retention', values['audit-retention'] ?? env.KB_AUDIT_RETENTION, 365, 0, MAX_AUDIT_RETENTION_DAYS),
    maxSecretsPerRequest: 64,
    requestTimeoutSeconds: num(
      'request-timeout',
      values['request-timeout'] ?? env.KB_REQUEST_TIMEOUT,
      10,
      MIN_REQUEST_TIMEOUT_SECONDS,
      MAX_REQUEST_TIMEOUT_SECONDS,
    ),
    maxConnections: int('max-connections', values['max-connections'] ?? env.KB_MAX_CONNECTIONS, 1024, 1),
    maxConnectionsPerPeer: int('max-connections-per-peer', values['max-connections-per-peer'] ?? env.KB_MAX_CONNECTIONS_PER_PEER, 128, 1),
    maxStreamsPerConnection: int('max-streams-per-connection', values['max-streams-per-connection'] ?? env.KB_MAX_STREAMS_PER_CONNECTION, 100, 1, 2 ** 31 - 1),
    idleTimeoutSeconds: num('idle-timeout', values['idle-timeout'] ?? env.KB_IDLE_TIMEOUT, 300, 0, MAX_TIMER_SECONDS),
    maxConnectionAgeSeconds: num('max-connection-age', values['max-connection-age'] ?? env.KB_MAX_CONNECTION_AGE, 3600, 0, MAX_TIMER_SECONDS),
    keepaliveSeconds: num('keepalive', values.keepalive ?? env.KB_KEEPALIVE, 60, 0, MAX_TIMER_SECONDS),
    requestArrivalTimeoutSeconds: num(
      'request-arrival-timeout',
      values['request-arrival-timeout'] ?? env.KB_REQUEST_ARRIVAL_TIMEOUT,
      10,
      MIN_REQUEST_TIMEOUT_SECONDS,
      MAX_REQUEST_TIMEOUT_SECONDS,
    ),
    logLevel,
    metricsListen: optionalHostPort('metrics-listen', values['metrics-listen'] ?? env.KB_METRICS_LISTEN),
    httpListen: httpListen === 'off' ? undefined : httpListen,
    httpTlsCert: values['http-tls-cert'] ?? env.KB_HTTP_TLS_CERT,
    httpTlsKey: values['http-tls-key'] ?? env.KB_HTTP_TLS_KEY,
    snpKdsUrl: optionalHttpUrl('snp-kds', values['snp-kds'] ?? env.KB_SNP_KDS),
    kbsSampleTee: values['kbs-sample-tee'] ?? env.KB_KBS_SAMPLE_TEE === '1',
  };
  if (cfg.maxConnectionsPerPeer > cfg.maxConnections) throw new ConfigError('--max-connections-per-peer cannot exceed --max-connections');
  const listeners: [string, string][] = [
    ['--listen', cfg.listen],
    ['--admin-listen', cfg.adminListen],
  ];
  if (cfg.httpListen !== undefined) listeners.push(['--http-listen', cfg.httpListen]);
  for (const [flag, address] of listeners) {
    const problem = listenAddressProblem(address);
    if (problem) throw new ConfigError(`${flag} ${JSON.stringify(address)}: ${problem}`);
  }
  if (Boolean(cfg.tlsCert) !== Boolean(cfg.tlsKey)) throw new ConfigError('--tls-cert and --tls-key go together');
  if (Boolean(cfg.adminTlsCert) !== Boolean(cfg.adminTlsKey)) throw new ConfigError('--admin-tls-cert and --admin-tls-key go together');
  if (Boolean(cfg.httpTlsCert) !== Boolean(cfg.httpTlsKey)) throw new ConfigError('--http-tls-cert and --http-tls-key go together');
  if (cfg.databaseUrl && !cfg.masterKey && !cfg.masterKeyFile) {
    throw new ConfigError('with --database-url, give the master key (KB_MASTER_KEY or --master-key-file): replicas must share it');
  }
  return cfg;
}
