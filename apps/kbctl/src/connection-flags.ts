/**
 * The admin connection flags. Kept apart from client.ts (which loads gRPC) so that the command tree, its help and
 * the global-flag handling in cli.ts load no gRPC code: offline commands never pay for it.
 */
export const DEFAULT_ADMIN_PORT = 44445;
export const DEFAULT_BROKER_PORT = 44444;

export const CONNECTION_HELP = `Connection (every admin command; the flags may also come before the command):
  --admin-url HOST[:PORT] admin listener (KB_ADMIN_URL, default 127.0.0.1:${DEFAULT_ADMIN_PORT}; port ${DEFAULT_ADMIN_PORT} if omitted)
  --token-file FILE       file with the admin token (KB_ADMIN_TOKEN_FILE; KB_ADMIN_TOKEN gives it directly;
                          default ./.kb-data/admin.token, where the broker writes it on first run)
  --tls-ca FILE           use TLS, trusting this CA certificate (PEM)`;

export const connectionOptions = {
  'admin-url': { type: 'string' },
  'token-file': { type: 'string' },
  'tls-ca': { type: 'string' },
} as const;

/** Flags that may stand anywhere on the command line (`kbctl --token-file F policy list`). */
export const GLOBAL_FLAGS: readonly string[] = [...Object.keys(connectionOptions), 'service'];

const HOST_PORT = /^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+)(?::(\d{1,5}))?$/;

/**
 * HOST[:PORT] as the user typed it → the gRPC target, with the default port when none is given (grpc-js would
 * otherwise dial 443). A scheme some users add (http://, https://, grpc://) and a trailing slash are dropped.
 * Returns an error message instead for anything else.
 */
export function normalizeAddress(value: string, defaultPort: number): { target: string } | { problem: string } {
  const bare = value
    .trim()
    .replace(/^(?:https?|grpcs?):\/\//, '')
    .replace(/\/$/, '');
  // a port alone would be read as a host name (44445 → 0.0.173.157)
  if (/^:?\d+$/.test(bare)) return { problem: `give HOST:PORT, for example 127.0.0.1:${bare.replace(':', '')}` };
  const m = HOST_PORT.exec(bare);
  if (!m) return { problem: `expected HOST[:PORT], for example 127.0.0.1:${defaultPort} or broker.example.com (port ${defaultPort} by default)` };
  const port = m[2] === undefined ? defaultPort : Number(m[2]);
  if (port < 1 || port > 65535) return { problem: `port ${m[2]} is out of range (1–65535)` };
  return { target: `${m[1]}:${port}` };
}
