import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { Server, ServerCredentials } from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import { ReflectionService } from '@grpc/reflection';
import { HealthImplementation, protoPath as healthProtoPath } from 'grpc-health-check';
import { admin, keybroker, strictDecoding } from '@kb/grpc-api';
import { isAllowAll, parsePolicy } from '@kb/policy';
import { decodeCaChain, type ExtraRoot, type SnpRoots } from '@kb/sev';
import { loadOrCreateMasterKey, openStore, parseMasterKey, type Store } from '@kb/store';
import { adminService } from './admin/service';
import { AdminAuth, loadAdminToken, loadOrCreateAdminToken, reflectionNeedsToken } from './admin/auth';
import { MAX_ADMIN_REQUEST_BYTES } from './admin/limits';
import { MIGRATIONS_DIR, PGDATA_TEMPLATE, PROTO_DIR } from './assets';
import { AuditTrail } from './audit';
import type { BrokerConfig } from './config';
import type { BrokerContext } from './context';
import { createCore } from './core';
import { EcdhPool } from './keybroker/ecdh-pool';
import { bindProblem, checkAddressesFree } from './listen-address';
import { keyBrokerService } from './keybroker/service';
import { createLogger, type Logger } from './log';
import { arrivalDeadline, grpcLimitOptions, listenGated, type GatedListener } from './peer-limits';
import { BrokerMetrics, serveMetrics } from './metrics';
import { httpApis } from './http/apis';
import { startHttpListener, type HttpApi, type RunningHttp } from './http/server';
import type { SnpEvidenceCertificates } from '@kb/sev';
import { certificateSourceFor, KdsFetcher, kbsCertificateSource, type CertificateSource } from './snp-certs';
import type { KbsApiOptions } from './kbs/api';
import { readSnpTrustRoot } from './snp-trust-root';

export interface RunningBroker {
  /** host:port actually bound (useful with port 0) */
  address: string;
  adminAddress: string;
  /** host:port of the metrics listener, when --metrics-listen was given */
  metricsAddress?: string;
  /** host:port of the HTTP APIs (--http-listen), unless turned off */
  httpAddress?: string;
  metrics: BrokerMetrics;
  store: Store;
  /** where SNP certificates come from for one attestation (snp-certs/: evidence, offline store, KDS if enabled) */
  snpCertificates(evidence?: SnpEvidenceCertificates): CertificateSource;
  close(): Promise<void>;
}

export interface StartOptions {
  logger?: Logger;
  /** share an already open store (tests); otherwise opened from the configuration and closed with the broker */
  store?: Store;
  /** extra roots given as values (tests, demos) in addition to --trust-root files */
  extraRoots?: ExtraRoot[];
  now?: () => Date;
  /** HTTP APIs served besides the built-in ones (http/apis.ts), given the broker's context: tests, embedders */
  /** KBS protocol options (a CertificateSource for SNP VCEKs, synthetic SNP roots for simulators, tests' lifetimes) */
  kbs?: KbsApiOptions;
  httpApis?: (ctx: BrokerContext) => HttpApi[];
}

/** Largest request the guest-facing service accepts: a chain is ~15.4 KB as base64; secrets requests are small. */
const MAX_MESSAGE_BYTES = 64 * 1024;
/** The guest-facing gRPC server's options (also what tools/bench's null broker runs with, to be comparable). */
export const KEYBROKER_SERVER_OPTIONS = { 'grpc.max_receive_message_length': MAX_MESSAGE_BYTES, 'grpc.max_concurrent_streams': 100 } as const;
/** grpc-health-check ships the health service's proto: reflection on the guest port describes it too. */
const HEALTH_PROTO = healthProtoPath;
/** Sessions and connections expire by the minute; the audit log is kept for days, so an hourly purge is plenty. */
const PURGE_INTERVAL_MS = 60_000;
const AUDIT_PURGE_INTERVAL_MS = 60 * 60_000;
const DAY_MS = 86_400_000;

