import { status, type handleUnaryCall, type sendUnaryData, type ServerUnaryCall } from '@grpc/grpc-js';
import { MalformedMessage } from '@kb/grpc-api';
import { BrokerError, fromStore, invalid, newRefId, timedOut, toServiceError, unavailable } from './errors';
import type { BrokerContext } from './context';

export interface CallInfo {
  peer: string;
  refId: string;
  /**
   * Aborted once the call can no longer be answered with a result: its deadline (--request-timeout) passed, or the
   * client cancelled or its own deadline passed. A handler checks it before a step with lasting effects (a release
   * counted, a session handed out), so that nothing is done for an answer nobody will get. Its reason is a
   * timeout BrokerError saying which of the two happened.
   */
  signal: AbortSignal;
}

/**
 * Adapts an async handler to grpc-js: every failure becomes a status with a reference id; the detailed reason goes
 * to the log (and, for refusals, the handler's audit entry) under the same id. Unexpected exceptions are INTERNAL and
 * never echo their message to the caller.
 *
 * Every answer carrying a reference has an audit entry under it (event `call`: the rpc, the peer, the gRPC code and
 * the reason, never the request), so `kbctl audit --ref` finds whatever reference a host was given; a handler's own
 * entry (a refusal's launch, what was requested) sits next to it under the same reference.
 *
 * A request whose bytes are not a valid message (see strictDecoding in @kb/grpc-api) is INVALID_ARGUMENT here, like
 * any other malformed input.
 *
 * Every call is answered within `requestTimeoutSeconds`: a stuck database must not hold a host forever (simple-kbs
 * clients set no deadline of their own), and the server keeps serving others meanwhile. The handler learns of it
 * through `info.signal`; whatever it returns afterwards is dropped.
 */
export function unary<Req, Res>(
  ctx: BrokerContext,
  rpc: string,
  fn: (req: Req, info: CallInfo, call: ServerUnaryCall<Req, Res>) => Promise<Res>,
): handleUnaryCall<Req, Res> {
  const timeoutMs = ctx.config.requestTimeoutSeconds * 1000;
  return (call: ServerUnaryCall<Req, Res>, callback: sendUnaryData<Res>) => {
    const controller = new AbortController();
    const info: CallInfo = { peer: call.getPeer(), refId: newRefId(), signal: controller.signal };
    let answered = false;
    const fail = (err: BrokerError) => {
      const level = err.kind === 'internal' ? 'error' : err.kind === 'timeout' || err.kind === 'unavailable' ? 'warn' : 'info';
      ctx.logger[level](`${rpc} failed`, { rpc, ref: info.refId, peer: info.peer, class: err.kind, reason: err.detail });
      const answer = toServiceError(err, info.refId);
      auditAnswer(ctx, rpc, info, answer.code!, err);
      callback(answer as never, null);
    };
    const request: unknown = call.request;
    if (request instanceof MalformedMessage) {
      fail(invalid(`the request is not a valid protobuf message: ${request.reason}`));
      return;
    }
    // Back-pressure: a call is served only if what it does can be audited (the trail's queue has room).
    // (`?.`: contexts built for a handler alone, as in tests of the adapter, have no trail)
    if (ctx.audit?.saturated()) return fail(unavailable(`the audit queue is full (${ctx.audit.pending()} entries waiting for the database)`));
    const timer = setTimeout(() => {
      answered = true;
      const err = timedOut(`no answer within ${timeoutMs} ms (--request-timeout)`);
      controller.abort(err);
      fail(err);
    }, timeoutMs);
    // grpc-js answers a client that cancelled or whose deadline passed; the handler only needs to stop.
    call.once('cancelled', () => controller.abort(timedOut('the client cancelled the call, or its own deadline passed')));
    fn(call.request, info, call).then(
      (res) => {
        clearTimeout(timer);
        if (answered) return ctx.logger.info(`${rpc} finished after its deadline; the answer was dropped`, { rpc, ref: info.refId });
        answered = true;
        callback(null, res);
      },
      (e: unknown) => {
        clearTimeout(timer);
        const failure = fromStore(e);
        const err = failure instanceof BrokerError ? failure : new BrokerError('internal', 'internal error', (e as Error)?.stack ?? String(e));
        if (answered) {
          return ctx.logger[err.kind === 'internal' ? 'error' : 'info'](`${rpc} ended after its deadline`, { rpc, ref: info.refId, class: err.kind, reason: err.detail });
        }
        answered = true;
        fail(err);
      },
    );
  };
}

/** Audit details are bounded: a reason quoting host input (or a stack trace) must not bloat the trail. */
const MAX_AUDIT_REASON = 2000;

function auditAnswer(ctx: BrokerContext, rpc: string, info: CallInfo, code: status, err: BrokerError): void {
  const reason = err.detail.length > MAX_AUDIT_REASON ? `${err.detail.slice(0, MAX_AUDIT_REASON)}…` : err.detail;
  const entry = { event: 'call', outcome: status[code], peer: info.peer, refId: info.refId, detail: { rpc, class: err.kind, reason } };
  // The answer goes out whatever the audit trail does with the entry (it may queue it, or refuse it while full).
  const failed = (e: unknown) => ctx.logger.error('audit entry of an answer not recorded', { rpc, ref: info.refId, error: (e as Error)?.message ?? String(e) });
  try {
    Promise.resolve(ctx.audit.record(entry) as unknown).catch(failed);
  } catch (e) {
    failed(e);
  }
}

/** Throws the timeout refusal if the call can no longer be answered (see CallInfo.signal); `before` says what is abandoned. */
export function checkDeadline(info: CallInfo, before: string): void {
  if (info.signal.aborted) throw timedOut(`${(info.signal.reason as BrokerError).detail}, before ${before}`);
}
