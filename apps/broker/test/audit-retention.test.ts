import type { Store } from '@kb/store';
import { startBroker, type RunningBroker } from '../src/broker';
import { createLogger } from '../src/log';
import { OwnerClient } from './support/grpc';
import { ADMIN_TOKEN, DRIVERS, testConfig, testDatabase } from './support/broker';
import { eventually } from './support/wait';

const HOUR_MS = 3_600_000;

describe.each(DRIVERS)('audit retention in the broker (%s)', (driver) => {
  let db: Awaited<ReturnType<typeof testDatabase>>;
  let store: Store;
  let broker: RunningBroker | undefined;
  let lines: Record<string, unknown>[];

  beforeAll(async () => {
    db = await testDatabase(driver);
    store = await db.open();
  }, 120_000);

  afterAll(async () => {
    await store?.close();
    await db?.drop();
  });

  beforeEach(() => {
    lines = [];
  });

  afterEach(async () => {
    await broker?.close();
    broker = undefined;
  });

  const start = async (auditRetentionDays: number) => {
    const logger = createLogger('info', (l) => lines.push(JSON.parse(l) as Record<string, unknown>));
    broker = await startBroker(testConfig({ auditRetentionDays }), { store, logger });
    return broker;
  };
  const present = async (refId: string) => (await store.listAudit({ refId })).length > 0;
  const entry = (refId: string, ageMs: number) => ({ at: new Date(Date.now() - ageMs), event: 'bundle', outcome: 'issued', refId });

  it('purges entries older than the retention at start-up, keeps the newer ones, and logs it', async () => {
    const suffix = `${driver}-1`;
    await store.appendAudits([entry(`old-${suffix}`, 13 * HOUR_MS), entry(`recent-${suffix}`, 11 * HOUR_MS)]);
    await start(0.5); // half a day: the 13-hour-old entry goes, the 11-hour-old one stays

    const purged = await eventually(async () => lines.find((l) => l.msg === 'audit entries purged'));
    expect(purged).toMatchObject({ level: 'info', count: 1 });
    const cutoff = Date.parse(purged!.cutoff as string);
    expect(Math.abs(cutoff - (Date.now() - 12 * HOUR_MS))).toBeLessThan(60_000);
    expect(await present(`old-${suffix}`)).toBe(false);
    expect(await present(`recent-${suffix}`)).toBe(true);
    expect(lines.find((l) => l.msg === 'broker listening')).toMatchObject({ auditRetentionDays: 0.5 });
  });

  it('retention 0 keeps even a ten-year-old entry', async () => {
    const old = `ancient-${driver}`;
    await store.appendAudit(entry(old, 3650 * 24 * HOUR_MS));
    const b = await start(0);
    expect(lines.find((l) => l.msg === 'broker listening')).toMatchObject({ auditRetentionDays: 0 });

    // The start-up purge would have run by the time the broker has answered a request (it is the next timer after
    // start-up); look a little longer in case one were still in flight.
    const owner = new OwnerClient(b.adminAddress, ADMIN_TOKEN);
    try {
      const listed = await owner.call<{ entries: { ref_id: string }[] }>('listAudit', { ref_id: old, limit: 5, since: '', launch_id: '', page_token: '' });
      expect(listed.entries.map((e) => e.ref_id)).toEqual([old]);
    } finally {
      owner.close();
    }
    const gone = await eventually(async () => ((await present(old)) ? undefined : true), 300);
    expect(gone).toBeUndefined();
    expect(lines.filter((l) => l.msg === 'audit entries purged')).toEqual([]);
  });
});
