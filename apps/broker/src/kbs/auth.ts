/**
 * Step 1, `POST /kbs/v0/auth` (../shared/specs/kbs-protocol.md §2): check the protocol version and TEE, make a
 * nonce of 32 random bytes (standard base64, 44 characters, §2.4) and a handshake session in the database (§2.6),
 * answer the Challenge with `extra-params: ""` (SHA-384, §2.5) and the session cookie.
 */
import { randomBytes } from 'node:crypto';
import { KbsError } from './errors';
import { KBS_PROTOCOL_VERSION, type KbsDeps, type KbsReply } from './service';

const SEMVER = /^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$/;

/** §8.3: exactly 0.4.0; build metadata ignored (semver), a pre-release is a mismatch. */
export function checkVersion(version: unknown): void {
  if (typeof version !== 'string')
    throw new KbsError('AttestationError', 'auth: version is not a string', 'Attestation error: RCAR handshake Auth failed: deserialize Request');
  const m = SEMVER.exec(version);
  if (!m)
    throw new KbsError(
      'AttestationError',
      `auth: unparsable version ${JSON.stringify(version.slice(0, 40))}`,
      'Attestation error: RCAR handshake Auth failed: failed to parse KBS version',
    );
  if (`${m[1]}.${m[2]}.${m[3]}` !== KBS_PROTOCOL_VERSION || m[4] !== undefined) {
    // the client's own version, safe to echo; guest-components' test looks for this substring (§2.2 step 3)
    const shown = version.length > 40 ? `${version.slice(0, 40)}…` : version;
    throw new KbsError(
      'AttestationError',
      `auth: protocol version ${shown}`,
      `Attestation error: RCAR handshake Auth failed: KBS Client Protocol Version Mismatch: expect =${KBS_PROTOCOL_VERSION} while the request is ${shown}`,
    );
  }
}

export async function handleAuth(deps: KbsDeps, body: unknown): Promise<KbsReply> {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw new KbsError('AttestationError', 'auth: the body is not a Request object', 'Attestation error: RCAR handshake Auth failed: deserialize Request');
  }
  const req = body as Record<string, unknown>;
  if (typeof req.tee !== 'string')
    throw new KbsError('AttestationError', 'auth: tee is not a string', 'Attestation error: RCAR handshake Auth failed: deserialize Request');
  checkVersion(req.version);
  const tee = req.tee;
  if (tee !== 'snp' && !(tee === 'sample' && deps.options.sampleTee)) {
    throw new KbsError(
      'AttestationError',
      `auth: TEE ${JSON.stringify(tee.slice(0, 40))} is not served${tee === 'sample' ? ' (the sample TEE is off; --kbs-sample-tee enables it for tests)' : ''}`,
    );
  }
  // extra-params: any JSON value, a missing member as {} (§2.1); the client's hash list is not needed for SHA-384
  const now = deps.now();
  const id = randomBytes(16).toString('hex');
  const nonce = randomBytes(32).toString('base64');
  const expires = new Date(now.getTime() + deps.options.sessionTtlSeconds * 1000);
  await deps.store.createKbsSession({ id, tee, nonce, createdAt: now, expiresAt: expires });
  return { body: { nonce, 'extra-params': '' }, cookie: { id, expires, now } };
}
