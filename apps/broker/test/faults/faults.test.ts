/**
 * The fault suite (issue #12): kb-broker processes under mixed load from several simulated hosts while they are
 * killed (kill -9) and restarted, and while their PostgreSQL server is restarted, stopped and frozen (SIGSTOP). It
 * asserts invariants, not just "no crash":
 *   - a broker process that was not killed is still running, and logged no unhandled rejection or uncaught exception;
 *   - every call is answered within its deadline: the broker's own answer (OK, or a failure with a reference) within
 *     --request-timeout plus slack; only calls to a broker that was killed may fail without a reference;
 *   - no launch id is released twice (each GetSecret is sent twice at once, to both replicas when there are two);
 *   - every bundled session survives a broker restart (launches parked after GetBundle complete afterwards);
 *   - every delivered secret has its audit row, every bundle handed out has its row, and every refusal answered by a
 *     broker that was not killed has its row (written late if the database was away: delayed, never dropped).
 * Loopback only; PostgreSQL is a throwaway server of this suite's own (pg-cluster.ts), never the shared one.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { status } from '@grpc/grpc-js';
import { openStore, type AuditEntry } from '@kb/store';
import { ADMIN_TOKEN, MASTER_KEY, policyFor } from '../support/broker';
import { OwnerClient } from '../support/grpc';
import { expectedDigest } from '../support/host';
import { removeTrustRoot, startFaultBroker, type FaultBroker } from './broker-process';
import { FaultLoad, tally, type CallRecord } from './load';
import { PgCluster } from './pg-cluster';

const REQUEST_TIMEOUT_S = 2;
/** What a call may take beyond --request-timeout on this shared 2-core machine (the event loop, the answer's trip). */
const SLACK_MS = 2000;
/** The hosts' own deadline: anything the broker answers arrives well before it. */
const DEADLINE_MS = REQUEST_TIMEOUT_S * 1000 + 3000;
/** The issue asks for a 30 s stop; 8 s keeps the suite short (KB_FAULT_STOP_SECONDS=30 runs the long one). */
const STOP_S = Number(process.env.KB_FAULT_STOP_SECONDS ?? 8);
const FREEZE_S = 5;
const CLIENTS = 4;
/** The broker serves again this soon after its database is back (the issue: within a second; slack for a shared CI machine). */
const RECOVERY_LIMIT_MS = 3000;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const report: string[] = [];

async function seed(b: FaultBroker): Promise<void> {
  const owner = new OwnerClient(b.adminAddress, ADMIN_TOKEN);
  try {
    await owner.call('putPolicy', { name: 'default', document_json: policyFor([expectedDigest(0x1)]) });
    await owner.call('putSecret', { id: 'default/key/disk', value: Buffer.from('disk passphrase'), policy_name: '' });
  } finally {
    owner.close();
  }
}

async function readAudit(spec: { dataDir: string; databaseUrl?: string }): Promise<AuditEntry[]> {
  const store = spec.databaseUrl
    ? await openStore({ driver: 'pg', url: spec.databaseUrl, masterKey: MASTER_KEY })
    : await openStore({ driver: 'pglite', dataDir: spec.dataDir, masterKey: MASTER_KEY });
  try {
    return await store.listAudit({ limit: 10_000 });
  } finally {
    await store.close();
  }
}

/** A broker that was not killed: still running, and nothing slipped through to the last-resort handler. */
function expectAlive(b: FaultBroker): void {
  expect(b.exited()).toBe(false);
  expect(b.log()).not.toMatch(/unhandled promise rejection|uncaught exception/);
}

/** The call invariants over `calls`; `killed` are addresses of brokers that were killed (their calls may fail bare). */
function expectAnswered(calls: CallRecord[], killed: Set<string>): void {
  const late = calls.filter((c) => (c.code === status.OK || c.ref) && c.ms > REQUEST_TIMEOUT_S * 1000 + SLACK_MS);
  const bare = calls.filter((c) => c.code !== status.OK && !c.ref && !killed.has(c.target));
  expect(late.map((c) => `${c.rpc} ${status[c.code]} after ${c.ms} ms`)).toEqual([]);
  expect(bare.map((c) => `${c.rpc} to ${c.target}: ${status[c.code]} ${c.details}`)).toEqual([]);
}

