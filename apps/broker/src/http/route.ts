import type { FastifyReply, FastifyRequest, RouteHandlerMethod } from 'fastify';
import { runCall, type CallInfo } from '../call';
import type { BrokerContext } from '../context';
import { toHttpFailure, type BrokerError, type HttpFailure } from '../errors';

/** How an API writes a failure's body; the default is `{"error", "message", "ref"}` (the KBS protocol has its own). */
export type ErrorBody = (f: HttpFailure) => unknown;

export const defaultErrorBody: ErrorBody = (f) => ({ error: f.error, message: f.message, ref: f.ref });

/** The caller as the audit trail names it (gRPC says `ipv4:127.0.0.1:5000`; HTTP the address and port). */
export function peerOf(req: FastifyRequest): string {
  const s = req.raw.socket;
  return `${s.remoteAddress ?? 'unknown'}:${s.remotePort ?? 0}`;
}

/** Sends a failure found outside a handler (validation, a body too large) through the same adapter, reference and audit. */
export function answerFailure(
  ctx: BrokerContext,
  rpc: string,
  req: FastifyRequest,
  reply: FastifyReply,
  err: BrokerError,
  status?: number,
  errorBody: ErrorBody = defaultErrorBody,
): void {
  runCall(
    ctx,
    rpc,
    peerOf(req),
    { ok: () => undefined, fail: (e, refId) => send(reply, toHttpFailure(e, refId, status), errorBody) },
    () => Promise.resolve(undefined),
    err,
  );
}

function send(reply: FastifyReply, f: HttpFailure, errorBody: ErrorBody): string {
  if (f.status === 503 || f.status === 429) reply.header('retry-after', '1');
  reply.code(f.status).header('kb-ref', f.ref).send(errorBody(f));
  return `HTTP ${f.status}`;
}

/**
 * The HTTP binding of runCall (call.ts), the counterpart of unary.ts: the handler gets the request and a CallInfo
 * (reference, deadline signal) and returns the body to send (200 unless it set another code on `reply`; `undefined`
 * sends an empty 204). Failures are answered with their class's status, a `kb-ref` header and `errorBody`; the
 * reason goes to the log and the audit trail only. A client that closes its connection before the answer cancels
 * the handler, as a cancelled gRPC call does.
 */
export function httpRoute<Res>(
  ctx: BrokerContext,
  rpc: string,
  fn: (req: FastifyRequest, info: CallInfo, reply: FastifyReply) => Promise<Res>,
  errorBody: ErrorBody = defaultErrorBody,
): RouteHandlerMethod {
  return (req, reply) => {
    const running = runCall<Res>(
      ctx,
      rpc,
      peerOf(req),
      {
        ok: (res) => {
          if (res === undefined) reply.code(reply.statusCode === 200 ? 204 : reply.statusCode).send();
          else reply.send(res);
        },
        fail: (err, refId) => send(reply, toHttpFailure(err, refId), errorBody),
      },
      (info) => fn(req, info, reply),
    );
    reply.raw.once('close', () => {
      if (!reply.raw.writableFinished) running.cancel('the client closed the connection before the answer');
    });
  };
}
