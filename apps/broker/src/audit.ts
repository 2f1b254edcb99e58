import { isStoreError, type AuditEntryInput, type Store } from '@kb/store';
import type { Logger } from './log';

/** Entries written together at most this long after the first of them was recorded. */
const BATCH_DELAY_MS = 10;
const MAX_BATCH = 500;
/** Entries waiting for the database at most; beyond it the broker refuses new calls (see AuditTrail). */
export const AUDIT_QUEUE_LIMIT = 10_000;
/** A failed write is retried after 50 ms, then twice as long each time up to 1 s: the trail resumes within a second. */
const RETRY_FIRST_MS = 50;
const RETRY_MAX_MS = 1000;
/** How long close() keeps retrying before it gives the remaining entries to the log instead. */
export const AUDIT_FLUSH_TIMEOUT_MS = 10_000;

/**
 * The entries not committed with the state they record: refusals, withdrawn bundles, online releases' refusals.
 * (A bundle's and a release's own entries are written in the same statement or transaction as the session or the
 * release — see get-bundle.ts and release.ts — so nothing is handed out unrecorded.)
 *
 * They leave the request path: a refusal is answered without waiting for its row. Entries recorded within a few
 * milliseconds go to the database in one statement, and while a batch is being written the next one gathers, so
 * batches grow with the load instead of the number of statements.
 *
 * Nothing is dropped because the database is away: an entry stays queued until it is written, and a failed write is
 * retried with back-off (50 ms doubling to 1 s). The queue is bounded — at AUDIT_QUEUE_LIMIT entries `saturated()` is
 * true and the broker refuses new calls UNAVAILABLE (retry later) rather than serve what it could not audit, as a
 * secret store refuses a request it cannot audit. Only an entry the database itself rejects (a value it cannot hold)
 * and, on shutdown, entries still unwritten after AUDIT_FLUSH_TIMEOUT_MS go to the log instead, with all their fields.
 * The queue lives in memory: a broker killed (kill -9) while the database is away loses its queued refusals.
 */
export class AuditTrail {
  /** Written from the head; an entry leaves only once it is stored (or given to the log). */
  private readonly queue: AuditEntryInput[] = [];
  private timer: NodeJS.Timeout | undefined;
  private draining: Promise<void> | undefined;
  private retry: { timer: NodeJS.Timeout; wake: () => void } | undefined;
  private failingSince: number | undefined;
  private stopped = false;

  constructor(
    private readonly store: Store,
    private readonly logger: Logger,
    private readonly limit = AUDIT_QUEUE_LIMIT,
  ) {}

  record(entry: AuditEntryInput): void {
    if (this.stopped) return this.lost([jsonSafe(entry)], 'the broker has shut down');
    this.queue.push(jsonSafe({ ...entry, at: entry.at ?? new Date() }));
    if (this.draining) return; // the running writer takes it
    if (this.queue.length >= MAX_BATCH) this.drain();
    else this.timer ??= setTimeout(() => this.drain(), BATCH_DELAY_MS);
  }

  /** Entries recorded and not yet stored, and when the oldest was recorded (the metrics' audit lag). */
  backlog(): { entries: number; oldestAt?: Date } {
    return { entries: this.queue.length, oldestAt: this.queue[0]?.at ?? undefined };
  }

  /** Entries not stored yet. */
  pending(): number {
    return this.queue.length;
  }

  /** The queue is full: new calls are refused until the database catches up. */
  saturated(): boolean {
    return this.queue.length >= this.limit;
  }

  /**
   * Writes everything queued; retries for up to `timeoutMs`, then logs what is still unwritten (error level, every
   * field) and stops: a shutdown must not wait forever for a database that is gone.
   */
  async flush(timeoutMs = AUDIT_FLUSH_TIMEOUT_MS): Promise<void> {
    const deadline = performance.now() + timeoutMs;
    while (this.queue.length > 0 && performance.now() < deadline) {
      this.drain();
      const wait = new Promise<void>((r) => setTimeout(r, Math.min(200, deadline - performance.now())));
      await Promise.race([this.draining, wait]);
    }
    if (this.queue.length > 0) {
      this.stopped = true;
      this.retry?.wake();
      await this.draining;
      this.lost(this.queue.splice(0), `the database was still unreachable ${timeoutMs} ms into shutdown`);
    }
  }

