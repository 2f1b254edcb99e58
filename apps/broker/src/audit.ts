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
      .appendAudit(jsonSafe(entry))
      .catch((e: Error) => this.logger.error('audit write failed', { event: entry.event, outcome: entry.outcome, ref: entry.refId, error: e.message }))
      .finally(() => this.pending.delete(p));
    this.pending.add(p);
  }

  async flush(): Promise<void> {
    while (this.pending.size) await Promise.all([...this.pending]);
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
