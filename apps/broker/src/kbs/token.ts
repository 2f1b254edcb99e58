/**
 * The attestation token (../shared/specs/kbs-protocol.md §5): an EAR-shaped JWT, ES256, signed with a P-256 key that
 * the broker keeps sealed in its store (shared by every replica, surviving restarts). Its public key is in the JOSE
 * header (`jwk`, as trustee's) and published as a JWK Set at KBS_TOKEN_JWKS_PATH. The attested TEE key sits at the
 * EAR path of §5.3 (`submods.cpu0["ear.veraison.annotated-evidence"].runtime_data_claims["tee-pubkey"]`) so the
 * Bearer (CDH) path finds it in the token alone.
 */
import { createPrivateKey, createPublicKey, generateKeyPairSync, sign, verify, type KeyObject } from 'node:crypto';
import { KbsError } from './errors';
import type { TeePubKey } from './binding';

export const KBS_TOKEN_JWKS_PATH = '/kbs/v0/token-certificate-chain';
export const EAR_PROFILE = 'tag:github.com,2024:confidential-containers/Trustee';
export const TOKEN_ISSUER = 'sev-keybroker';

export type JsonObject = { [k: string]: unknown };

export interface TokenInput {
  tee: string;
  teePubKey: TeePubKey;
  nonce: string;
  additionalEvidence: string;
  reportDataHex: string;
  initDataHex: string | null;
  teeClaims: JsonObject;
  /** SNP launch facts for the release policies (policy engine's SnpLaunchFacts, hex strings) */
  snpFacts?: JsonObject;
  iat: number;
  exp: number;
}

export interface VerifiedToken {
  claims: JsonObject;
  teePubKey: unknown;
  tee: string | undefined;
}

/** A fresh PKCS#8 DER P-256 key, for KbsStore.kbsTokenKey on first use. */
export function newTokenKey(): Buffer {
  return generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).privateKey.export({ format: 'der', type: 'pkcs8' });
}

export class TokenSigner {
  readonly #key: KeyObject;
  readonly publicKey: KeyObject;
  readonly publicJwk: JsonObject;
  readonly #header: string;

  constructor(pkcs8Der: Buffer) {
    this.#key = createPrivateKey({ key: pkcs8Der, format: 'der', type: 'pkcs8' });
    this.publicKey = createPublicKey(this.#key);
    const j = this.publicKey.export({ format: 'jwk' });
    this.publicJwk = { kty: 'EC', crv: 'P-256', alg: 'ES256', x: j.x, y: j.y };
    this.#header = Buffer.from(JSON.stringify({ typ: 'JWT', alg: 'ES256', jwk: this.publicJwk })).toString('base64url');
  }

  issue(t: TokenInput): string {
    const claims = {
      eat_profile: EAR_PROFILE,
      iat: t.iat,
      nbf: t.iat,
      exp: t.exp,
      iss: TOKEN_ISSUER,
      'ear.verifier-id': { developer: 'sev-keybroker', build: 'sev-keybroker kbs' },
      submods: {
        cpu0: {
          'ear.status': 'affirming',
          'ear.appraisal-policy-id': 'default',
          'ear.veraison.annotated-evidence': {
            init_data: t.initDataHex,
            init_data_claims: null,
            report_data: t.reportDataHex,
            runtime_data_claims: { 'additional-evidence': t.additionalEvidence, nonce: t.nonce, 'tee-pubkey': t.teePubKey },
            [t.tee]: t.teeClaims,
          },
        },
      },
      'kb.tee': t.tee,
      ...(t.snpFacts ? { 'kb.snp-facts': t.snpFacts } : {}),
    };
    const signingInput = `${this.#header}.${Buffer.from(JSON.stringify(claims)).toString('base64url')}`;
    const sig = sign('sha256', Buffer.from(signingInput), { key: this.#key, dsaEncoding: 'ieee-p1363' });
    return `${signingInput}.${sig.toString('base64url')}`;
  }

  /**
   * A token presented back (Bearer or from a cookie session, §5.4): our signature (the header `jwk` is ignored, only
   * our own key is trusted), integer `exp` not passed (no leeway: the client re-attests on 401), `nbf` reached.
   */
  verify(token: string, nowSeconds: number): VerifiedToken {
    const fail = (why: string) => new KbsError('TokenVerifierError', `attestation token: ${why}`);
    const parts = token.split('.');
    if (parts.length !== 3 || parts.some((p) => !/^[A-Za-z0-9_-]+$/.test(p))) throw fail('not a JWS compact serialization');
    let header: JsonObject;
    let claims: JsonObject;
    try {
      header = JSON.parse(Buffer.from(parts[0]!, 'base64url').toString('utf8')) as JsonObject;
      claims = JSON.parse(Buffer.from(parts[1]!, 'base64url').toString('utf8')) as JsonObject;
    } catch {
      throw fail('header or payload is not JSON');
    }
    if (header?.alg !== 'ES256') throw fail(`alg ${JSON.stringify(header?.alg)}`);
    const ok = verify(
      'sha256',
      Buffer.from(`${parts[0]}.${parts[1]}`),
      { key: this.publicKey, dsaEncoding: 'ieee-p1363' },
      Buffer.from(parts[2]!, 'base64url'),
    );
    if (!ok) throw fail('signature does not verify with the broker token key');
    if (typeof claims !== 'object' || claims === null) throw fail('payload is not an object');
    if (!Number.isSafeInteger(claims.exp)) throw fail('no integer exp');
    if ((claims.exp as number) <= nowSeconds) throw fail('expired');
    if (claims.nbf !== undefined && !(Number.isSafeInteger(claims.nbf) && (claims.nbf as number) <= nowSeconds)) throw fail('not yet valid');
    const ev = ((claims.submods as JsonObject | undefined)?.cpu0 as JsonObject | undefined)?.['ear.veraison.annotated-evidence'] as JsonObject | undefined;
    const teePubKey = (ev?.runtime_data_claims as JsonObject | undefined)?.['tee-pubkey'];
    if (teePubKey === undefined) throw fail('no tee-pubkey in the claims');
    return { claims, teePubKey, tee: typeof claims['kb.tee'] === 'string' ? (claims['kb.tee'] as string) : undefined };
  }

  /** The JWK Set published at KBS_TOKEN_JWKS_PATH for relying parties. */
  jwks(): { keys: JsonObject[] } {
    return { keys: [{ ...this.publicJwk, use: 'sig' }] };
  }
}
