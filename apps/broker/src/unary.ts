import type { handleUnaryCall, sendUnaryData, ServerUnaryCall } from '@grpc/grpc-js';
import { BrokerError, newRefId, toServiceError } from './errors';
import type { BrokerContext } from './context';

export interface CallInfo {
  peer: string;
  refId: string;
}

/**
 * Adapts an async handler to grpc-js: every failure becomes a status with a reference id; the detailed reason goes
 * to the log (and, for refusals, the handler's audit entry) under the same id. Unexpected exceptions are INTERNAL and
 * never echo their message to the caller.
 */
export function unary<Req, Res>(
  ctx: BrokerContext,
  rpc: string,
  fn: (req: Req, info: CallInfo, call: ServerUnaryCall<Req, Res>) => Promise<Res>,
): handleUnaryCall<Req, Res> {
  return (call: ServerUnaryCall<Req, Res>, callback: sendUnaryData<Res>) => {
    const info: CallInfo = { peer: call.getPeer(), refId: newRefId() };
    fn(call.request, info, call).then(
      (res) => callback(null, res),
      (e: unknown) => {
        const err = e instanceof BrokerError ? e : new BrokerError('internal', 'internal error', (e as Error)?.stack ?? String(e));
        const level = err.kind === 'internal' ? 'error' : 'info';
        ctx.logger[level](`${rpc} failed`, { rpc, ref: info.refId, peer: info.peer, class: err.kind, reason: err.detail });
        callback(toServiceError(err, info.refId) as never, null);
      },
    );
  };
}
