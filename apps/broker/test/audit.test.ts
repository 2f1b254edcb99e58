import { randomBytes } from 'node:crypto';
import { openStore, PGLITE_MEMORY, StoreError, type AuditEntryInput, type Store } from '@kb/store';
import { AuditTrail } from '../src/audit';
import { createLogger } from '../src/log';

describe('AuditTrail (audit rows written off the request path)', () => {
  let store: Store;
  let batches: number[];
  let release: (() => void) | undefined;
  let gate: Promise<void> | undefined;
  /** while > 0, that many more batch statements fail as they do when PostgreSQL is down (ERR_STORE_CONNECT) */
  let away = 0;

  beforeEach(async () => {
    store = await openStore({ driver: 'pglite', dataDir: PGLITE_MEMORY, masterKey: randomBytes(32) });
    batches = [];
    away = 0;
    // The real store, with each batch statement recorded and — while a gate is set — held until it opens.
    const append = store.appendAudits.bind(store);
    store.appendAudits = async (entries: AuditEntryInput[]) => {
      batches.push(entries.length);
      if (gate) await gate;
      if (away > 0 && away--) throw new StoreError('ERR_STORE_CONNECT', 'database unavailable: connect ECONNREFUSED 127.0.0.1:5432');
      return append(entries);
    };
  });
  afterEach(() => store.close());

  const entry = (n: number): AuditEntryInput => ({ event: 'bundle', outcome: 'issued', refId: `ref-${n}`, detail: { n } });

  it('gathers the entries recorded while a batch is written into the next statement, and flush writes them all', async () => {
    gate = new Promise((r) => (release = r));
    const trail = new AuditTrail(
      store,
      createLogger('error', () => undefined),
    );
    trail.record(entry(0));
    await new Promise((r) => setTimeout(r, 30)); // the first batch (one entry) is now being written, held at the gate
    expect(batches).toEqual([1]);
    for (let i = 1; i <= 20; i++) trail.record(entry(i));
    await new Promise((r) => setTimeout(r, 30));
    expect(batches).toEqual([1]); // no second statement while the first is in flight
    gate = undefined;
    release!();
    await trail.flush();
    expect(batches).toEqual([1, 20]);
    const rows = await store.listAudit({ limit: 100 });
    expect(rows.map((r) => r.refId).sort()).toEqual(Array.from({ length: 21 }, (_, i) => `ref-${i}`).sort());
  });

  it('retries a refused batch entry by entry, so one bad entry loses only itself, and logs it', async () => {
    const lines: string[] = [];
    const trail = new AuditTrail(
      store,
      createLogger('error', (l) => lines.push(l)),
    );
    trail.record(entry(1));
    trail.record({ event: '', outcome: 'issued', refId: 'bad' }); // the store refuses an entry without an event
    trail.record(entry(2));
    await trail.flush();
    const rows = await store.listAudit({ limit: 100 });
    expect(rows.map((r) => r.refId).sort()).toEqual(['ref-1', 'ref-2']);
    expect(lines.join('\n')).toMatch(/audit entry not stored; recorded here instead.*"event":"".*"ref":"bad"/);
  });

  it('keeps entries queued while the database is away and writes every one of them once it is back', async () => {
    const lines: string[] = [];
    const trail = new AuditTrail(
      store,
      createLogger('info', (l) => lines.push(l)),
    );
    away = 5; // 50 + 100 + 200 + 400 + 800 ms of back-off
    const started = performance.now();
    for (let i = 0; i < 30; i++) trail.record(entry(i));
    await new Promise((r) => setTimeout(r, 200));
    expect(trail.pending()).toBe(30); // nothing written, nothing dropped
    await trail.flush();
    expect(performance.now() - started).toBeGreaterThanOrEqual(1500);
    expect(batches.slice(0, 5)).toEqual([30, 30, 30, 30, 30]); // the same batch retried, not split or dropped
    expect(trail.pending()).toBe(0);
    expect((await store.listAudit({ limit: 100 })).map((r) => r.refId).sort()).toEqual(Array.from({ length: 30 }, (_, i) => `ref-${i}`).sort());
    expect(lines.join('\n')).toMatch(/audit writes failing; entries stay queued/);
    expect(lines.join('\n')).toMatch(/audit writes resumed/);
    expect(lines.join('\n')).not.toMatch(/not stored/);
  });

  it('is bounded: full, it reports saturation (the broker then refuses new calls) until the database catches up', async () => {
    const trail = new AuditTrail(
      store,
      createLogger('error', () => undefined),
      10,
    );
    away = 2;
    for (let i = 0; i < 12; i++) trail.record(entry(i));
    expect(trail.saturated()).toBe(true);
    expect(trail.pending()).toBe(12); // what was accepted is kept, even past the bound
    await trail.flush();
    expect(trail.saturated()).toBe(false);
    expect(await store.listAudit({ limit: 100 })).toHaveLength(12);
  });

  it('on shutdown, retries for the flush timeout and then logs every unwritten entry with its fields', async () => {
    const lines: string[] = [];
    const trail = new AuditTrail(
      store,
      createLogger('error', (l) => lines.push(l)),
    );
    away = 1_000_000;
    trail.record(entry(1));
    trail.record({ ...entry(2), launchId: 'f0e1d2c3-0000-4000-8000-000000000000' });
    const started = performance.now();
    await trail.flush(600);
    expect(performance.now() - started).toBeLessThan(3000);
    const lost = lines.filter((l) => l.includes('audit entry not stored'));
    expect(lost).toHaveLength(2);
    expect(lost[1]).toMatch(/"launchId":"f0e1d2c3-0000-4000-8000-000000000000".*"ref":"ref-2","detail":\{"n":2\}/);
  });
});
