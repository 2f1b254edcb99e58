import { status } from '@grpc/grpc-js';
import { admin } from '@kb/grpc-api';
import { openStore, type Store } from '@kb/store';
import { Client } from 'pg';
import { createServer, type AddressInfo } from 'node:net';
import { ConfigError, parseConfig } from '../src/config';
import { ADMIN_TOKEN, MASTER_KEY, policyFor, startTestBroker, testDatabase, type TestBroker } from './support/broker';
import { failure, OwnerClient } from './support/grpc';
import { expectedDigest, prepareLaunch, simulatedLaunch } from './support/host';
import { rawClient, rawUnary } from './support/fuzz';
import { httpGet, scrape, value, type Sample } from './support/prometheus';
import { eventually } from './support/wait';
import { api, launchBody, sevRegistration, sha256hex } from './support/attestation';
import { randomUUID } from 'node:crypto';

const KEY = [{ Guid: '0b6f2c0e-3f5e-4c1a-9d55-7f1d2a9b8c41', Format: 'binary', SecretType: 'key', Id: 'metrics/key/disk' }];
/** --request-timeout, and so the statement timeout */
const TIMEOUT_S = 1;
const BUNDLE = '/keybroker.KeyBrokerService/GetBundle';
const SECRET = '/keybroker.KeyBrokerService/GetSecret';

/** How much each series moved between two scrapes (a series absent before counts from 0). */
const moved = (before: Sample[], after: Sample[], name: string, match: Record<string, string> = {}) =>
  (value(after, name, match) ?? 0) - (value(before, name, match) ?? 0);

