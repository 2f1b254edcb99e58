import type { AuditEntryInput, Store } from '@kb/store';
import type { Logger } from './log';

/** Entries written together at most this long after the first of them was recorded. */
const BATCH_DELAY_MS = 10;
const MAX_BATCH = 500;

/**
 * Audit writes leave the request path: a release or refusal is answered without waiting for its audit row. Entries
 * recorded within a few milliseconds go to the database in one statement (one INSERT per GetBundle would cost a
 * fifth of the call), and while a batch is being written the next one gathers, so batches grow with the load instead
 * of the number of statements. Every pending write is awaited on shutdown (flush), and a batch the database refuses
 * is retried entry by entry so one bad entry cannot lose the others; a failed write is logged with the entry's fields.
 */
export class AuditTrail {
  private queue: AuditEntryInput[] = [];
  private timer: NodeJS.Timeout | undefined;
  private readonly writing = new Set<Promise<void>>();
  /** the batches being written, for backlog() */
  private readonly inFlight = new Map<Promise<void>, AuditEntryInput[]>();

  constructor(
    private readonly store: Store,
    private readonly logger: Logger,
  ) {}

  record(entry: AuditEntryInput): void {
    this.queue.push(jsonSafe({ ...entry, at: entry.at ?? new Date() }));
    if (this.queue.length >= MAX_BATCH) this.write();
    else if (this.writing.size === 0) this.timer ??= setTimeout(() => this.write(), BATCH_DELAY_MS);
  }

  /** Entries recorded and not yet written (queued or in a batch being written), and when the oldest was recorded. */
  backlog(): { entries: number; oldestAt?: Date } {
    let entries = this.queue.length;
    let oldestAt = this.queue[0]?.at ?? undefined;
    for (const batch of this.inFlight.values()) {
      entries += batch.length;
      const at = batch[0]?.at;
      if (at && (!oldestAt || at < oldestAt)) oldestAt = at;
    }
    return { entries, oldestAt };
  }

  async flush(): Promise<void> {
    this.write();
    while (this.writing.size) await Promise.all([...this.writing]);
  }

  private write(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    const batch = this.queue;
    if (batch.length === 0) return;
    this.queue = [];
    const p = this.store
      .appendAudits(batch)
      .then(
        () => undefined,
        () => Promise.all(batch.map((e) => this.store.appendAudit(e).catch((err: Error) => this.failed(e, err)))).then(() => undefined),
      )
      .finally(() => {
        this.writing.delete(p);
        this.inFlight.delete(p);
        if (this.queue.length > 0) this.write(); // what gathered meanwhile
      });
    this.writing.add(p);
    this.inFlight.set(p, batch);
  }

  private failed(entry: AuditEntryInput, e: Error): void {
    this.logger.error('audit write failed', { event: entry.event, outcome: entry.outcome, ref: entry.refId, launchId: entry.launchId, error: e.message });
  }
}

/**
 * PostgreSQL's jsonb cannot hold U+0000, and host-supplied text (LaunchDescription) may contain it: an audit row
 * must never be lost to that, so NUL in any detail string becomes U+FFFD.
 */
function jsonSafe(entry: AuditEntryInput): AuditEntryInput {
  return entry.detail === undefined || entry.detail === null ? entry : { ...entry, detail: withoutNul(entry.detail) as AuditEntryInput['detail'] };
}

function withoutNul(v: unknown): unknown {
  if (typeof v === 'string') return v.includes('\0') ? v.replace(/\0/g, '\ufffd') : v;
  if (Array.isArray(v)) return v.map(withoutNul);
  if (v && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [withoutNul(k) as string, withoutNul(x)]));
  return v;
}
