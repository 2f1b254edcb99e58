import type { KeyObject } from 'node:crypto';
import { generateGodhKey } from '@kb/sev';

/**
 * Fresh P-384 guest-owner keys made while the broker is idle, so a GetBundle that arrives between bursts pays only
 * for the ECDH derive, not the key generation. Each key is handed out once and never kept after that; under a
 * sustained load the pool is empty and GetBundle generates its own, so no work is ever wasted beyond `size` keys.
 */
export class GodhKeyPool {
  private readonly keys: KeyObject[] = [];
  private filling = false;
  private closed = false;

  constructor(private readonly size = 16) {
    this.fill();
  }

  take(): KeyObject {
    const key = this.keys.pop() ?? generateGodhKey();
    this.fill();
    return key;
  }

  close(): void {
    this.closed = true;
    this.keys.length = 0;
  }

  /** One key per event-loop turn (setImmediate), so requests are never queued behind a whole refill. */
  private fill(): void {
    if (this.filling || this.closed || this.keys.length >= this.size) return;
    this.filling = true;
    setImmediate(() => {
      this.filling = false;
      if (this.closed || this.keys.length >= this.size) return;
      this.keys.push(generateGodhKey());
      this.fill();
    }).unref();
  }
}
