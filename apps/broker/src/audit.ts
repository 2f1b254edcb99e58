import type { AuditEntryInput, Store } from '@kb/store';
import type { Logger } from './log';

/**
 * Audit writes leave the request path: a release or refusal is answered without waiting for its audit row, but
 * every pending write is awaited on shutdown (flush), and a failed write is logged with the entry's fields.
 */
export class AuditTrail {
  private readonly pending = new Set<Promise<unknown>>();

  constructor(
    private readonly store: Store,
    private readonly logger: Logger,
  ) {}

  record(entry: AuditEntryInput): void {
    const p = this.store
      .appendAudit(entry)
      .catch((e: Error) => this.logger.error('audit write failed', { event: entry.event, outcome: entry.outcome, ref: entry.refId, error: e.message }))
      .finally(() => this.pending.delete(p));
    this.pending.add(p);
  }

  async flush(): Promise<void> {
    while (this.pending.size) await Promise.all([...this.pending]);
  }
}