/** The release and audit invariants, once the brokers have stopped (a graceful stop flushes the audit queue). */
function expectAudited(load: FaultLoad, audit: AuditEntry[], killed: Set<string>): void {
  expect(load.corrupt).toEqual([]);
  const twice = [...load.delivered].filter(([, n]) => n > 1);
  expect(twice).toEqual([]);
  const released = new Set(audit.filter((e) => e.event === 'secret' && e.outcome === 'released').map((e) => e.launchId));
  const issued = new Set(audit.filter((e) => e.event === 'bundle' && e.outcome === 'issued').map((e) => e.launchId));
  expect([...load.delivered.keys()].filter((id) => !released.has(id))).toEqual([]);
  expect([...load.bundled].filter((id) => !issued.has(id))).toEqual([]);
  // refusals go through the queue: those a killed broker had not written yet are lost with its memory
  const byRef = new Map(load.calls.filter((c) => c.ref).map((c) => [c.ref!, c.target]));
  const refs = new Set(audit.map((e) => e.refId));
  const missing = [...load.refusedRefs].filter((r) => !killed.has(byRef.get(r) ?? '') && !refs.has(r));
  expect(missing).toEqual([]);
}

/** The first successful answer that arrived after `since`, in ms after it. */
function recovery(calls: CallRecord[], since: number): number | undefined {
  const ends = calls.filter((c) => c.code === status.OK && c.at + c.ms >= since).map((c) => c.at + c.ms - since);
  return ends.length ? Math.min(...ends) : undefined;
}

function phase(name: string, calls: CallRecord[], extra = ''): void {
  const answered = calls.filter((c) => c.code === status.OK || c.ref).map((c) => c.ms);
  const slowest = answered.length ? Math.max(...answered) : 0;
  report.push(`${name}: ${calls.length} calls ${JSON.stringify(tally(calls))}, slowest answer ${slowest} ms${extra}`);
}

