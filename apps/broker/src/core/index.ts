/**
 * The broker's core (issue #15: one core, two front-ends): chain verification, the launch-session service and the
 * release service. The gRPC key broker (keybroker/) and the attestation service's HTTP routes (attestation-service/)
 * are thin adapters over it; one instance per broker, so caps and caches are shared by both.
 */
import type { BrokerContext } from '../context';
import type { EcdhPool } from '../keybroker/ecdh-pool';
import { ChainCache } from './chain-cache';
import { LaunchSessions } from './launch-session';

export interface BrokerCore {
  chains: ChainCache;
  sessions: LaunchSessions;
}

export function createCore(ctx: BrokerContext, ecdh: EcdhPool): BrokerCore {
  return { chains: new ChainCache(ctx.extraRoots), sessions: new LaunchSessions(ctx, ecdh) };
}
