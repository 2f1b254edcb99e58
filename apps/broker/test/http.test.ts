import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { connect as h2connect } from 'node:http2';
import { request as httpsRequest } from 'node:https';
import { connect as netConnect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyPluginAsync } from 'fastify';
import type { Store } from '@kb/store';
import { startBroker, type RunningBroker } from '../src/broker';
import { denied } from '../src/errors';
import { httpRoute } from '../src/http/route';
import type { HttpApi } from '../src/http/server';
import { silentLogger } from '../src/log';
import type { BrokerContext } from '../src/context';
import { testConfig, testDatabase } from './support/broker';
import { selfSignedCert } from './support/tls-cert';
import { eventually, sleep } from './support/wait';

/**
 * The HTTP listener's foundation (apps/broker/src/http): the same call adapter as gRPC (references, deadlines, audit
 * of every answer that carries a reference), schema validation and body limits answered through it, the per-peer
 * connection gate, HTTP/1.1 in plaintext and HTTP/2 + HTTP/1.1 over TLS. A test API is mounted at /test/v1.
 */
function testApi(ctx: BrokerContext): HttpApi {
  const plugin: FastifyPluginAsync = async (app) => {
    const schema = { body: { type: 'object', required: ['n'], additionalProperties: false, properties: { n: { type: 'integer', minimum: 0 } } } };
    app.post(
      '/echo',
      { schema },
      httpRoute(ctx, 'test.echo', async (req) => ({ n: (req.body as { n: number }).n })),
    );
    app.post(
      '/created',
      httpRoute(ctx, 'test.created', async (_req, _info, reply) => (reply.code(201), { made: true })),
    );
    app.delete(
      '/thing',
      httpRoute(ctx, 'test.delete', async () => undefined),
    );
    app.get(
      '/denied',
      httpRoute(ctx, 'test.denied', async () => Promise.reject(denied('the secret reason: policy p1 rule allowedDigests'))),
    );
    app.get(
      '/crash',
      httpRoute(ctx, 'test.crash', async () => Promise.reject(new Error('boom: a stack with internals'))),
    );
    app.get(
      '/slow',
      httpRoute(
        ctx,
        'test.slow',
        (_req, info) => new Promise((resolve) => info.signal.addEventListener('abort', () => setTimeout(() => resolve({ late: true }), 10))),
      ),
    );
  };
  return { prefix: '/test/v1', plugin };
}