export async function startBroker(config: BrokerConfig, opts: StartOptions = {}): Promise<RunningBroker> {
  const logger = opts.logger ?? createLogger(config.logLevel);
  const extraRoots = [...(opts.extraRoots ?? []), ...config.trustRoots.map((r) => readRootFile(r.name, r.file))];
  for (const r of extraRoots) {
    logger.warn('TRUSTING A NON-AMD ROOT: chains under it are accepted as genuine SEV platforms. Use only for labs and simulators.', {
      generation: r.name,
    });
  }
  // read before the database opens: a bad file must not leave an opened (PGlite: locked) store behind
  const fileSnpRoots = snpTrustRoots(config, logger);
  // Before the token and the database (which can take seconds to open): a port in use is the usual mistake (a second broker).
  await checkAddressesFree([
    { flag: '--listen', address: config.listen },
    { flag: '--admin-listen', address: config.adminListen },
    ...(config.httpListen !== undefined ? [{ flag: '--http-listen', address: config.httpListen }] : []),
  ]);
  // The admin token before the database: a bad token must not leave an opened (and, with PGlite, locked) store behind.
  // Only the default file is generated: a token file named explicitly (a mistyped path) must exist.
  const token =
    config.adminToken ?? (config.adminTokenFile ? loadAdminToken(config.adminTokenFile) : loadOrCreateAdminToken(join(config.dataDir, 'admin.token')));
  if (typeof token !== 'string' && token.created) logger.info('generated the admin token', { file: join(config.dataDir, 'admin.token') });
  const auth = new AdminAuth(typeof token === 'string' ? token : token.token);

  const store = opts.store ?? (await openConfiguredStore(config, logger));
  const ownsStore = !opts.store;
  // AMD KDS only when the operator enabled it (--snp-kds); its answers are cached in the store
  const kds = config.snpKdsUrl ? new KdsFetcher({ baseUrl: config.snpKdsUrl, cache: store, log: (m) => logger.warn('snp kds', { detail: m }) }) : undefined;
  // SNP guests whose evidence carries no VCEK: the offline store, then the KDS (unless a test gives its own source)
  const kbs: KbsApiOptions = { certificates: kbsCertificateSource(store, kds), ...fileSnpRoots, ...opts.kbs };
  const ctx: BrokerContext = { config, store, logger, audit: new AuditTrail(store, logger), extraRoots, now: opts.now ?? (() => new Date()), kbs };
  try {
    await warnAboutDefaultPolicy(ctx);
  } catch (e) {
    if (ownsStore) await store.close().catch(() => undefined);
    throw e;
  }

  const metrics = new BrokerMetrics();
  const server = new Server({
    ...KEYBROKER_SERVER_OPTIONS,
    ...grpcLimitOptions({
      idleTimeoutSeconds: config.idleTimeoutSeconds,
      maxConnectionAgeSeconds: config.maxConnectionAgeSeconds,
      keepaliveSeconds: config.keepaliveSeconds,
      // a connection past its age finishes the calls it has: each is answered within these two bounds
      graceSeconds: config.requestArrivalTimeoutSeconds + config.requestTimeoutSeconds + 1,
      maxStreamsPerConnection: config.maxStreamsPerConnection,
    }),
    // metrics first: it holds grpc-js's own call, through which every answer goes (see BrokerMetrics.interceptor)
    interceptors: [metrics.interceptor('guest'), arrivalDeadline(config.requestArrivalTimeoutSeconds * 1000, logger)],
  });
  const ecdh = new EcdhPool();
  const core = createCore(ctx, ecdh);
  metrics.watch({ store, ecdh, audit: ctx.audit, now: ctx.now });
  // Malformed bytes reach the handlers' adapter as INVALID_ARGUMENT with a reference (not grpc-js's INTERNAL).
  server.addService(strictDecoding(keybroker.KeyBrokerServiceService), keyBrokerService(ctx, core));
  const health = new HealthImplementation({ '': 'SERVING', 'keybroker.KeyBrokerService': 'SERVING' });
  health.addToServer(server);
  new ReflectionService(loadSync([join(PROTO_DIR, 'keybroker.proto'), HEALTH_PROTO])).addToServer(server);

  const reflectionGuard = reflectionNeedsToken(auth, (peer) => logger.warn('admin reflection refused: bad or missing token', { peer }));
  const adminServer = new Server({ 'grpc.max_receive_message_length': MAX_ADMIN_REQUEST_BYTES, interceptors: [metrics.interceptor('admin'), reflectionGuard] });
  adminServer.addService(strictDecoding(admin.BrokerAdminService), adminService(ctx, auth));
  new ReflectionService(loadSync(join(PROTO_DIR, 'admin.proto'))).addToServer(adminServer);

  const creds = (cert?: string, key?: string) =>
    cert && key
      ? ServerCredentials.createSsl(null, [{ cert_chain: readFileSync(cert), private_key: readFileSync(key) }], false)
      : ServerCredentials.createInsecure();
  let address: string;
  let adminAddress: string;
  // The guest-facing port is accepted by the per-peer gate, which hands admitted connections to grpc-js.
  const injector = server.createConnectionInjector(creds(config.tlsCert, config.tlsKey));
  let gate: GatedListener | undefined;
  let metricsListener: Awaited<ReturnType<typeof serveMetrics>> | undefined;
  let http: RunningHttp | undefined;
  try {
    gate = await listenGated(config.listen, config, (socket) => injector.injectConnection(socket), logger, 'guest-facing listener').catch(
      (e: NodeJS.ErrnoException) => {
        throw new Error(bindProblem('--listen', config.listen, e.code));
      },
    );
    address = gate.address;
    adminAddress = await bind(adminServer, '--admin-listen', config.adminListen, creds(config.adminTlsCert, config.adminTlsKey));
    if (config.httpListen !== undefined) {
      const httpConfig = { ...config, listen: config.httpListen, tlsCert: config.httpTlsCert, tlsKey: config.httpTlsKey };
      http = await startHttpListener(ctx, httpConfig, [...httpApis(ctx, { core, auth }), ...(opts.httpApis?.(ctx) ?? [])], logger, metrics).catch(
        (e: NodeJS.ErrnoException) => {
          throw e.code ? new Error(bindProblem('--http-listen', config.httpListen!, e.code)) : e;
        },
      );
    }
    if (config.metricsListen) metricsListener = await serveMetrics(metrics, config.metricsListen, logger);
  } catch (e) {
    await http?.close();
    await gate?.close();
    injector.destroy();
    server.forceShutdown();
    adminServer.forceShutdown();
    await metricsListener?.close();
    await ecdh.close();
    if (ownsStore) await store.close();
    throw e;
  }
  logger.info('broker listening', {
    keybroker: address,
    tls: Boolean(config.tlsCert),
    admin: adminAddress,
    adminTls: Boolean(config.adminTlsCert),
    metrics: metricsListener?.address ?? null,
    http: http?.address ?? null,
    httpTls: Boolean(config.httpTlsCert),
    database: store.driver,
    auditRetentionDays: config.auditRetentionDays, // 0: kept forever
  });

  // Every replica purges on its own schedule: deletes are idempotent, so overlapping purges only find less to do.
  const stopAuditPurge = new AbortController();
  let auditPurging: Promise<void> | undefined;
  let lastAuditPurge = -Infinity;
  const purgeAudit = () => {
    if (config.auditRetentionDays <= 0 || auditPurging || stopAuditPurge.signal.aborted) return;
    // Monotonic, so a wall-clock step cannot stop the purges or run them back to back.
    if (performance.now() - lastAuditPurge < AUDIT_PURGE_INTERVAL_MS) return;
    lastAuditPurge = performance.now();
    const cutoff = new Date(ctx.now().getTime() - config.auditRetentionDays * DAY_MS);
    auditPurging = store
      .purgeAuditBefore(cutoff, { signal: stopAuditPurge.signal })
      .then(
        (count) => {
          if (count > 0) logger.info('audit entries purged', { count, cutoff: cutoff.toISOString() });
        },
        (e: Error) => {
          logger.warn('audit purge failed', { error: e.message });
          lastAuditPurge = -Infinity; // try again at the next minute's purge, not an hour later
        },
      )
      .finally(() => {
        auditPurging = undefined;
      });
  };
  // Off the start-up path: a large backlog (a first start after an upgrade) must not delay serving.
  const firstAuditPurge = setTimeout(purgeAudit, 0);
  firstAuditPurge.unref();

  const purge = setInterval(() => {
    const now = ctx.now();
    Promise.all([
      store.purgeExpiredSessions(now),
      store.purgeExpiredConnections(now),
      store.purgeExpiredKbsSessions(now),
      store.purgeExpiredVmLaunches(now),
    ]).catch((e: Error) => logger.warn('purge failed', { error: e.message }));
    purgeAudit();
  }, PURGE_INTERVAL_MS);
  purge.unref();

  return {
    address,
    adminAddress,
    metricsAddress: metricsListener?.address,
    httpAddress: http?.address,
    metrics,
    store,
    snpCertificates: (evidence) => certificateSourceFor({ store, ...(kds ? { kds } : {}), ...(evidence ? { evidence } : {}) }),
    async close() {
      kds?.close();
      clearInterval(purge);
      clearTimeout(firstAuditPurge);
      // An audit purge stops after its current batch: a long backlog must not hold up shutdown.
      stopAuditPurge.abort();
      const purging = auditPurging;
      await ecdh.close();
      health.setStatus('', 'NOT_SERVING');
      await Promise.all([gate.close(), shutdown(server), shutdown(adminServer), metricsListener?.close(), http?.close()]);
      injector.destroy();
      await ctx.audit.flush();
      await purging;
      if (ownsStore) await store.close();
    },
  };
}

