import type { keybroker } from '@kb/grpc-api';
import type { BrokerContext } from '../context';
import type { BrokerCore } from '../core';
import { unary } from '../unary';
import { getBundleHandler } from './get-bundle';
import { getOnlineSecretHandler } from './get-online-secret';
import { getSecretHandler } from './get-secret';

/** keybroker.KeyBrokerService, wire-compatible with simple-kbs: a gRPC front-end of the core (../core). */
export function keyBrokerService(ctx: BrokerContext, core: BrokerCore): keybroker.KeyBrokerServiceServer {
  return {
    getBundle: unary(ctx, 'GetBundle', getBundleHandler(ctx, core.chains, core.sessions)),
    getSecret: unary(ctx, 'GetSecret', getSecretHandler(ctx)),
    getOnlineSecret: unary(ctx, 'GetOnlineSecret', getOnlineSecretHandler(ctx)),
  };
}