describe('fault suite', () => {
  let pg: PgCluster;
  const dirs: string[] = [];
  const brokers: FaultBroker[] = [];
  const tmp = () => {
    const d = mkdtempSync(join(tmpdir(), 'kb-fault-'));
    dirs.push(d);
    return d;
  };
  const start = async (spec: Parameters<typeof startFaultBroker>[0]) => {
    const t0 = Date.now();
    const b = await startFaultBroker(spec);
    brokers.push(b);
    return { b, startMs: Date.now() - t0 };
  };

  beforeAll(() => {
    pg = new PgCluster();
    pg.start();
  }, 120_000);

  afterAll(async () => {
    for (const b of brokers) await b.kill9().catch(() => undefined);
    pg?.destroy();
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
    removeTrustRoot();
    // The figures (jest shows console output of a passing suite too).
    console.log(`fault suite figures (shared 2-core machine):\n  ${report.join('\n  ')}`);
  });

  it('PGlite: kill -9 of the broker under load, then a restart on the same data directory', async () => {
    const spec = { dataDir: tmp(), requestTimeoutSeconds: REQUEST_TIMEOUT_S };
    let { b } = await start(spec);
    await seed(b);
    const first = b;
    const load = new FaultLoad(() => [b.address], DEADLINE_MS, { clients: CLIENTS, parkUpTo: 12 });
    load.start();
    await sleep(4000);
    await first.kill9();
    const killedAt = Date.now();
    const restarted = await start(spec);
    b = restarted.b;
    const back = Date.now();
    await sleep(3000);
    await load.stop();
    const parked = await load.completeParked();
    expectAlive(b);
    expect(parked.failures).toEqual([]);
    expect(await b.stop()).toBe(0);
    const killed = new Set([first.address]);
    expectAnswered(load.calls, killed);
    expectAudited(load, await readAudit(spec), killed);
    expect(load.delivered.size).toBeGreaterThan(0);
    phase(
      'PGlite kill -9',
      load.calls,
      `; restart ${back - killedAt} ms (process start to listening ${restarted.startMs} ms); first answer after it ${recovery(load.calls, back)} ms;` +
        ` ${load.delivered.size} secrets delivered, ${load.bundled.size} bundles, ${parked.sent} parked launches completed after the restart: ${parked.ok}`,
    );
  }, 120_000);

  describe('PostgreSQL, two replicas on one database', () => {
    let spec: { dataDir: string; databaseUrl: string; requestTimeoutSeconds: number };
    let a: FaultBroker;
    let b: FaultBroker;
    const killed = new Set<string>();
    let load: FaultLoad;
    let mark = 0;
    const since = () => {
      const calls = load.calls.slice(mark);
      mark = load.calls.length;
      return calls;
    };

    beforeAll(async () => {
      spec = { dataDir: tmp(), databaseUrl: await pg.createDatabase('kb_faults'), requestTimeoutSeconds: REQUEST_TIMEOUT_S };
      [a, b] = (await Promise.all([start(spec), start(spec)])).map((s) => s.b) as [FaultBroker, FaultBroker];
      await seed(a);
      load = new FaultLoad(() => (a.exited() ? [b.address] : [a.address, b.address]), DEADLINE_MS, { clients: CLIENTS, parkUpTo: 12 });
      load.start();
      await sleep(3000);
      phase('PostgreSQL, two replicas, no fault', since());
    }, 180_000);

    afterAll(async () => {
      await load?.stop();
    });

    it('kill -9 of one replica: the other serves on; the killed one restarts and serves the sessions bundled before', async () => {
      const victim = a;
      await victim.kill9();
      killed.add(victim.address);
      const killedAt = Date.now();
      await sleep(2000);
      expectAlive(b);
      const restarted = await start(spec);
      a = restarted.b;
      const back = Date.now();
      await sleep(2000);
      const calls = since();
      expectAnswered(calls, killed);
      expectAlive(a);
      expectAlive(b);
      const parked = await load.completeParked();
      expect(parked.failures).toEqual([]);
      const survivorServed = calls.filter((c) => c.target === b.address && c.code === status.OK && c.at >= killedAt && c.at < back).length;
      expect(survivorServed).toBeGreaterThan(0);
      phase(
        'PostgreSQL kill -9 of one replica',
        calls,
        `; the other answered ${survivorServed} calls OK meanwhile; restart ${back - killedAt} ms; ${parked.sent} parked launches completed after it: ${parked.ok}`,
      );
    }, 120_000);

    it('PostgreSQL fast restart: both brokers stay up and serve again at once', async () => {
      await sleep(1000);
      const t0 = Date.now();
      pg.restart();
      const back = Date.now();
      await sleep(2000);
      const calls = since();
      expectAnswered(calls, killed);
      expectAlive(a);
      expectAlive(b);
      const r = recovery(calls, back);
      expect(r).toBeDefined();
      expect(r!).toBeLessThan(RECOVERY_LIMIT_MS);
      phase('PostgreSQL fast restart', calls, `; server down ${back - t0} ms; first OK answer ${r} ms after it was back`);
    }, 120_000);

    it(`PostgreSQL stopped for ${STOP_S} s: every call answered UNAVAILABLE with a reference in time, then served again`, async () => {
      pg.stop();
      const down = Date.now();
      await sleep(STOP_S * 1000 - 1000);
      // the owner too is told to retry, with a reference
      const owner = new OwnerClient(b.adminAddress, ADMIN_TOKEN);
      const adminErr = await owner.call('listPolicies', { prefix: '', page_size: 0, page_token: '' }).then(
        () => undefined,
        (e: { code: number; details: string }) => e,
      );
      owner.close();
      expect(adminErr?.code).toBe(status.UNAVAILABLE);
      expect(adminErr?.details).toMatch(/retry later \(ref [0-9a-f]+\)$/);
      await sleep(Math.max(0, down + STOP_S * 1000 - Date.now()));
      const during = since();
      pg.start();
      const back = Date.now();
      await sleep(2000);
      const after = since();
      expectAnswered([...during, ...after], killed);
      expectAlive(a);
      expectAlive(b);
      // while it was away: no secret, and the hosts were told to retry (UNAVAILABLE), not "a bug" (INTERNAL)
      const away = during.filter((c) => c.at >= down + 200 && c.at + c.ms <= back);
      expect(away.filter((c) => c.code === status.INTERNAL)).toEqual([]);
      expect(away.filter((c) => c.code === status.UNAVAILABLE && c.ref).length).toBeGreaterThan(0);
      const r = recovery(after, back);
      expect(r).toBeDefined();
      expect(r!).toBeLessThan(RECOVERY_LIMIT_MS);
      phase(`PostgreSQL stopped ${STOP_S} s`, [...during, ...after], `; first OK answer ${r} ms after it was back`);
    }, 120_000);

    it(`PostgreSQL frozen (SIGSTOP of the postmaster and its children) for ${FREEZE_S} s: calls still answered in time`, async () => {
      const pids = pg.freeze();
      await sleep(FREEZE_S * 1000);
      pg.thaw(pids);
      const back = Date.now();
      await sleep(2500);
      const calls = since();
      expectAnswered(calls, killed);
      expectAlive(a);
      expectAlive(b);
      const r = recovery(calls, back);
      expect(r).toBeDefined();
      expect(r!).toBeLessThan(RECOVERY_LIMIT_MS);
      phase(`PostgreSQL frozen ${FREEZE_S} s (${pids.length} processes)`, calls, `; first OK answer ${r} ms after SIGCONT`);
    }, 120_000);

    it('over the whole run: no launch id released twice, every delivered secret and bundle audited, refusals not dropped', async () => {
      await load.stop();
      const parked = await load.completeParked();
      expect(parked.failures).toEqual([]);
      expectAlive(a);
      expectAlive(b);
      expect(await a.stop()).toBe(0);
      expect(await b.stop()).toBe(0);
      expectAnswered(since(), killed);
      const audit = await readAudit(spec);
      expectAudited(load, audit, killed);
      report.push(
        `PostgreSQL run: ${load.calls.length} calls, ${load.delivered.size} secrets delivered (each once), ${load.bundled.size} bundles, ` +
          `${load.refusedRefs.size} refusals, ${audit.length} audit rows`,
      );
    }, 120_000);
  });
});
