import { randomBytes } from 'node:crypto';
import { openStore, PGLITE_MEMORY, type AuditEntryInput, type Store } from '@kb/store';
import { AuditTrail } from '../src/audit';
import { createLogger } from '../src/log';

describe('AuditTrail (audit rows written off the request path)', () => {
  let store: Store;
  let batches: number[];
  let release: (() => void) | undefined;
  let gate: Promise<void> | undefined;

  beforeEach(async () => {
    store = await openStore({ driver: 'pglite', dataDir: PGLITE_MEMORY, masterKey: randomBytes(32) });
    batches = [];
    // The real store, with each batch statement recorded and — while a gate is set — held until it opens.
    const append = store.appendAudits.bind(store);
    store.appendAudits = async (entries: AuditEntryInput[]) => {
      batches.push(entries.length);
      if (gate) await gate;
      return append(entries);
    };
  });
  afterEach(() => store.close());

  const entry = (n: number): AuditEntryInput => ({ event: 'bundle', outcome: 'issued', refId: `ref-${n}`, detail: { n } });

  it('gathers the entries recorded while a batch is written into the next statement, and flush writes them all', async () => {
    gate = new Promise((r) => (release = r));
    const trail = new AuditTrail(store, createLogger('error', () => undefined));
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
    const trail = new AuditTrail(store, createLogger('error', (l) => lines.push(l)));
    trail.record(entry(1));
    trail.record({ event: '', outcome: 'issued', refId: 'bad' }); // the store refuses an entry without an event
    trail.record(entry(2));
    await trail.flush();
    const rows = await store.listAudit({ limit: 100 });
    expect(rows.map((r) => r.refId).sort()).toEqual(['ref-1', 'ref-2']);
    expect(lines.join('\n')).toMatch(/audit write failed.*"ref":"bad"/);
  });
});