/** `--snp-trust-root` files, merged over AMD's pinned SNP roots (one file per generation), each logged loudly. */
function snpTrustRoots(config: BrokerConfig, logger: Logger): { snpRoots?: SnpRoots } {
  if (config.snpTrustRoots.length === 0) return {};
  let roots: SnpRoots = {};
  const seen = new Set<string>();
  for (const file of config.snpTrustRoots) {
    const r = readSnpTrustRoot(file);
    if (seen.has(r.generation)) throw new Error(`--snp-trust-root: two files for ${r.generation}`);
    seen.add(r.generation);
    roots = { ...r.roots, ...roots };
    logger.warn('TRUSTING A NON-AMD SNP ROOT: SNP reports under it are accepted as genuine for KBS attestation. Use only for labs and simulators.', {
      generation: r.generation,
      ark: r.arkCn,
      file,
    });
  }
  return { snpRoots: roots };
}

/** A `--trust-root` file: ASK ‖ ARK in AMD CA format (the tail of a `sevctl export --full` chain). */
function readRootFile(name: string, file: string): ExtraRoot {
  try {
    const { ask, ark } = decodeCaChain(readFileSync(file));
    return { name, ark: ark.raw, ask: ask.raw };
  } catch (e) {
    throw new Error(`--trust-root ${name}=${file} must hold exactly ASK‖ARK in AMD CA format: ${(e as Error).message}`);
  }
}

