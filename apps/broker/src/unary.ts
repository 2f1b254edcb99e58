import type { handleUnaryCall, sendUnaryData, ServerUnaryCall } from '@grpc/grpc-js';
import { BrokerError, fromStore, newRefId, timedOut, toServiceError, unavailable } from './errors';
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
      callback(toServiceError(err, info.refId) as never, null);
    };
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

/** Throws the timeout refusal if the call can no longer be answered (see CallInfo.signal); `before` says what is abandoned. */
export function checkDeadline(info: CallInfo, before: string): void {
  if (info.signal.aborted) throw timedOut(`${(info.signal.reason as BrokerError).detail}, before ${before}`);
}
