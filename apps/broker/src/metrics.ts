import { createServer, type Server as HttpServer } from 'node:http';
import { ServerInterceptingCall, status, type ServerInterceptor } from '@grpc/grpc-js';
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { Store } from '@kb/store';
import type { AuditTrail } from './audit';
import { parseHostPort } from './config';
import { failureClassOfHttpStatus } from './errors';
import type { EcdhPool } from './keybroker/ecdh-pool';
import type { Logger } from './log';

/** Which listener a call came in on; the only values the `api` label takes. */
export type Api = 'guest' | 'admin';

/**
 * A gRPC status as the class of failure a host learns (errors.ts): the `class` label of refusals. Statuses outside
 * the broker's own mapping (a call cut short by the client, a transport failure) keep a name of their own.
 */
const CLASS_OF: Partial<Record<status, string>> = {
  [status.INVALID_ARGUMENT]: 'invalid',
  [status.PERMISSION_DENIED]: 'denied',
  [status.RESOURCE_EXHAUSTED]: 'exhausted',
  [status.DEADLINE_EXCEEDED]: 'timeout',
  [status.CANCELLED]: 'cancelled',
  [status.UNAVAILABLE]: 'unavailable',
};
const classOf = (code: status) => CLASS_OF[code] ?? 'internal';

/** The guest-facing calls that make up a launch, and the outcome a success is counted as. */
const LAUNCH_STEPS: Record<string, { step: string; success: 'bundled' | 'released' }> = {
  '/keybroker.KeyBrokerService/GetBundle': { step: 'bundle', success: 'bundled' },
  '/keybroker.KeyBrokerService/GetSecret': { step: 'secret', success: 'released' },
  '/keybroker.KeyBrokerService/GetOnlineSecret': { step: 'online-secret', success: 'released' },
};

/** The attestation service's launch steps (HTTP routes, POST), counted in kb_launch_steps_total beside gRPC's. */
const HTTP_LAUNCH_STEPS: Record<string, { step: string; success: 'bundled' | 'released' }> = {
  '/sev/v1/vm/:uuid/launch': { step: 'vm-launch', success: 'bundled' },
  '/sev/v1/vm/:uuid/validate': { step: 'vm-validate', success: 'released' },
};
const HTTP_METHODS = new Set(['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS']);

/**
 * Latency buckets, seconds: a warm GetBundle answers in about a millisecond, a GetSecret on PostgreSQL in a few, and
 * --request-timeout (default 10 s) caps every call.
 */
const RPC_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

export interface MetricSources {
  store: Store;
  ecdh: EcdhPool;
  audit: AuditTrail;
  now: () => Date;
}

/**
 * The broker's Prometheus metrics (README "Metrics" lists them). Labels carry only method names, status codes and
 * failure classes — never a peer, launch id, reference, token or anything a caller sent — so the series stay few and
 * nothing secret can reach a scrape.
 */
export class BrokerMetrics {
  readonly registry = new Registry();
  private readonly rpcs: Counter<'api' | 'method' | 'code'>;
  private readonly rpcSeconds: Histogram<'api' | 'method' | 'code'>;
  private readonly launches: Counter<'step' | 'outcome' | 'class'>;
  private readonly httpRequests: Counter<'route' | 'method' | 'status'>;
  private readonly httpSeconds: Histogram<'route' | 'method' | 'status'>;
  private sources: MetricSources | undefined;

