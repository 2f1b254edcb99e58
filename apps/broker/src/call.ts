import type { BrokerContext } from './context';
import { BrokerError, fromStore, newRefId, timedOut, unavailable } from './errors';

/**
 * One call from an untrusted caller (a host or a guest), whatever its transport: the gRPC adapter (unary.ts) and the
 * HTTP adapter (http/route.ts) are thin bindings of runCall, so a reference, a deadline, the audit trail's
 * back-pressure and the translation of failures exist once for every front-end.
 */
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

/** How a transport answers; `fail` returns the answer's code as the audit trail records it (`PERMISSION_DENIED`, `HTTP 403`). */
export interface CallAnswer<Res> {
  ok(res: Res): void;
  fail(err: BrokerError, refId: string): string;
}

export interface RunningCall {
  info: CallInfo;
  /** The client went away (cancelled, its own deadline, a closed connection): the handler stops. */
  cancel(detail: string): void;
}

/**
 * Runs `fn` as the broker answers every untrusted call: every failure becomes its class and a reference id; the
 * detailed reason goes to the log and, under the same reference, to the audit trail (event `call`: the call, the
 * peer, the answer's code and the reason, never the request), so `kbctl audit --ref` finds whatever reference a
 * caller was given; a handler's own entry (a refusal's launch, what was requested) sits next to it. Unexpected
 * exceptions are INTERNAL and never echo their message to the caller.
 *
 * Every call is answered within `requestTimeoutSeconds`: a stuck database must not hold a host forever (simple-kbs
 * clients set no deadline of their own), and the server keeps serving others meanwhile. The handler learns of it
 * through `info.signal`; whatever it returns afterwards is dropped. A call is served only if what it does can be
 * audited: while the audit trail's queue is full, calls are refused UNAVAILABLE (back-pressure).
 *
 * `early` is a failure found before the handler (a request that could not be decoded or validated).
 */
export function runCall<Res>(
  ctx: BrokerContext,
  rpc: string,
  peer: string,
  answer: CallAnswer<Res>,
  fn: (info: CallInfo) => Promise<Res>,
  early?: BrokerError,
): RunningCall {
  const timeoutMs = ctx.config.requestTimeoutSeconds * 1000;
  const controller = new AbortController();
  const info: CallInfo = { peer, refId: newRefId(), signal: controller.signal };
  const running: RunningCall = { info, cancel: (detail) => controller.abort(timedOut(detail)) };
  let answered = false;
  const fail = (err: BrokerError) => {
    const level = err.kind === 'internal' ? 'error' : err.kind === 'timeout' || err.kind === 'unavailable' ? 'warn' : 'info';
    ctx.logger[level](`${rpc} failed`, { rpc, ref: info.refId, peer: info.peer, class: err.kind, reason: err.detail });
    const code = answer.fail(err, info.refId);
    auditAnswer(ctx, rpc, info, code, err);
  };
  if (early) {
    fail(early);
    return running;
  }
  // (`?.`: contexts built for a handler alone, as in tests of the adapter, have no trail)
  if (ctx.audit?.saturated()) {
    fail(unavailable(`the audit queue is full (${ctx.audit.pending()} entries waiting for the database)`));
    return running;
  }
  const timer = setTimeout(() => {
    answered = true;
    const err = timedOut(`no answer within ${timeoutMs} ms (--request-timeout)`);
    controller.abort(err);
    fail(err);
  }, timeoutMs);
  fn(info).then(
    (res) => {
      clearTimeout(timer);
      if (answered) return ctx.logger.info(`${rpc} finished after its deadline; the answer was dropped`, { rpc, ref: info.refId });
      answered = true;
      answer.ok(res);
    },
    (e: unknown) => {
      clearTimeout(timer);
      const failure = fromStore(e);
      const err = failure instanceof BrokerError ? failure : new BrokerError('internal', 'internal error', (e as Error)?.stack ?? String(e));
      if (answered) {
        return ctx.logger[err.kind === 'internal' ? 'error' : 'info'](`${rpc} ended after its deadline`, {
          rpc,
          ref: info.refId,
          class: err.kind,
          reason: err.detail,
        });
      }
      answered = true;
      fail(err);
    },
  );
  return running;
}

/** Audit details are bounded: a reason quoting caller input (or a stack trace) must not bloat the trail. */
const MAX_AUDIT_REASON = 2000;

function auditAnswer(ctx: BrokerContext, rpc: string, info: CallInfo, code: string, err: BrokerError): void {
  const reason = err.detail.length > MAX_AUDIT_REASON ? `${err.detail.slice(0, MAX_AUDIT_REASON)}…` : err.detail;
  const entry = { event: 'call', outcome: code, peer: info.peer, refId: info.refId, detail: { rpc, class: err.kind, reason } };
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
