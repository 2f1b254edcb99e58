import type { keybroker } from '@kb/grpc-api';
import type { BrokerContext } from '../context';
import { unary } from '../unary';
import { ChainCache } from './chain-cache';
import type { EcdhPool } from './ecdh-pool';
import { getBundleHandler } from './get-bundle';
import { getOnlineSecretHandler } from './get-online-secret';
import { getSecretHandler } from './get-secret';

/** keybroker.KeyBrokerService, wire-compatible with simple-kbs. */
export function keyBrokerService(ctx: BrokerContext, ecdh: EcdhPool): keybroker.KeyBrokerServiceServer {
  const chains = new ChainCache(ctx.extraRoots);
  return {
    getBundle: unary(ctx, 'GetBundle', getBundleHandler(ctx, chains, ecdh)),
    getSecret: unary(ctx, 'GetSecret', getSecretHandler(ctx)),
    getOnlineSecret: unary(ctx, 'GetOnlineSecret', getOnlineSecretHandler(ctx)),
  };
}