  constructor() {
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry, prefix: 'kb_' });
    this.rpcs = new Counter({
      name: 'kb_rpc_requests_total',
      help: 'gRPC calls answered, by API (guest|admin), full method name and status code name',
      labelNames: ['api', 'method', 'code'],
      registers,
    });
    this.rpcSeconds = new Histogram({
      name: 'kb_rpc_duration_seconds',
      help: 'Time from a call arriving to its status being sent, by API, method and status code name',
      labelNames: ['api', 'method', 'code'],
      buckets: RPC_BUCKETS,
      registers,
    });
    this.launches = new Counter({
      name: 'kb_launch_steps_total',
      help: 'Launch steps by step (bundle|secret|online-secret) and outcome (bundled|released|refused); refusals by class',
      labelNames: ['step', 'outcome', 'class'],
      registers,
    });
    this.httpRequests = new Counter({
      name: 'kb_http_requests_total',
      help: 'HTTP requests answered on --http-listen, by route pattern (unmatched: none), method and status code',
      labelNames: ['route', 'method', 'status'],
      registers,
    });
    this.httpSeconds = new Histogram({
      name: 'kb_http_request_duration_seconds',
      help: 'Time from an HTTP request arriving to its response being sent, by route pattern, method and status code',
      labelNames: ['route', 'method', 'status'],
      buckets: RPC_BUCKETS,
      registers,
    });
    const self = this;
    new Gauge({
      name: 'kb_pending_sessions',
      help: 'GetBundle sessions waiting for their GetSecret (not expired), in the shared database',
      registers,
      async collect() {
        const s = self.sources;
        if (s) this.set(await s.store.countPendingSessions(s.now()));
      },
    });
    new Gauge({
      name: 'kb_ecdh_pool_stock',
      help: 'GODH keys and agreements the ECDH workers hold, made ahead of GetBundle calls',
      registers,
      collect() {
        if (self.sources) this.set(self.sources.ecdh.stocked());
      },
    });
    new Counter({
      name: 'kb_ecdh_agreements_total',
      help: 'ECDH agreements served, by what was found made ahead (agreement|key|none)',
      labelNames: ['ahead'],
      registers,
      collect() {
        if (!self.sources) return;
        this.reset();
        for (const [ahead, n] of Object.entries(self.sources.ecdh.stats())) this.inc({ ahead }, n);
      },
    });
    const pool = (name: string, help: string, pick: (p: NonNullable<ReturnType<Store['stats']>['pool']>) => number) =>
      new Gauge({
        name,
        help,
        registers,
        collect() {
          const p = self.sources?.store.stats().pool;
          if (p) this.set(pick(p));
        },
      });
    pool('kb_db_pool_connections', 'PostgreSQL pool: open connections (absent on PGlite)', (p) => p.total);
    pool('kb_db_pool_idle_connections', 'PostgreSQL pool: idle connections', (p) => p.idle);
    pool('kb_db_pool_waiting_requests', 'PostgreSQL pool: queries waiting for a connection', (p) => p.waiting);
    pool('kb_db_pool_max_connections', 'PostgreSQL pool: its size', (p) => p.max);
    new Counter({
      name: 'kb_db_statement_timeouts_total',
      help: 'Database statements cancelled by the statement timeout (--request-timeout) or a lock timeout',
      registers,
      collect() {
        if (!self.sources) return;
        this.reset();
        this.inc(self.sources.store.stats().statementTimeouts);
      },
    });
    new Gauge({
      name: 'kb_audit_queue_length',
      help: 'Audit entries recorded and not yet written to the database',
      registers,
      collect() {
        if (self.sources) this.set(self.sources.audit.backlog().entries);
      },
    });
    new Gauge({
      name: 'kb_audit_queue_lag_seconds',
      help: 'Age of the oldest audit entry not yet written (0 when none waits)',
      registers,
      collect() {
        const oldest = self.sources?.audit.backlog().oldestAt;
        this.set(oldest ? Math.max(0, (Date.now() - oldest.getTime()) / 1000) : 0);
      },
    });
  }

  /** What the gauges read at each scrape; set once the broker's parts exist. */
  watch(sources: MetricSources): void {
    this.sources = sources;
  }

  /** Records one finished call (the interceptor's job; exported for it only). */
  observe(api: Api, method: string, code: status, seconds: number): void {
    const labels = { api, method, code: status[code] ?? String(code) };
    this.rpcs.inc(labels);
    this.rpcSeconds.observe(labels, seconds);
    const launch = api === 'guest' ? LAUNCH_STEPS[method] : undefined;
    if (launch) {
      if (code === status.OK) this.launches.inc({ step: launch.step, outcome: launch.success, class: '' });
      else this.launches.inc({ step: launch.step, outcome: 'refused', class: classOf(code) });
    }
  }

  /**
   * Records one answered HTTP request (the HTTP listener's onResponse hook). `route` is Fastify's route pattern
   * (`/sev/v1/vm/:uuid/launch`), never the URL a caller sent, so a uuid or a probe's path never becomes a label; the
   * attestation service's /launch and /validate also count as launch steps, like GetBundle and GetSecret.
   */
  observeHttp(route: string | undefined, method: string, statusCode: number, seconds: number): void {
    const labels = { route: route ?? 'unmatched', method: HTTP_METHODS.has(method) ? method : 'other', status: String(statusCode) };
    this.httpRequests.inc(labels);
    this.httpSeconds.observe(labels, seconds);
    const launch = route === undefined ? undefined : HTTP_LAUNCH_STEPS[route];
    if (launch && method === 'POST') {
      if (statusCode < 300) this.launches.inc({ step: launch.step, outcome: launch.success, class: '' });
      else
        this.launches.inc({
          step: launch.step,
          outcome: 'refused',
          class: failureClassOfHttpStatus(statusCode) ?? (statusCode < 500 ? 'invalid' : 'internal'),
        });
    }
  }

  /**
   * One gRPC server interceptor per listener sees every call to a registered method — handlers, health, reflection,
   * refusals before the handler (bad token, undecodable message) — so no handler counts anything itself. It must be
   * the first interceptor of its server: it then holds grpc-js's own call object, whose sendStatus every answer goes
   * through, including those grpc-js sends itself past all interceptors (a request it cannot decode or that is too
   * large, its own deadline timer). A call the client abandons before any answer is counted as CANCELLED.
   */
  interceptor(api: Api): ServerInterceptor {
    return (method, call) => {
      const start = performance.now();
      let done = false;
      const finish = (code: status) => {
        if (done) return;
        done = true;
        this.observe(api, method.path, code, (performance.now() - start) / 1000);
      };
      const send = call.sendStatus.bind(call);
      call.sendStatus = (st) => {
        finish(st.code);
        send(st);
      };
      // grpc-js notifies onCancel after every answer too; by then the call is counted and this does nothing.
      return new ServerInterceptingCall(call, { start: (next) => next({ onCancel: () => finish(status.CANCELLED) }) });
    };
  }
}