  private drain(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    if (this.draining || this.queue.length === 0) return;
    this.draining = this.writeAll().finally(() => {
      this.draining = undefined;
      if (this.queue.length > 0 && !this.stopped) this.drain(); // recorded after the loop's last look
    });
  }

  private async writeAll(): Promise<void> {
    let delay = RETRY_FIRST_MS;
    while (this.queue.length > 0 && !this.stopped) {
      const batch = this.queue.slice(0, MAX_BATCH);
      try {
        await this.writeBatch(batch);
        this.queue.splice(0, batch.length);
        delay = RETRY_FIRST_MS;
        if (this.failingSince !== undefined) {
          this.logger.info('audit writes resumed', { afterMs: Math.round(performance.now() - this.failingSince), pending: this.queue.length });
          this.failingSince = undefined;
        }
      } catch (e) {
        if (this.failingSince === undefined) {
          this.failingSince = performance.now();
          this.logger.warn('audit writes failing; entries stay queued and are retried', { pending: this.queue.length, error: (e as Error).message });
        }
        await this.sleep(delay);
        delay = Math.min(RETRY_MAX_MS, delay * 2);
      }
    }
  }

  /**
   * One statement for the batch; if the database refuses it for a reason other than being unreachable, entry by
   * entry, so one entry it cannot hold does not block the others. Throws (and the batch stays queued) on a failure
   * worth retrying.
   */
  private async writeBatch(batch: AuditEntryInput[]): Promise<void> {
    try {
      await this.store.appendAudits(batch);
      return;
    } catch (e) {
      if (!rejectsEntries(e)) throw e;
    }
    for (const entry of batch) {
      try {
        await this.store.appendAudit(entry);
      } catch (e) {
        if (!rejectsEntries(e)) throw e; // entries already written before it are written again on retry: rare, harmless
        this.lost([entry], `the database rejected the entry: ${(e as Error).message}`);
      }
    }
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const wake = () => {
        clearTimeout(timer);
        this.retry = undefined;
        resolve();
      };
      const timer = setTimeout(wake, ms);
      timer.unref(); // a retry alone does not keep the process alive; the servers do while they run
      this.retry = { timer, wake };
    });
  }

  /** The last resort: the entry's fields in the log, so the owner's trail has it somewhere. */
  private lost(entries: AuditEntryInput[], why: string): void {
    for (const e of entries) {
      this.logger.error('audit entry not stored; recorded here instead', {
        why,
        event: e.event,
        outcome: e.outcome,
        at: e.at,
        launchId: e.launchId,
        clientId: e.clientId,
        peer: e.peer,
        ref: e.refId,
        detail: e.detail,
      });
    }
  }
}

/** Failures that are about the entries (a value the table cannot hold, a closed store), not a database away. */
function rejectsEntries(e: unknown): boolean {
  return isStoreError(e, 'ERR_STORE_ARGUMENT') || isStoreError(e, 'ERR_STORE_CONSTRAINT') || isStoreError(e, 'ERR_STORE_CLOSED');
}

/**
 * PostgreSQL's jsonb cannot hold U+0000, and host-supplied text (LaunchDescription) may contain it: an audit row
 * must never be lost to that, so NUL in any detail string becomes U+FFFD.
 */
export function jsonSafe(entry: AuditEntryInput): AuditEntryInput {
  return entry.detail === undefined || entry.detail === null ? entry : { ...entry, detail: withoutNul(entry.detail) as AuditEntryInput['detail'] };
}

function withoutNul(v: unknown): unknown {
  if (typeof v === 'string') return v.includes('\0') ? v.replace(/\0/g, '\ufffd') : v;
  if (Array.isArray(v)) return v.map(withoutNul);
  if (v && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [withoutNul(k) as string, withoutNul(x)]));
  return v;
}
