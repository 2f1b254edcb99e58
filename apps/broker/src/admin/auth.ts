import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { ServerInterceptingCall, status, type Metadata, type ServerInterceptor } from '@grpc/grpc-js';

/**
 * Bearer-token check for the admin listener. Both sides are hashed first so the constant-time compare sees equal
 * lengths whatever the caller sends, and the token itself never sits in a comparison buffer of the caller's size.
 */
export class AdminAuth {
  private readonly digest: Buffer;

  constructor(token: string) {
    if (token.length < 16) throw new Error('the admin token must be at least 16 characters');
    this.digest = sha256(token);
  }

  check(md: Metadata): boolean {
    const h = md.get('authorization')[0];
    if (typeof h !== 'string' || !h.startsWith('Bearer ')) return false;
    return this.checkToken(h.slice(7).trim());
  }

  /** The token itself (an HTTP bearer token), compared the same way. */
  checkToken(token: string): boolean {
    return timingSafeEqual(sha256(token), this.digest);
  }
}

function sha256(s: string): Buffer {
  return createHash('sha256').update(s, 'utf8').digest();
}

/** The token in `file`, which must exist (a token file named explicitly is never generated). */
export function loadAdminToken(file: string): { token: string; created: false } {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new Error(`cannot read the admin token file ${file}: ${code === 'ENOENT' ? 'no such file' : (code ?? (e as Error).message)}`);
  }
  const token = text.trim();
  if (!token) throw new Error(`admin token file ${file} is empty`);
  return { token, created: false };
}

/** The token from configuration, or the one in `file`, created (0600) on first run. */
export function loadOrCreateAdminToken(file: string): { token: string; created: boolean } {
  if (existsSync(file)) {
    const token = readFileSync(file, 'utf8').trim();
    if (!token) throw new Error(`admin token file ${file} is empty`);
    return { token, created: false };
  }
  mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
  const token = randomBytes(32).toString('base64url');
  writeFileSync(file, token + '\n', { mode: 0o600, flag: 'wx' });
  chmodSync(file, 0o600);
  return { token, created: true };
}

/**
 * Server reflection on the admin listener lists and describes the admin API: the same token as the API itself is
 * required (the interceptor sees the call's metadata before the reflection service does). Other methods check the
 * token in their own wrapper (service.ts), which also logs the refusal.
 */
export function reflectionNeedsToken(auth: AdminAuth, onRefused: (peer: string) => void): ServerInterceptor {
  return (method, call) =>
    new ServerInterceptingCall(call, {
      start: (next) =>
        next(
          method.path.startsWith('/grpc.reflection.')
            ? {
                onReceiveMetadata: (md, pass) => {
                  if (auth.check(md)) return pass(md);
                  onRefused(call.getPeer());
                  call.sendStatus({ code: status.UNAUTHENTICATED, details: 'a valid admin bearer token is required' });
                },
              }
            : {},
        ),
    });
}