/**
 * GET /metrics on its own listener (--metrics-listen), so a scraper needs no access to the guest or admin ports and
 * the admin token never travels with a scrape. Anything else is 404/405.
 */
export function serveMetrics(metrics: BrokerMetrics, address: string, logger: Logger): Promise<{ address: string; close(): Promise<void> }> {
  const { host, port } = parseHostPort('metrics-listen', address);
  const server: HttpServer = createServer((req, res) => {
    const path = (req.url ?? '').split('?')[0];
    if (path !== '/metrics') {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found: the metrics are at /metrics\n');
      return;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD', 'content-type': 'text/plain' }).end('method not allowed\n');
      return;
    }
    metrics.registry.metrics().then(
      (text) => res.writeHead(200, { 'content-type': metrics.registry.contentType }).end(req.method === 'HEAD' ? undefined : text),
      (e: Error) => {
        logger.warn('metrics collection failed', { error: e.message });
        res.writeHead(500, { 'content-type': 'text/plain' }).end('metrics collection failed\n');
      },
    );
  });
  return new Promise((resolve, reject) => {
    server.once('error', (e) => reject(new Error(`cannot listen on ${address} (--metrics-listen): ${e.message}`)));
    server.listen(port, host, () => {
      const bound = server.address();
      const actual = typeof bound === 'object' && bound ? bound.port : port;
      resolve({
        address: `${host.includes(':') ? `[${host}]` : host}:${actual}`,
        close: () => new Promise<void>((done) => server.close(() => done()).closeAllConnections()),
      });
    });
  });
}