describe('Prometheus metrics on --metrics-listen, scraped over HTTP after real gRPC calls (PostgreSQL)', () => {
  let db: Awaited<ReturnType<typeof testDatabase>>;
  let store: Store;
  let tb: TestBroker;
  let locker: Client;
  let metricsAt: string;

  beforeAll(async () => {
    db = await testDatabase('pg');
    // What kb-broker --database-url does with --request-timeout: the same bound as the statement timeout.
    store = await openStore({ driver: 'pg', url: db.url, masterKey: MASTER_KEY, maxConnections: 20, statementTimeoutMs: TIMEOUT_S * 1000 });
    tb = await startTestBroker(store, { metricsListen: '127.0.0.1:0', requestTimeoutSeconds: TIMEOUT_S });
    metricsAt = tb.broker.metricsAddress!;
    await tb.owner.call('putPolicy', { name: 'default', document_json: policyFor([expectedDigest(0x1)]) });
    await tb.owner.call('putSecret', { id: 'metrics/key/disk', value: Buffer.from('disk passphrase'), policy_name: '' });
    locker = new Client({ connectionString: db.url });
    await locker.connect();
  }, 120_000);

  afterAll(async () => {
    await locker?.end();
    await tb?.close();
    await store?.close();
    await db?.drop();
  });

  it('serves GET /metrics only, in the Prometheus text format', async () => {
    const ok = await httpGet(metricsAt, '/metrics');
    expect(ok.status).toBe(200);
    expect(ok.type).toMatch(/^text\/plain; version=0\.0\.4/);
    expect(ok.body).toMatch(/^# HELP kb_rpc_requests_total /m);
    expect((await httpGet(metricsAt, '/')).status).toBe(404);
    expect((await httpGet(metricsAt, '/metrics', 'POST')).status).toBe(405);
  });

  it('counts guest calls by method and status code, with latency histograms, and launch outcomes by class', async () => {
    const before = await scrape(metricsAt);
    const { secrets } = await simulatedLaunch(tb.host, tb.platform, { policy: 0x1, requests: KEY });
    expect(secrets.map((s) => s.data.toString())).toEqual(['disk passphrase']);
    // a launch that measured something else: refused (PERMISSION_DENIED)
    const wrong = await prepareLaunch(tb.host, tb.platform, { policy: 0x1, requests: KEY, firmware: Buffer.alloc(32 * 1024) });
    expect((await failure(tb.host.getSecret(wrong.request))).code).toBe(status.PERMISSION_DENIED);
    // malformed input: INVALID_ARGUMENT
    expect((await failure(tb.host.getBundle({ CertificateChain: 'not base64!', Policy: 1 }))).code).toBe(status.INVALID_ARGUMENT);
    const after = await scrape(metricsAt);

    const rpc = (method: string, code: string) => moved(before, after, 'kb_rpc_requests_total', { api: 'guest', method, code });
    expect(rpc(BUNDLE, 'OK')).toBe(2);
    expect(rpc(BUNDLE, 'INVALID_ARGUMENT')).toBe(1);
    expect(rpc(SECRET, 'OK')).toBe(1);
    expect(rpc(SECRET, 'PERMISSION_DENIED')).toBe(1);
    // the histogram's count and sum moved with the counter
    expect(moved(before, after, 'kb_rpc_duration_seconds_count', { api: 'guest', method: BUNDLE, code: 'OK' })).toBe(2);
    expect(moved(before, after, 'kb_rpc_duration_seconds_sum', { api: 'guest', method: SECRET, code: 'OK' })).toBeGreaterThan(0);
    expect(moved(before, after, 'kb_rpc_duration_seconds_bucket', { api: 'guest', method: SECRET, code: 'OK', le: '+Inf' })).toBe(1);

    const launch = (step: string, outcome: string, cls = '') => moved(before, after, 'kb_launch_steps_total', { step, outcome, class: cls });
    expect(launch('bundle', 'bundled')).toBe(2);
    expect(launch('bundle', 'refused', 'invalid')).toBe(1);
    expect(launch('secret', 'released')).toBe(1);
    expect(launch('secret', 'refused', 'denied')).toBe(1);
    // every agreement the ECDH pool served is counted, whatever it found made ahead
    expect(moved(before, after, 'kb_ecdh_agreements_total')).toBe(2);
  });

  it("shows the ECDH workers' stock filling up while they are idle", async () => {
    // after the launches above the workers work ahead (keys, agreements with the latest PDH) up to their stock
    const stocked = await eventually(async () => {
      const v = value(await scrape(metricsAt), 'kb_ecdh_pool_stock') ?? 0;
      return v > 0 ? v : undefined;
    });
    expect(stocked).toBeGreaterThan(0);
  });

  it('counts what grpc-js answers itself, before any handler: an undecodable request, one over the size limit', async () => {
    const before = await scrape(metricsAt);
    const raw = rawClient(tb.broker.address);
    let truncated, oversized;
    try {
      truncated = await rawUnary(raw, BUNDLE, Buffer.from([0x0a, 0xff, 0x01, 0x41])); // field 1 claims 255 bytes, has 2
      oversized = await rawUnary(raw, BUNDLE, Buffer.alloc(80 * 1024, 0x41)); // over the 64 KiB request limit
    } finally {
      raw.close();
    }
    expect(truncated.code).not.toBe(status.OK);
    expect(oversized.code).toBe(status.RESOURCE_EXHAUSTED);
    const after = await scrape(metricsAt);
    const code = (c: status) => status[c];
    expect(moved(before, after, 'kb_rpc_requests_total', { api: 'guest', method: BUNDLE, code: code(truncated.code) })).toBe(1);
    expect(moved(before, after, 'kb_rpc_requests_total', { api: 'guest', method: BUNDLE, code: 'RESOURCE_EXHAUSTED' })).toBe(1);
    expect(moved(before, after, 'kb_rpc_requests_total', { api: 'guest', method: BUNDLE, code: 'CANCELLED' })).toBe(0);
  });

  it('counts admin calls, refusals of a bad token included', async () => {
    const before = await scrape(metricsAt);
    await tb.owner.call('listPolicies', { prefix: '', page_size: 0, page_token: '' });
    const intruder = new OwnerClient(tb.broker.adminAddress, 'not-the-admin-token-at-all');
    try {
      expect((await failure(intruder.call('listPolicies', { prefix: '', page_size: 0, page_token: '' }))).code).toBe(status.UNAUTHENTICATED);
    } finally {
      intruder.close();
    }
    const after = await scrape(metricsAt);
    const method = admin.BrokerAdminService.listPolicies.path;
    expect(moved(before, after, 'kb_rpc_requests_total', { api: 'admin', method, code: 'OK' })).toBe(1);
    expect(moved(before, after, 'kb_rpc_requests_total', { api: 'admin', method, code: 'UNAUTHENTICATED' })).toBe(1);
    expect(moved(before, after, 'kb_rpc_duration_seconds_count', { api: 'admin', method })).toBe(2);
  });

  it('shows pending sessions and the database pool', async () => {
    const before = await scrape(metricsAt);
    await prepareLaunch(tb.host, tb.platform, { policy: 0x1, requests: KEY }); // a GetBundle whose GetSecret never comes
    const after = await scrape(metricsAt);
    expect(moved(before, after, 'kb_pending_sessions')).toBe(1);
    expect(value(after, 'kb_pending_sessions')).toBe(await store.countPendingSessions(new Date()));
    expect(value(after, 'kb_db_pool_max_connections')).toBe(20); // the pool size opened above
    expect(value(after, 'kb_db_pool_connections')).toBeGreaterThanOrEqual(1);
    expect(value(after, 'kb_db_pool_waiting_requests')).toBe(0);
  });

  it('counts statement timeouts, and the refusal as a timeout', async () => {
    const before = await scrape(metricsAt);
    await locker.query('BEGIN');
    let err;
    let after: Sample[] | undefined;
    try {
      await locker.query('LOCK TABLE launch_sessions IN EXCLUSIVE MODE');
      err = await failure(prepareLaunch(tb.host, tb.platform, { policy: 0x1, requests: KEY }));
      // The call's own deadline and the statement timeout are the same second: the lock is held until the statement
      // has been cancelled, or it would go through once the lock is gone.
      after = await eventually(async () => {
        const s = await scrape(metricsAt);
        return moved(before, s, 'kb_db_statement_timeouts_total') >= 1 ? s : undefined;
      }, 5000);
    } finally {
      await locker.query('ROLLBACK');
    }
    expect(err.code).toBe(status.DEADLINE_EXCEEDED);
    expect(after).toBeDefined();
    expect(moved(before, after!, 'kb_launch_steps_total', { step: 'bundle', outcome: 'refused', class: 'timeout' })).toBe(1);
    expect(moved(before, after!, 'kb_rpc_requests_total', { api: 'guest', method: BUNDLE, code: 'DEADLINE_EXCEEDED' })).toBe(1);
  });

  it('shows the audit queue growing while the database cannot take its writes, and draining after', async () => {
    // the bundle is prepared first: its audit row is committed with its session (a bundle is never issued unaudited)
    const p = await prepareLaunch(tb.host, tb.platform, { policy: 0x1, requests: KEY, firmware: Buffer.alloc(32 * 1024) });
    await locker.query('BEGIN');
    let during: Sample[] | undefined;
    try {
      await locker.query('LOCK TABLE audit_log IN EXCLUSIVE MODE');
      // a refused GetSecret writes nothing but audit entries (the refusal, and the call's reference): both queue behind the lock
      expect((await failure(tb.host.getSecret(p.request))).code).toBe(status.PERMISSION_DENIED);
      during = await eventually(async () => {
        const s = await scrape(metricsAt);
        return (value(s, 'kb_audit_queue_length') ?? 0) >= 2 && (value(s, 'kb_audit_queue_lag_seconds') ?? 0) > 0.05 ? s : undefined;
      }, 800);
    } finally {
      await locker.query('ROLLBACK');
    }
    expect(during).toBeDefined(); // the refusal's and the reference's entries, both waiting
    const drained = await eventually(async () => {
      const s = await scrape(metricsAt);
      return value(s, 'kb_audit_queue_length') === 0 ? s : undefined;
    });
    expect(value(drained!, 'kb_audit_queue_lag_seconds')).toBe(0);
  });

  it('counts HTTP requests by route pattern, method and status, and /launch and /validate as launch steps', async () => {
    const before = await scrape(metricsAt);
    const base = `http://${tb.broker.httpAddress}`;
    const vm = randomUUID();
    const registration = sevRegistration(tb.platform, 'firmware');
    expect((await api(base, 'POST', `/sev/v1/vm/${vm}`, registration, ADMIN_TOKEN)).status).toBe(201);
    expect((await api(base, 'POST', `/sev/v1/vm/${vm}/launch`, launchBody(tb.platform))).status).toBe(200);
    expect((await api(base, 'POST', `/sev/v1/vm/${vm}/launch`, {})).status).toBe(400); // the schema refuses it
    const claims = { 'api-major': 1, 'api-minor': 51, 'build-id': 3, policy: 1, measurement: Buffer.alloc(48).toString('base64'), 'cpu-count': 1 };
    const unknown = { ...claims, 'launch-id': randomUUID(), 'firmware-hash': sha256hex('firmware') };
    expect((await api(base, 'POST', `/sev/v1/vm/${vm}/validate`, unknown)).status).toBe(403);
    expect((await api(base, 'GET', '/no/such/path')).status).toBe(404);
    expect((await api(base, 'GET', '/healthz')).status).toBe(200);
    // counted once each answer is sent (Fastify's onResponse), so the scrape may come first: wait for the last one
    const after = (await eventually(async () => {
      const s = await scrape(metricsAt);
      return moved(before, s, 'kb_http_requests_total', { route: '/healthz', method: 'GET', status: '200' }) === 1 ? s : undefined;
    }))!;
    expect(after).toBeDefined();
    const http = (route: string, method: string, status: string) => moved(before, after, 'kb_http_requests_total', { route, method, status });
    expect(http('/sev/v1/vm/:uuid', 'POST', '201')).toBe(1);
    expect(http('/sev/v1/vm/:uuid/launch', 'POST', '200')).toBe(1);
    expect(http('/sev/v1/vm/:uuid/launch', 'POST', '400')).toBe(1);
    expect(http('/sev/v1/vm/:uuid/validate', 'POST', '403')).toBe(1);
    expect(http('unmatched', 'GET', '404')).toBe(1);
    expect(moved(before, after, 'kb_http_request_duration_seconds_count', { route: '/sev/v1/vm/:uuid/launch', method: 'POST', status: '200' })).toBe(1);
    const launch = (step: string, outcome: string, cls = '') => moved(before, after, 'kb_launch_steps_total', { step, outcome, class: cls });
    expect(launch('vm-launch', 'bundled')).toBe(1);
    expect(launch('vm-launch', 'refused', 'invalid')).toBe(1);
    expect(launch('vm-validate', 'refused', 'denied')).toBe(1);
    // the route pattern, never the path a caller sent: no VM uuid in any label
    expect((await httpGet(metricsAt, '/metrics')).body).not.toContain(vm);
  });

  it('puts no token, launch id, peer address or secret in any label', async () => {
    const { bundle } = await simulatedLaunch(tb.host, tb.platform, { policy: 0x1, requests: KEY });
    const text = (await httpGet(metricsAt, '/metrics')).body;
    for (const leak of [ADMIN_TOKEN, bundle.LaunchId, 'disk passphrase', '127.0.0.1', 'not-the-admin-token-at-all']) expect(text).not.toContain(leak);
    const labelNames = new Set((await scrape(metricsAt)).flatMap((s) => Object.keys(s.labels)));
    expect([...labelNames].sort()).toEqual(expect.arrayContaining(['api', 'code', 'method']));
    for (const n of labelNames)
      expect([
        'api',
        'method',
        'code',
        'le',
        'step',
        'outcome',
        'class',
        'ahead',
        'version',
        'major',
        'minor',
        'patch',
        'space',
        'kind',
        'type',
        'route',
        'status',
      ]).toContain(n);
  });
});

describe('metrics are off unless --metrics-listen is given', () => {
  it('opens no listener by default', async () => {
    const db = await testDatabase('pglite');
    const store = await db.open();
    const tb = await startTestBroker(store);
    try {
      expect(tb.broker.metricsAddress).toBeUndefined();
    } finally {
      await tb.close();
      await store.close();
    }
  });
});

describe('--metrics-listen / KB_METRICS_LISTEN', () => {
  const parse = (args: string[], env: NodeJS.ProcessEnv = {}) => {
    const c = parseConfig(args, env);
    if (c === 'help') throw new Error('unreachable');
    return c.metricsListen;
  };

  it('takes HOST:PORT or [IPv6]:PORT, from the flag or the environment (the flag wins)', () => {
    expect(parse(['--metrics-listen', '0.0.0.0:9464'])).toBe('0.0.0.0:9464');
    expect(parse(['--metrics-listen', '[::1]:9464'])).toBe('[::1]:9464');
    expect(parse([], { KB_METRICS_LISTEN: 'metrics.internal:9100' })).toBe('metrics.internal:9100');
    expect(parse(['--metrics-listen', '127.0.0.1:1'], { KB_METRICS_LISTEN: '127.0.0.1:2' })).toBe('127.0.0.1:1');
    expect(parse([])).toBeUndefined();
  });

  it('refuses anything else before the broker opens anything, naming the flag', () => {
    for (const bad of ['9464', 'localhost', ':9464', '127.0.0.1:70000', '127.0.0.1:', 'http://127.0.0.1:9464', '::1:9464']) {
      expect(() => parse(['--metrics-listen', bad])).toThrow(ConfigError);
      expect(() => parse(['--metrics-listen', bad])).toThrow(/--metrics-listen must be HOST:PORT/);
    }
  });

  it('a metrics port in use stops the start-up with one clear message, and frees the other ports', async () => {
    const taken = createServer();
    await new Promise<void>((r) => taken.listen(0, '127.0.0.1', () => r()));
    const port = (taken.address() as AddressInfo).port;
    const db = await testDatabase('pglite');
    const store = await db.open();
    try {
      await expect(startTestBroker(store, { metricsListen: `127.0.0.1:${port}` })).rejects.toThrow(`cannot listen on 127.0.0.1:${port} (--metrics-listen)`);
      // the same store serves a broker started right after: nothing was left half-open
      const tb = await startTestBroker(store);
      await tb.close();
    } finally {
      taken.close();
      await store.close();
    }
  });
});
