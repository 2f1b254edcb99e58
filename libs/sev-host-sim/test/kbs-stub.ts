import { createCipheriv, createHash, createPublicKey, diffieHellman, generateKeyPairSync, randomBytes, sign, timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { parseSnpEvidenceJson, verifySnpReport, type SnpRoots } from '@kb/sev';

/**
 * A MINIMAL local KBS stub for the client tests, written from ../shared/specs/kbs-protocol.md (§2.2, §3.5, §6.2–§6.4,
 * §7) with its own JCS, KDF and JWE code (not the client's). It exists only because the broker's KBS front-end was not
 * on main when the client was written; it is not the broker. It verifies `snp` evidence with verifySnpReport and the
 * caller's (synthetic) roots, and serves one resource map.
 */
const jcs = (v: unknown): string =>
  v !== null && typeof v === 'object' && !Array.isArray(v)
    ? `{${Object.keys(v)
        .sort()
        .map((k) => `${JSON.stringify(k)}:${jcs((v as Record<string, unknown>)[k])}`)
        .join(',')}}`
    : JSON.stringify(v);

export interface StubEvent {
  kind: 'auth' | 'attest-ok' | 'attest-refused' | 'resource';
  detail: string;
}

export async function startKbsStub(o: {
  roots: SnpRoots;
  resources: Record<string, Buffer>;
  measurements?: Buffer[];
  tokenTtlSeconds?: number;
}): Promise<{ url: string; server: Server; events: StubEvent[]; close(): Promise<void> }> {
  const sessions = new Map<string, { nonce: string; tee: string; token?: string; jwk?: Record<string, string> }>();
  const tokenKey = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
  const events: StubEvent[] = [];
  const err = (res: ServerResponse, status: number, type: string, detail: string) => {
    res
      .writeHead(status, { 'content-type': 'application/json' })
      .end(JSON.stringify({ type: `https://github.com/confidential-containers/kbs/errors/${type}`, detail }));
  };
  const cookieOf = (req: IncomingMessage) => /(?:^|;\s*)kbs-session-id=([0-9a-f]{32})/.exec(req.headers.cookie ?? '')?.[1];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      const path = req.url ?? '';
      try {
        if (req.method === 'POST' && path === '/kbs/v0/auth') {
          const r = JSON.parse(body) as { version: string; tee: string };
          if (r.version !== '0.4.0')
            return err(
              res,
              401,
              'AttestationError',
              `Attestation error: RCAR handshake Auth failed: KBS Client Protocol Version Mismatch: expect =0.4.0 while the request is ${r.version}`,
            );
          const id = randomBytes(16).toString('hex');
          const nonce = randomBytes(32).toString('base64');
          sessions.set(id, { nonce, tee: r.tee });
          events.push({ kind: 'auth', detail: r.tee });
          res.writeHead(200, { 'content-type': 'application/json', 'set-cookie': `kbs-session-id=${id}; Max-Age=300; Path=/kbs/v0` });
          return res.end(JSON.stringify({ nonce, 'extra-params': '' }));
        }
        if (req.method === 'POST' && path === '/kbs/v0/attest') {
          const s = sessions.get(cookieOf(req) ?? '');
          if (!s) return err(res, 401, 'AttestationError', 'Attestation error: RCAR handshake Attest failed');
          const a = JSON.parse(body) as {
            'runtime-data': { nonce: string; 'tee-pubkey': Record<string, string> };
            'tee-evidence': { primary_evidence: unknown; additional_evidence: string };
          };
          const k = a['runtime-data']['tee-pubkey'];
          const jwk = { kty: k.kty!, crv: k.crv!, alg: k.alg!, x: k.x!, y: k.y! };
          const digest = createHash('sha384')
            .update(jcs({ 'tee-pubkey': jwk, nonce: s.nonce, 'additional-evidence': a['tee-evidence'].additional_evidence }))
            .digest();
          if (a['runtime-data'].nonce !== s.nonce || s.tee !== 'snp')
            return err(res, 401, 'AttestationError', 'Attestation error: RCAR handshake Attest failed');
          const { report, certificates } = parseSnpEvidenceJson(a['tee-evidence'].primary_evidence);
          const v = verifySnpReport(report, {
            roots: o.roots,
            certificates,
            expectedReportData: Buffer.concat([digest, Buffer.alloc(16)]),
            ...(o.measurements ? { measurements: o.measurements } : {}),
          });
          if (!v.ok) {
            events.push({ kind: 'attest-refused', detail: `${v.error!.code}: ${v.error!.message}` });
            return err(res, 401, 'AttestationError', 'Attestation error: RCAR handshake Attest failed');
          }
          const b64 = (x: unknown) => Buffer.from(JSON.stringify(x)).toString('base64url');
          const now = Math.floor(Date.now() / 1000);
          const signing = `${b64({ typ: 'JWT', alg: 'ES256' })}.${b64({ iat: now, exp: now + (o.tokenTtlSeconds ?? 300), 'tee-pubkey': jwk })}`;
          s.token = `${signing}.${sign('sha256', Buffer.from(signing), { key: tokenKey, dsaEncoding: 'ieee-p1363' }).toString('base64url')}`;
          s.jwk = jwk;
          events.push({ kind: 'attest-ok', detail: v.report!.measurement.toString('hex') });
          res.writeHead(200, { 'content-type': 'application/json', 'set-cookie': `kbs-session-id=${cookieOf(req)}; Max-Age=300; Path=/kbs/v0` });
          return res.end(JSON.stringify({ token: s.token }));
        }
        const m = /^\/kbs\/v0\/resource\/(.+)$/.exec(path);
        if (req.method === 'GET' && m) {
          let jwk = sessions.get(cookieOf(req) ?? '')?.jwk;
          const bearer = /^Bearer (.+)$/.exec(req.headers.authorization ?? '')?.[1];
          if (!jwk && bearer) {
            for (const s of sessions.values())
              if (s.token && s.token.length === bearer.length && timingSafeEqual(Buffer.from(s.token), Buffer.from(bearer))) jwk = s.jwk;
          }
          if (!jwk) return err(res, 401, 'TokenNotFound', 'Attestation Token not found');
          const data = o.resources[m[1]!];
          if (!data) return err(res, 404, 'PluginInternalError', 'Plugin internal error');
          events.push({ kind: 'resource', detail: m[1]! });
          return res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(jweTo(jwk, data)));
        }
        return err(res, 404, 'PluginNotFound', 'Plugin not found');
      } catch (e) {
        return err(res, 401, 'AttestationError', `bad request: ${(e as Error).message}`);
      }
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  return { url: `http://127.0.0.1:${port}`, server, events, close: () => new Promise((r) => server.close(() => r())) };
}

