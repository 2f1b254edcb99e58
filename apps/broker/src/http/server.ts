import { readFileSync } from 'node:fs';
import type { Socket } from 'node:net';
import { createServer as createHttp1Server, type Server as Http1Server } from 'node:http';
import { createSecureServer, type Http2SecureServer } from 'node:http2';
import Fastify, { type FastifyError, type FastifyInstance, type FastifyPluginAsync, type FastifyServerOptions } from 'fastify';
import type { BrokerContext } from '../context';
import { BrokerError, invalid } from '../errors';
import type { Logger } from '../log';
import type { BrokerMetrics } from '../metrics';
import { listenGated, type GatedListener, type PeerLimits } from '../peer-limits';
import { answerFailure, defaultErrorBody, type ErrorBody } from './route';

/**
 * The broker's HTTP listener (--http-listen): the JSON APIs untrusted hosts and guests call — the attestation service
 * libvirt proposed (attestation-service/) and the KBS protocol (kbs/) — each a Fastify plugin under its own prefix.
 *
 * Fastify (maintained, schema validation, body limits) serves behind the same per-peer connection gate as the guest
 * gRPC port (peer-limits.ts), which accepts the sockets and hands the admitted ones to the HTTP server. With TLS it
 * serves HTTP/2 and HTTP/1.1 (ALPN); plaintext serves HTTP/1.1 (browsers and curl speak no cleartext HTTP/2 by default).
 * Every handler goes through httpRoute (route.ts), the same adapter as gRPC's unary: one reference, deadline,
 * back-pressure and audit path for every front-end. Failures Fastify finds before a handler (a body that is not JSON,
 * does not match the route's schema, or is too large) are answered through the same adapter, with a reference.
 */
export interface HttpApi {
  /** e.g. `/sev/v1`, `/kbs/v0` */
  prefix: string;
  plugin: FastifyPluginAsync;
  /** the body of this API's failures (default `{"error","message","ref"}`) */
  errorBody?: ErrorBody;
}

export interface HttpListenerConfig extends PeerLimits {
  listen: string;
  tlsCert?: string;
  tlsKey?: string;
  idleTimeoutSeconds: number;
  requestArrivalTimeoutSeconds: number;
}

export interface RunningHttp {
  /** host:port actually bound */
  address: string;
  app: FastifyInstance;
  close(): Promise<void>;
}

/** A request body larger than this is refused (413) unless its route sets its own `bodyLimit` (a firmware upload). */
export const HTTP_BODY_LIMIT = 64 * 1024;
/** How long a shutdown waits for the requests in flight before it ends the connections still open. */
const CLOSE_GRACE_MS = 2000;

export async function startHttpListener(
  ctx: BrokerContext,
  cfg: HttpListenerConfig,
  apis: HttpApi[],
  logger: Logger,
  metrics?: BrokerMetrics,
): Promise<RunningHttp> {
  const tls = cfg.tlsCert && cfg.tlsKey ? { cert: readFileSync(cfg.tlsCert), key: readFileSync(cfg.tlsKey) } : undefined;
  const idleMs = cfg.idleTimeoutSeconds * 1000;
  const arrivalMs = Math.round(cfg.requestArrivalTimeoutSeconds * 1000);
  const serverFactory = (handler: Parameters<typeof createHttp1Server>[1]): Http1Server | Http2SecureServer => {
    if (tls) {
      const h2 = createSecureServer({ ...tls, allowHTTP1: true }, handler as never);
      // an HTTP/2 session (or TLS connection) without traffic this long is closed
      if (idleMs > 0) h2.setTimeout(idleMs);
      return h2;
    }
    // HTTP/1.1: a request must have arrived whole within --request-arrival-timeout; an idle keep-alive connection
    // is closed after --idle-timeout.
    const h1 = createHttp1Server({ requestTimeout: arrivalMs, headersTimeout: arrivalMs, keepAliveTimeout: idleMs > 0 ? idleMs : 5000 }, handler);
    return h1;
  };
  const options = {
    // our own JSON log and audit trail record every call; Fastify's request log would only repeat them
    logger: false,
    bodyLimit: HTTP_BODY_LIMIT,
    http2: Boolean(tls),
    serverFactory: serverFactory as never,
    return503OnClosing: true,
  };
  const app = Fastify(options as FastifyServerOptions) as unknown as FastifyInstance;

  for (const api of apis) {
    const errorBody = api.errorBody ?? defaultErrorBody;
    await app.register(
      async (scope) => {
        scope.setErrorHandler((error: FastifyError, req, reply) => {
          const rpc = `${req.method} ${req.routeOptions.url ?? req.url}`;
          const status = typeof error.statusCode === 'number' && error.statusCode >= 400 && error.statusCode < 500 ? error.statusCode : undefined;
          if (status !== undefined)
            return answerFailure(ctx, rpc, req, reply, invalid(`${error.validation ? 'request ' : ''}${error.message}`), status, errorBody);
          // anything else escaped a handler that did not go through httpRoute: a bug, answered as one
          logger.error('HTTP handler failed outside the call adapter', { rpc, error: error.stack ?? String(error) });
          return answerFailure(
            ctx,
            rpc,
            req,
            reply,
            new BrokerError('internal', 'internal error', `an error escaped an HTTP handler: ${error.message}`),
            500,
            errorBody,
          );
        });
        scope.setNotFoundHandler((req, reply) => {
          reply.code(404).send(errorBody({ status: 404, error: 'invalid', message: `no such resource: ${req.method} ${req.url.split('?')[0]}`, ref: '' }));
        });
        await scope.register(api.plugin);
      },
      { prefix: api.prefix },
    );
  }
  // Every answer, from a handler, the error handler or a not-found, is counted once (metrics.ts observeHttp).
  if (metrics) {
    app.addHook('onResponse', (req, reply, done) => {
      metrics.observeHttp(req.routeOptions.url, req.method, reply.statusCode, reply.elapsedTime / 1000);
      done();
    });
  }
  app.get('/healthz', async () => ({ status: 'SERVING' }));
  app.setNotFoundHandler((req, reply) => {
    reply.code(404).send(defaultErrorBody({ status: 404, error: 'invalid', message: `no such resource: ${req.method} ${req.url.split('?')[0]}`, ref: '' }));
  });
  await app.ready();

  const server = app.server as unknown as Http1Server;
  // the connections this listener serves, so that a shutdown can end the ones a client keeps open (keep-alive, HTTP/2)
  const sockets = new Set<Socket>();
  let gate: GatedListener;
  try {
    gate = await listenGated(
      cfg.listen,
      cfg,
      (socket) => {
        sockets.add(socket);
        socket.once('close', () => sockets.delete(socket));
        server.emit('connection', socket);
      },
      logger,
      'HTTP listener',
    );
  } catch (e) {
    await app.close();
    throw e;
  }
  return {
    address: gate.address,
    app,
    async close() {
      // stops accepting; resolves once the connections it accepted have all ended (below)
      const gateClosed = gate.close();
      // requests in flight may finish (within the request timeout); idle keep-alive connections and HTTP/2 sessions
      // would hold the close forever, so after a grace period every connection still open is ended
      const grace = setTimeout(() => {
        for (const s of sockets) s.destroy();
      }, CLOSE_GRACE_MS);
      server.closeIdleConnections?.();
      await app.close();
      clearTimeout(grace);
      for (const s of sockets) s.destroy();
      await gateClosed;
    },
  };
}
