import { constants as h2, type ServerHttp2Stream } from 'node:http2';
import { createServer, type Server, type Socket } from 'node:net';
import { status, ServerInterceptingCall, type ServerInterceptor } from '@grpc/grpc-js';
import type { Logger } from './log';

/**
 * Bounded resources per peer on a listener untrusted callers reach (the guest gRPC port; the HTTP listeners to come
 * use the same gate). A probe kept 1,000 idle connections and 200 half-sent streams open on the guest port, one file
 * descriptor each, indefinitely; these bounds make every such resource expire or be refused:
 *
 * - connections: at most `maxConnections` open at once, `maxConnectionsPerPeer` from one address (the port does not
 *   count: one host opening many sockets is one peer). Over either cap a new connection is closed at once, before
 *   any byte is read — the caller sees a reset connection (gRPC UNAVAILABLE) and may retry.
 * - idle connections, connection age and keepalive: grpc-js's own server options (see grpcLimitOptions).
 * - a request still arriving after `requestArrivalMs` (headers sent, the message or its end never) is answered
 *   DEADLINE_EXCEEDED and its stream closed (arrivalDeadline).
 *
 * The gate owns the listening socket and hands each admitted connection to the protocol server: grpc-js's
 * `Server.createConnectionInjector` (its documented way to serve connections it did not accept) or, for HTTP,
 * `http.Server.emit('connection', socket)`. grpc-js has no hook to refuse a connection by peer itself.
 */
export interface PeerLimits {
  maxConnections: number;
  maxConnectionsPerPeer: number;
}

export interface GatedListener {
  /** host:port actually bound */
  address: string;
  /** currently admitted connections (overall, and for one address) */
  open(peer?: string): number;
  /** Stops accepting; open connections are left to their protocol server's shutdown. */
  close(): Promise<void>;
}

/** Refusals are logged at most this often (with a count), so a flood does not become a log flood. */
const REFUSAL_LOG_INTERVAL_MS = 10_000;

export function listenGated(address: string, limits: PeerLimits, serve: (socket: Socket) => void, logger: Logger, what: string): Promise<GatedListener> {
  const where = parseListenAddress(address);
  const perPeer = new Map<string, number>();
  let total = 0;
  let refused = 0;
  let lastRefusalLog = -Infinity;
  const refuse = (socket: Socket, peer: string, why: string) => {
    socket.destroy();
    refused++;
    if (performance.now() - lastRefusalLog >= REFUSAL_LOG_INTERVAL_MS) {
      lastRefusalLog = performance.now();
      logger.warn(`${what}: connection refused`, { peer, reason: why, refusedSinceLastLog: refused });
      refused = 0;
    }
  };
  const server: Server = createServer({ noDelay: true }, (socket) => {
    const peer = socket.remoteAddress ?? 'unknown';
    if (total >= limits.maxConnections) return refuse(socket, peer, `${limits.maxConnections} connections open (--max-connections)`);
    const mine = perPeer.get(peer) ?? 0;
    if (mine >= limits.maxConnectionsPerPeer)
      return refuse(socket, peer, `${limits.maxConnectionsPerPeer} connections open from this address (--max-connections-per-peer)`);
    total++;
    perPeer.set(peer, mine + 1);
    socket.once('close', () => {
      total--;
      const n = (perPeer.get(peer) ?? 1) - 1;
      if (n === 0) perPeer.delete(peer);
      else perPeer.set(peer, n);
    });
    serve(socket);
  });
  return new Promise((resolve, reject) => {
    server.once('error', (e: NodeJS.ErrnoException) => reject(Object.assign(new Error(`cannot listen on ${address}: ${e.message}`), { code: e.code })));
    server.listen(where, () => {
      const bound = server.address();
      const boundPort = typeof bound === 'object' && bound ? bound.port : 0;
      resolve({
        address: address.replace(/:\d+$/, `:${boundPort}`),
        open: (peer?: string) => (peer === undefined ? total : (perPeer.get(peer) ?? 0)),
        close: () => new Promise<void>((done) => server.close(() => done())),
      });
    });
  });
}

