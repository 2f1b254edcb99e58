/**
 * The attestation service connection flags (`kbctl vm …`, `kbctl firmware …`). Kept apart from client.ts (which
 * loads the HTTP client) so the command tree and its help load no network code.
 */
export const DEFAULT_SERVICE_URL = 'http://127.0.0.1:44446/sev/v1';

export const SERVICE_HELP = `Attestation service (every vm/firmware command; the flags may also come before the command):
  --service URL           base URL (KB_SERVICE_URL, default ${DEFAULT_SERVICE_URL}): the broker's
                          --http-listen address followed by /sev/v1
  --token-file FILE       file with the admin token or your owner token (KB_ADMIN_TOKEN_FILE; KB_ADMIN_TOKEN gives it
                          directly; default ./.kb-data/admin.token, where the broker writes it on first run)
  --tls-ca FILE           trust this CA certificate (PEM) for an https:// service

Exit codes: 0 done, 1 failed (the service's reason and reference are printed), 2 usage error,
3 the service refused the token, 4 the service could not be reached`;

export const serviceOptions = {
  service: { type: 'string' },
  'token-file': { type: 'string' },
  'tls-ca': { type: 'string' },
} as const;

/** http(s)://HOST[:PORT]/PATH without a trailing slash, or a problem in the user's terms. */
export function normalizeServiceUrl(value: string): { url: string } | { problem: string } {
  let u: URL;
  try {
    u = new URL(value.trim());
  } catch {
    return { problem: `not a URL: give the base URL, for example ${DEFAULT_SERVICE_URL}` };
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') return { problem: `only http:// and https:// URLs, for example ${DEFAULT_SERVICE_URL}` };
  if (u.search || u.hash || u.username || u.password) return { problem: 'the base URL takes no query, fragment or credentials' };
  return { url: u.href.replace(/\/+$/, '') };
}
