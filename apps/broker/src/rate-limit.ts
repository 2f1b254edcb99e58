/**
 * Token bucket per peer. GetBundle is unauthenticated and costs an ECDH plus (on a cache miss) seven signature
 * checks, so one host must not be able to starve the others.
 */
export interface RateLimiterOptions {
  /** sustained requests per second per peer */
  ratePerSecond: number;
  /** bucket size: requests a peer may send in a burst */
  burst: number;
  /** peers tracked at most (oldest forgotten first) */
  maxPeers?: number;
}

export class RateLimiter {
  private readonly buckets = new Map<string, { tokens: number; at: number }>();
  private readonly maxPeers: number;

  constructor(private readonly opts: RateLimiterOptions) {
    this.maxPeers = opts.maxPeers ?? 10_000;
  }

  /** true when the peer may proceed (and a token is spent). */
  take(peer: string, nowMs = Date.now()): boolean {
    if (this.opts.ratePerSecond <= 0) return true;
    let b = this.buckets.get(peer);
    if (b) {
      this.buckets.delete(peer); // re-insert below keeps Map order = least recently used first
      b.tokens = Math.min(this.opts.burst, b.tokens + ((nowMs - b.at) / 1000) * this.opts.ratePerSecond);
      b.at = nowMs;
    } else {
      b = { tokens: this.opts.burst, at: nowMs };
      if (this.buckets.size >= this.maxPeers) this.buckets.delete(this.buckets.keys().next().value as string);
    }
    this.buckets.set(peer, b);
    if (b.tokens < 1) return false;
    b.tokens -= 1;
    return true;
  }
}

/** grpc-js peers look like "ipv4:1.2.3.4:5678" or "ipv6:[::1]:5678"; the limit applies per address, not per port. */
export function peerAddress(peer: string): string {
  const p = peer.replace(/^ipv[46]:/, '');
  if (p.startsWith('[')) return p.slice(0, p.indexOf(']') + 1) || p;
  const colon = p.lastIndexOf(':');
  return colon > 0 ? p.slice(0, colon) : p;
}