/** `host:port`, `[v6]:port` or `unix:PATH` (what --listen takes); a host name is resolved by the system. */
export function parseListenAddress(address: string): { host: string; port: number } | { path: string } {
  if (address.startsWith('unix:')) return { path: address.slice('unix:'.length) };
  const m = /^\[([^\]]+)\]:(\d+)$/.exec(address) ?? /^([^:\s]*):(\d+)$/.exec(address);
  const port = m ? Number(m[2]) : NaN;
  if (!m || !Number.isInteger(port) || port > 65535) throw new Error(`cannot listen on ${address}: expected HOST:PORT (or [IPv6]:PORT)`);
  return { host: m[1] || '0.0.0.0', port };
}

/** grpc-js's own per-connection bounds, from the broker's options (seconds; 0 = off). */
export interface ConnectionTimers {
  idleTimeoutSeconds: number;
  maxConnectionAgeSeconds: number;
  keepaliveSeconds: number;
  /** how long a connection past its age may finish the calls it has (grpc.max_connection_age_grace_ms) */
  graceSeconds: number;
  maxStreamsPerConnection: number;
}

/** Keepalive pings unanswered this long end the connection (a peer gone without a FIN). */
const KEEPALIVE_TIMEOUT_MS = 20_000;

export function grpcLimitOptions(t: ConnectionTimers): Record<string, number> {
  const opts: Record<string, number> = { 'grpc.max_concurrent_streams': t.maxStreamsPerConnection };
  if (t.idleTimeoutSeconds > 0) opts['grpc.max_connection_idle_ms'] = Math.round(t.idleTimeoutSeconds * 1000);
  if (t.maxConnectionAgeSeconds > 0) {
    opts['grpc.max_connection_age_ms'] = Math.round(t.maxConnectionAgeSeconds * 1000);
    opts['grpc.max_connection_age_grace_ms'] = Math.round(t.graceSeconds * 1000);
  }
  if (t.keepaliveSeconds > 0) {
    opts['grpc.keepalive_time_ms'] = Math.round(t.keepaliveSeconds * 1000);
    opts['grpc.keepalive_timeout_ms'] = KEEPALIVE_TIMEOUT_MS;
  }
  return opts;
}

/**
 * A call whose request has not finished arriving `ms` after its headers (a client that sends headers, or part of the
 * message, and then nothing) is answered DEADLINE_EXCEEDED and its stream is reset, freeing its slot and buffers. The
 * request timeout (unary.ts) only starts once the whole request is in; this covers the time before.
 *
 * Must be the first interceptor of the server (the one grpc-js wraps directly around its own call object): answering
 * with a status ends only the server's half of the stream, and a client that never ends its half would keep the
 * stream — one of --max-streams-per-connection, and the connection never idle — open. grpc-js has no public way to
 * reset a stream, so the HTTP/2 stream is taken from its call object (a private field, checked before use, and a
 * test fails if a grpc-js upgrade moves it); without it the connection age still ends such streams.
 */
export function arrivalDeadline(ms: number, logger: Logger): ServerInterceptor {
  return (method, call) => {
    let timer: NodeJS.Timeout | undefined;
    const stop = () => clearTimeout(timer);
    const intercepted: ServerInterceptingCall = new ServerInterceptingCall(call, {
      start: (next) => {
        timer = setTimeout(() => {
          logger.info('request did not finish arriving in time; stream reset', { rpc: method.path, peer: call.getPeer(), afterMs: ms });
          intercepted.sendStatus({ code: status.DEADLINE_EXCEEDED, details: 'the request did not finish arriving in time' });
          const stream = http2StreamOf(call);
          // after the status is on its way: RST_STREAM ends the client's half too
          if (stream) setImmediate(() => stream.destroyed || stream.close(h2.NGHTTP2_NO_ERROR));
        }, ms);
        timer.unref();
        next({
          onReceiveHalfClose: (done) => {
            stop();
            done();
          },
          onCancel: stop,
        });
      },
      sendStatus: (st, next) => {
        stop();
        next(st);
      },
    });
    return intercepted;
  };
}

/**
 * grpc-js's own call holds the HTTP/2 stream (private field `stream`); an interceptor placed after another one (the
 * metrics interceptor comes first) sees a ServerInterceptingCall and reaches it through `nextCall` links.
 */
function http2StreamOf(call: unknown): ServerHttp2Stream | undefined {
  let c = call as { stream?: Partial<ServerHttp2Stream>; nextCall?: unknown } | undefined;
  for (let depth = 0; c && depth < 8; depth++, c = c.nextCall as typeof c) {
    const stream = c.stream;
    if (stream && typeof stream.close === 'function' && typeof stream.destroyed === 'boolean') return stream as ServerHttp2Stream;
  }
  return undefined;
}