describe('HTTP listener: one call adapter, limits, TLS', () => {
  const dir = mkdtempSync(join(tmpdir(), 'kb-http-'));
  let store: Store;
  let broker: RunningBroker;
  let base: string;

  beforeAll(async () => {
    store = await (await testDatabase('pglite')).open();
    const config = testConfig({ requestTimeoutSeconds: 0.5, maxConnectionsPerPeer: 3, maxConnections: 3 });
    broker = await startBroker(config, { store, logger: silentLogger, httpApis: (ctx) => [testApi(ctx)] });
    base = `http://${broker.httpAddress}`;
  });

  afterAll(async () => {
    await broker?.close();
    await store?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('answers a valid request, a 201 and a 204 as the handler says; /healthz is served', async () => {
    const r = await fetch(`${base}/test/v1/echo`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ n: 7 }) });
    expect(r.status).toBe(200);
    expect(await r.json()).toEqual({ n: 7 });
    expect((await fetch(`${base}/test/v1/created`, { method: 'POST' })).status).toBe(201);
    expect((await fetch(`${base}/test/v1/thing`, { method: 'DELETE' })).status).toBe(204);
    expect(await (await fetch(`${base}/healthz`)).json()).toEqual({ status: 'SERVING' });
  });

  it('a body the schema refuses is 400 with a reference, and the reason is in the audit trail under it', async () => {
    const r = await fetch(`${base}/test/v1/echo`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ n: -1 }) });
    expect(r.status).toBe(400);
    const body = (await r.json()) as { error: string; message: string; ref: string };
    expect(body.error).toBe('invalid');
    expect(body.message).toMatch(/ \(ref [0-9a-f]{12}\)$/);
    expect(r.headers.get('kb-ref')).toBe(body.ref);
    const entry = await eventually(async () => (await store.listAudit({ refId: body.ref })).find((e) => e.event === 'call'));
    expect(entry?.outcome).toBe('HTTP 400');
    expect(JSON.stringify(entry?.detail)).toMatch(/must be >= 0/);
  });

  it('a refusal says only "attestation failed" and its reference; the reason is audited', async () => {
    const r = await fetch(`${base}/test/v1/denied`);
    expect(r.status).toBe(403);
    const text = await r.text();
    expect(text).not.toMatch(/secret reason|policy|allowedDigests/);
    const body = JSON.parse(text) as { message: string; ref: string };
    expect(body.message).toBe(`attestation failed (ref ${body.ref})`);
    const entry = await eventually(async () => (await store.listAudit({ refId: body.ref })).find((e) => e.event === 'call'));
    expect(JSON.stringify(entry?.detail)).toMatch(/policy p1 rule allowedDigests/);
  });

  it('an unexpected exception is 500 "internal error" without its message; a slow handler is 504 within the timeout', async () => {
    const crash = await fetch(`${base}/test/v1/crash`);
    expect(crash.status).toBe(500);
    expect(await crash.text()).not.toMatch(/boom/);
    const t0 = performance.now();
    const slow = await fetch(`${base}/test/v1/slow`);
    expect(slow.status).toBe(504);
    expect(performance.now() - t0).toBeLessThan(5000);
    expect(((await slow.json()) as { message: string }).message).toMatch(/^the broker did not answer in time; retry later \(ref [0-9a-f]{12}\)$/);
  });

  it('a body over the limit is 413 with a reference; malformed JSON is 400; an unknown path is 404', async () => {
    const big = await fetch(`${base}/test/v1/echo`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ n: 1, pad: 'x'.repeat(70_000) }),
    });
    expect(big.status).toBe(413);
    expect(((await big.json()) as { ref: string }).ref).toMatch(/^[0-9a-f]{12}$/);
    const bad = await fetch(`${base}/test/v1/echo`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"n":' });
    expect(bad.status).toBe(400);
    expect((await fetch(`${base}/test/v1/nothing-here`)).status).toBe(404);
    // the server keeps serving after all of it
    expect((await fetch(`${base}/healthz`)).status).toBe(200);
  });

  it('connections over the per-peer cap are closed at once; the admitted ones keep working', async () => {
    const [host, port] = [broker.httpAddress!.split(':')[0]!, Number(broker.httpAddress!.split(':')[1])];
    const open: Socket[] = [];
    const closed: boolean[] = [];
    for (let i = 0; i < 5; i++) {
      const s = netConnect({ host, port });
      const idx = i;
      closed[idx] = false;
      s.on('close', () => (closed[idx] = true));
      s.on('error', () => undefined);
      open.push(s);
      await new Promise((r) => s.once('connect', r));
    }
    await sleep(200);
    // the cap is 3 per peer (fetch may still hold a kept-alive connection of its own): at least two of five are refused
    expect(closed.filter(Boolean).length).toBeGreaterThanOrEqual(2);
    expect(closed.filter(Boolean).length).toBeLessThan(5);
    for (const s of open) s.destroy();
    await eventually(async () => ((await fetch(`${base}/healthz`)).status === 200 ? true : undefined));
  });
});

describe('HTTP listener over TLS: HTTP/2 and HTTP/1.1', () => {
  const dir = mkdtempSync(join(tmpdir(), 'kb-https-'));
  let store: Store;
  let broker: RunningBroker;

  beforeAll(async () => {
    selfSignedCert(dir);
    store = await (await testDatabase('pglite')).open();
    broker = await startBroker(testConfig({ httpTlsCert: join(dir, 'cert.pem'), httpTlsKey: join(dir, 'key.pem') }), { store, logger: silentLogger });
  });

  afterAll(async () => {
    await broker?.close();
    await store?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('serves HTTP/2', async () => {
    const session = h2connect(`https://${broker.httpAddress}`, { ca: readFileSync(join(dir, 'cert.pem')) });
    try {
      const { status, body } = await new Promise<{ status: number; body: string }>((resolve, reject) => {
        const req = session.request({ ':path': '/healthz' });
        let status = 0;
        let body = '';
        req.on('response', (h) => (status = Number(h[':status'])));
        req.on('data', (d: Buffer) => (body += d.toString()));
        req.on('end', () => resolve({ status, body }));
        req.on('error', reject);
        req.end();
      });
      expect(status).toBe(200);
      expect(JSON.parse(body)).toEqual({ status: 'SERVING' });
    } finally {
      session.close();
    }
  });

  it('serves HTTP/1.1 on the same port', async () => {
    const [host, port] = broker.httpAddress!.split(':');
    const { status, version } = await new Promise<{ status: number; version: string }>((resolve, reject) => {
      const req = httpsRequest({ host, port: Number(port), path: '/healthz', ca: readFileSync(join(dir, 'cert.pem')), servername: 'localhost' }, (res) => {
        res.resume();
        res.on('end', () => resolve({ status: res.statusCode ?? 0, version: res.httpVersion }));
      });
      req.on('error', reject);
      req.end();
    });
    expect(status).toBe(200);
    expect(version).toBe('1.1');
  });
});