async function openConfiguredStore(config: BrokerConfig, logger: Logger): Promise<Store> {
  const keyText = config.masterKey ?? (config.masterKeyFile ? readFileSync(config.masterKeyFile, 'utf8').trim() : undefined);
  if (config.databaseUrl) {
    if (!keyText) throw new Error('a master key is required with a PostgreSQL database');
    // A statement outliving the call it serves only holds a pooled connection (the call was answered DEADLINE_EXCEEDED).
    const statementTimeoutMs = Math.ceil(config.requestTimeoutSeconds * 1000);
    return openStore({ driver: 'pg', url: config.databaseUrl, masterKey: parseMasterKey(keyText), statementTimeoutMs, migrationsFolder: MIGRATIONS_DIR });
  }
  const masterKey = keyText ? parseMasterKey(keyText) : await loadOrCreateMasterKey(config.dataDir);
  logger.info('using the embedded database', { dataDir: resolve(config.dataDir) });
  return openStore({ driver: 'pglite', dataDir: config.dataDir, masterKey, migrationsFolder: MIGRATIONS_DIR, template: PGDATA_TEMPLATE });
}

async function warnAboutDefaultPolicy(ctx: BrokerContext): Promise<void> {
  const rec = await ctx.store.getPolicy(ctx.config.defaultPolicy);
  if (!rec) {
    ctx.logger.warn('no tenant default policy: every GetSecret is refused until the owner creates it', { policy: ctx.config.defaultPolicy });
    return;
  }
  try {
    if (isAllowAll(parsePolicy(rec.document))) {
      ctx.logger.warn('the tenant default policy allows any launched guest (simple-kbs behaviour); secrets rely on their own policies alone', {
        policy: ctx.config.defaultPolicy,
      });
    }
  } catch (e) {
    ctx.logger.warn('the tenant default policy does not parse: every GetSecret is refused', { policy: ctx.config.defaultPolicy, error: (e as Error).message });
  }
}

function bind(server: Server, flag: string, address: string, creds: ServerCredentials): Promise<string> {
  return new Promise((resolvePort, reject) => {
    server.bindAsync(address, creds, (err, port) => {
      // grpc-js words it as "No address added out of total 1 resolved errors: [listen EADDRINUSE: …]"
      if (err) return reject(new Error(bindProblem(flag, address, /\b(E[A-Z_]{3,})\b/.exec(err.message)?.[1])));
      resolvePort(address.replace(/:\d+$/, `:${port}`));
    });
  });
}

function shutdown(server: Server): Promise<void> {
  return new Promise((done) => {
    const force = setTimeout(() => server.forceShutdown(), 5000);
    server.tryShutdown(() => {
      clearTimeout(force);
      done();
    });
  });
}
