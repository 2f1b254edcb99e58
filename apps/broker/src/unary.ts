import { status, type handleUnaryCall, type sendUnaryData, type ServerUnaryCall } from '@grpc/grpc-js';
import { MalformedMessage } from '@kb/grpc-api';
import { runCall, type CallInfo } from './call';
import type { BrokerContext } from './context';
import { invalid, toServiceError } from './errors';

export { checkDeadline, type CallInfo } from './call';

/**
 * The gRPC binding of runCall (call.ts): every failure becomes a status with a reference id in its message and in
 * the `kb-ref` metadata. A request whose bytes are not a valid message (see strictDecoding in @kb/grpc-api) is
 * INVALID_ARGUMENT here, like any other malformed input. grpc-js answers a client that cancelled or whose own
 * deadline passed; the handler only needs to stop.
 */
export function unary<Req, Res>(
  ctx: BrokerContext,
  rpc: string,
  fn: (req: Req, info: CallInfo, call: ServerUnaryCall<Req, Res>) => Promise<Res>,
): handleUnaryCall<Req, Res> {
  return (call: ServerUnaryCall<Req, Res>, callback: sendUnaryData<Res>) => {
    const request: unknown = call.request;
    const early = request instanceof MalformedMessage ? invalid(`the request is not a valid protobuf message: ${request.reason}`) : undefined;
    const running = runCall<Res>(
      ctx,
      rpc,
      call.getPeer(),
      {
        ok: (res) => callback(null, res),
        fail: (err, refId) => {
          const answer = toServiceError(err, refId);
          callback(answer as never, null);
          return status[answer.code!];
        },
      },
      (info) => fn(call.request, info, call),
      early,
    );
    if (!early) call.once('cancelled', () => running.cancel('the client cancelled the call, or its own deadline passed'));
  };
}