/** ECDH-ES+A256KW / A256GCM JWE in flattened JSON (§6.3–§6.5). */
export function jweTo(jwk: Record<string, string>, plaintext: Buffer, fixed?: { epkPrivate?: import('node:crypto').KeyObject; cek?: Buffer; iv?: Buffer }) {
  const pub = createPublicKey({ key: { kty: 'EC', crv: jwk.crv!, x: jwk.x!, y: jwk.y! }, format: 'jwk' });
  const eph = fixed?.epkPrivate ?? generateKeyPairSync('ec', { namedCurve: jwk.crv! }).privateKey;
  const e = createPublicKey(eph).export({ format: 'jwk' });
  const z = diffieHellman({ privateKey: eph, publicKey: pub });
  const u32 = (v: number) => {
    const b = Buffer.alloc(4);
    b.writeUInt32BE(v);
    return b;
  };
  const alg = Buffer.from('ECDH-ES+A256KW');
  const kek = createHash('sha256')
    .update(Buffer.concat([u32(1), z, u32(alg.length), alg, u32(0), u32(0), u32(256)]))
    .digest();
  const cek = fixed?.cek ?? randomBytes(32);
  const w = createCipheriv('id-aes256-wrap', kek, Buffer.from('a6a6a6a6a6a6a6a6', 'hex'));
  const encryptedKey = Buffer.concat([w.update(cek), w.final()]);
  const protectedB64 = Buffer.from(`{"alg":"ECDH-ES+A256KW","enc":"A256GCM","epk":{"crv":"${jwk.crv}","kty":"EC","x":"${e.x}","y":"${e.y}"}}`).toString(
    'base64url',
  );
  const iv = fixed?.iv ?? randomBytes(12);
  const g = createCipheriv('aes-256-gcm', cek, iv);
  g.setAAD(Buffer.from(protectedB64, 'ascii'));
  const ct = Buffer.concat([g.update(plaintext), g.final()]);
  return {
    protected: protectedB64,
    encrypted_key: encryptedKey.toString('base64url'),
    iv: iv.toString('base64url'),
    ciphertext: ct.toString('base64url'),
    tag: g.getAuthTag().toString('base64url'),
  };
}
