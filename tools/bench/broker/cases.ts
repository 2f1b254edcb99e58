/** The cases: running every case against one database driver, and each case's measurement. */
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { performance } from 'node:perf_hooks';
import { keybroker } from '@kb/grpc-api';
import { platformChain, type SimulatedPlatform, SimulatedSecureProcessor } from '@kb/sev-sim';
import {
  BROKER_NODE_FLAG,
  CASES,
  type Driver,
  GOAL_LAUNCH_P99_MS,
  HOST_LAUNCH,
  MAX_KEPT_BUNDLES,
  PACED_FRACTIONS,
  POLICY,
  PREPARE_CONCURRENCY,
  PROBE_SECONDS,
} from './constants';
import { fmt, measureAsync, summarizeLatencies, type MeasureAsyncResult, measureEach, measureOpenLoop, type WindowHooks } from '../harness';
import { b64, finishLaunch, Host, launchUpToSecret, type Prepared, prepareLaunch, secretRequest } from './host';
import { RestHost } from './rest-host';
import { type HostSp, inlineSp, SpThreads } from '../host-sp';
import { LaunchPhases, type PhaseSummary, windows } from '../launch-phases';
import { type CannedResponses, startNullBroker } from '../null-broker';
import { type Options } from './options';
import { machineBusyMs } from '../proc-stat';
import { benchDatabase, type BrokerTarget, Cleanups, startInProcess, startProcess } from './process';
import {
  type CaseResult,
  type ClosedLoop,
  type DriverResult,
  type EcdhFloor,
  type NullLaunchResult,
  type NullPaced,
  type PacedRate,
  type PacedResult,
} from './results';
import { cpuShare, pacedSeconds, type CpuTaken } from './stats';

/** CPU time of the broker process and of this process, summed over measured windows (WindowHooks) until taken. */
export class CpuMeter implements WindowHooks {
  private brokerMs = 0;
  private benchMs = 0;
  private machineMs = 0;
  private broker0: number | undefined;
  private bench0: NodeJS.CpuUsage | undefined;
  private machine0: number | undefined;
  constructor(private readonly brokerCpuMs: (() => number | undefined) | undefined) {}
  start(): void {
    this.machine0 = machineBusyMs();
    this.broker0 = this.brokerCpuMs?.();
    this.bench0 = process.cpuUsage();
  }
  end(): void {
    const bench = process.cpuUsage(this.bench0);
    this.benchMs += (bench.user + bench.system) / 1000;
    const broker = this.brokerCpuMs?.();
    this.brokerMs = broker === undefined || this.broker0 === undefined ? NaN : this.brokerMs + (broker - this.broker0);
    const machine = machineBusyMs();
    this.machineMs = machine === undefined || this.machine0 === undefined ? NaN : this.machineMs + (machine - this.machine0);
  }
  /** Sums since the last take(); otherMs = the machine's busy time not spent in the broker or bench process. */
  take(): CpuTaken {
    const brokerMs = this.brokerCpuMs && Number.isFinite(this.brokerMs) ? this.brokerMs : null;
    const otherMs =
      Number.isFinite(this.machineMs) && (brokerMs !== null || !this.brokerCpuMs) ? Math.max(0, this.machineMs - (brokerMs ?? 0) - this.benchMs) : null;
    const r = { brokerMs, benchMs: this.benchMs, otherMs };
    this.brokerMs = 0;
    this.benchMs = 0;
    this.machineMs = 0;
    return r;
  }
}

export async function runDriver(
  driver: Driver,
  platform: SimulatedPlatform,
  opts: Options,
  floor: EcdhFloor,
  progress: (msg: string) => void,
  registerCleanup: (fn: (() => Promise<void>) | undefined) => void,
): Promise<DriverResult> {
  const t0 = performance.now();
  const cleanups = new Cleanups();
  registerCleanup(() => cleanups.run());
  let target: BrokerTarget | undefined;
  const hosts: Host[] = [];
  try {
    let brokerDir: string | undefined;
    if (opts.broker === 'process') {
      const dir = mkdtempSync(path.join(os.tmpdir(), 'kb-bench-broker-'));
      cleanups.add(async () => rmSync(dir, { recursive: true, force: true }));
      brokerDir = dir;
    }
    const db = await benchDatabase(driver, opts, brokerDir);
    cleanups.add(() => db.drop());
    target = brokerDir !== undefined ? await startProcess(db, brokerDir, platform, cleanups, opts.cpuProf) : await startInProcess(db, platform, cleanups);
    if (target.proc) progress(`  ${driver}: broker process pid ${target.proc.pid} listening on ${target.address}\n`);
    for (let i = 0; i < Math.max(...opts.concurrency, PREPARE_CONCURRENCY); i++) hosts.push(new Host(target.address));
    const sp = new SimulatedSecureProcessor(platform);
    // Full launches' SP work: inline on `sp`, or on threads of its own (--sp-threads); GetSecret's untimed preparation uses `sp`.
    const spThreads =
      opts.spThreads > 0 && (opts.cases.includes('launch') || opts.cases.includes('paced')) ? new SpThreads(platform, HOST_LAUNCH, opts.spThreads) : undefined;
    const hostSp: HostSp = spThreads ?? inlineSp(sp, HOST_LAUNCH);
    cleanups.add(() => hostSp.close());
    const bundleRequest: keybroker.BundleRequest = { CertificateChain: platformChain(platform).toString('base64'), Policy: POLICY };
    /** Bundles issued by the timed GetBundle case, reused (in order) to prepare GetSecret's launches. */
    const bundles: keybroker.BundleResponse[] = [];

    // One launch end to end before anything is timed; its requests and responses are the null case's.
    const setupBundle = await hosts[0]!.getBundle(bundleRequest);
    const setupLaunch = launchUpToSecret(sp, setupBundle);
    const setupSecret = await hosts[0]!.getSecret(setupLaunch.request);
    finishLaunch(sp, setupLaunch, setupSecret);
    const setupMs = performance.now() - t0;

    const cpu = new CpuMeter(target.proc ? () => target!.proc!.cpuMs() : undefined);
    const results: CaseResult[] = [];
    const phases = new LaunchPhases();
    const push = (id: CaseResult['case'], r: MeasureAsyncResult, launchPhases?: PhaseSummary | null) => {
      const name = CASES.find((c) => c.id === id)!.name;
      results.push({
        case: id,
        name,
        concurrency: r.concurrency,
        ops: r.ops,
        seconds: r.seconds,
        opsPerSec: r.opsPerSec,
        p50Ms: r.p50Ms,
        p99Ms: r.p99Ms,
        maxMs: r.maxMs,
        ratioToFloor: r.opsPerSec / floor.opsPerSec,
        ...(launchPhases !== undefined ? { phases: launchPhases } : {}),
        ...cpuShare(cpu.take(), r.seconds * 1000, r.ops),
      });
    };
    /** One full launch by client w: the work of both the closed-loop launch case and the paced one. */
    const fullLaunch = async (w: number): Promise<void> => {
      const timer = phases.launch();
      const bundle = await hosts[w]!.getBundle(bundleRequest);
      timer.lap('bundle');
      const started = await hostSp.start(w, b64(bundle.GuestOwnerPublicKey), b64(bundle.LaunchBlob));
      timer.lap('hostStart');
      const res = await hosts[w]!.getSecret(secretRequest(bundle, started.measurement, started.firmware));
      timer.lap('secret');
      await hostSp.finish(started, b64(res.LaunchSecretHeader), b64(res.LaunchSecretData));
      timer.lap('hostFinish');
    };
    const note = (msg: string) => progress(`  ${driver}: ${msg}\n`);
    // one launch through each SP thread before anything is timed (a thread loads its modules on first use)
    for (let t = 0; t < (spThreads?.threads ?? 0); t++) await fullLaunch(t);

    for (const c of opts.cases.includes('bundle') ? opts.concurrency : []) {
      progress(`  ${driver}: GetBundle, ${c} client(s)\n`);
      push(
        'bundle',
        await measureAsync(
          'GetBundle',
          async (w) => {
            const b = await hosts[w]!.getBundle(bundleRequest);
            if (b.LaunchId.length !== 36) throw new Error('GetBundle returned no launch id');
            if (bundles.length < MAX_KEPT_BUNDLES) bundles.push(b);
            return b;
          },
          { seconds: opts.seconds, warmupMs: opts.warmupMs, concurrency: c, window: cpu },
        ),
      );
    }

    for (const c of opts.cases.includes('secret') ? opts.concurrency : []) {
      progress(`  ${driver}: GetSecret, ${c} client(s) (launches prepared untimed)\n`);
      push('secret', await measureGetSecret(hosts, sp, bundleRequest, bundles, c, opts, cpu));
    }

    for (const c of opts.cases.includes('launch') ? opts.concurrency : []) {
      note(`full launch, ${c} client(s)`);
      const r = await measureAsync('full launch', fullLaunch, { seconds: opts.seconds, warmupMs: opts.warmupMs, concurrency: c, window: windows(cpu, phases) });
      push('launch', r, phases.summary());
    }

    // The same launches through the attestation service (/sev/v1): closed loop here, paced below at the very rates of
    // the gRPC paced case.
    let fullRestLaunch: ((w: number) => Promise<void>) | undefined;
    if (opts.cases.includes('rest')) {
      if (!target.httpAddress) throw new Error('the broker under test reported no HTTP listener (--http-listen)');
      const rest = new RestHost(`http://${target.httpAddress}/sev/v1`, platform);
      await rest.register(platform);
      fullRestLaunch = async (w: number): Promise<void> => {
        const timer = phases.launch();
        const l = await rest.launch();
        timer.lap('bundle');
        const started = await hostSp.start(w, b64(l['owner-cert']), b64(l.session));
        timer.lap('hostStart');
        const res = await rest.validate(l['launch-id'], started.measurement, started.firmware);
        timer.lap('secret');
        await hostSp.finish(started, b64(res['secret-header']), b64(res['secret-table']));
        timer.lap('hostFinish');
      };
      await fullRestLaunch(0); // one untimed launch first, as for gRPC
      phases.summary();
      for (const c of opts.concurrency) {
        note(`full launch over REST, ${c} client(s)`);
        const r = await measureAsync('full launch, REST', fullRestLaunch, {
          seconds: opts.seconds,
          warmupMs: opts.warmupMs,
          concurrency: c,
          window: windows(cpu, phases),
        });
        push('rest', r, phases.summary());
      }
    }
    // After the closed-loop launches, whose launch/s at the same number of clients sets the default rates. With the rest
    // case, each rate runs over gRPC then REST before the next rate (interleaved), so that drift and other load on the
    // machine fall on both alike rather than on whichever ran last.
    const paced: PacedResult[] = [];
    const restPaced: PacedResult[] = [];
    for (const c of opts.cases.includes('paced') ? opts.concurrency : []) {
      const capacity = await closedLoopCapacity(results, c, fullLaunch, opts, note);
      const variants = [{ label: 'full launch, paced', launch: fullLaunch }];
      if (fullRestLaunch) variants.push({ label: 'full launch over REST, paced', launch: fullRestLaunch });
      const [grpc, rest] = await measurePaced(variants, c, capacity, opts, cpu, phases, note);
      paced.push(grpc!);
      if (rest) restPaced.push(rest);
    }
    for (const h of hosts.splice(0)) h.close();
    await cleanups.run(); // stops the broker, so that its exit status is known (and, profiled, its profiles written)
    const nullLaunch = opts.cases.includes('null')
      ? await measureNullLaunch({ bundle: setupBundle, secret: setupSecret }, bundleRequest, setupLaunch.request, paced, opts, note)
      : null;
    const p = target.proc;
    const broker: DriverResult['broker'] = p
      ? {
          mode: 'process',
          pid: p.pid,
          wrapperPid: p.wrapperPid,
          command: p.command,
          exit: p.exit ?? null,
          unexpectedLog: p.unexpectedLog,
          cpuProfiles: opts.cpuProf !== undefined ? cpuProfilesOf(opts.cpuProf, p.pid) : null,
        }
      : { mode: 'inprocess', pid: process.pid };
    return { driver, label: db.label, broker, ecdhFloor: floor, setupMs, results, paced, restPaced, nullLaunch };
  } catch (e) {
    const p = target?.proc;
    if (p?.exit && e instanceof Error) e.message += `\nthe broker process exited (${p.exit.code ?? p.exit.signal}); its last log lines:\n${p.logTail()}`;
    throw e;
  } finally {
    for (const h of hosts) h.close();
    await cleanups.run();
    registerCleanup(undefined);
  }
}

/** The profiles node's --cpu-prof wrote in `dir` for process `pid`: CPU.<date>.<time>.<pid>.<thread>.<seq>.cpuprofile. */
export function cpuProfilesOf(dir: string, pid: number): string[] {
  return readdirSync(dir)
    .filter((f) => f.endsWith('.cpuprofile') && f.split('.')[3] === String(pid))
    .sort()
    .map((f) => path.join(dir, f));
}

/**
 * Closed-loop full launch/s at c clients, which the paced rates are compared with: the launch case's result, or, when
 * that case was not run, a short closed-loop probe's (not reported as a case).
 */
export async function closedLoopCapacity(
  results: readonly CaseResult[],
  c: number,
  launch: (worker: number) => Promise<void>,
  opts: Options,
  note: (msg: string) => void,
): Promise<{ opsPerSec: number; source: PacedResult['closedLoopSource'] }> {
  const measured = results.find((r) => r.case === 'launch' && r.concurrency === c);
  if (measured) return { opsPerSec: measured.opsPerSec, source: 'launch' };
  note(`full launch, ${c} client(s), closed-loop probe for the paced rates`);
  const probe = await measureAsync('full launch (probe)', launch, { seconds: Math.min(opts.seconds, PROBE_SECONDS), warmupMs: opts.warmupMs, concurrency: c });
  return { opsPerSec: probe.opsPerSec, source: 'probe' };
}

/**
 * The paced case at c clients, one open-loop run per rate and variant (gRPC, and REST with the rest case): at each rate
 * every variant runs in turn before the next rate. Auto rates climb PACED_FRACTIONS of the closed-loop capacity and stop
 * one rate after the first whose p99 misses the goal over the first variant: those two show the knee, and higher rates
 * would only queue longer (and take longer to drain). Explicit --rates all run. One PacedResult per variant, in order.
 */
export async function measurePaced(
  variants: readonly { label: string; launch: (worker: number) => Promise<void> }[],
  c: number,
  capacity: { opsPerSec: number; source: PacedResult['closedLoopSource'] },
  opts: Options,
  cpu: CpuMeter,
  phases: LaunchPhases,
  note: (msg: string) => void,
): Promise<PacedResult[]> {
  // Three significant digits, so that an auto rate can be given back to --rates as printed.
  const rates = opts.rates ?? PACED_FRACTIONS.map((f) => Number((f * capacity.opsPerSec).toPrecision(3)));
  const outs: PacedRate[][] = variants.map(() => []);
  for (const rate of rates) {
    for (const [v, { label, launch }] of variants.entries()) {
      note(`${label}, ${c} client(s): ${fmt(rate)}/s (${(rate / capacity.opsPerSec).toFixed(2)} × closed loop)`);
      const {
        name: _name,
        concurrency: _c,
        ...r
      } = await measureOpenLoop(label, launch, {
        ratePerSec: rate,
        concurrency: c,
        seconds: pacedSeconds(rate, opts),
        warmupMs: opts.warmupMs,
        window: windows(cpu, phases),
      });
      outs[v]!.push({
        ...r,
        ratioToCapacity: rate / capacity.opsPerSec,
        goalMet: r.p99Ms < GOAL_LAUNCH_P99_MS,
        phases: phases.summary(),
        ...cpuShare(cpu.take(), r.seconds * 1000, r.completed),
      });
    }
    const firstMiss = outs[0]!.findIndex((x) => !x.goalMet);
    if (opts.rates === undefined && firstMiss !== -1 && outs[0]!.length > firstMiss + 1) break;
  }
  return outs.map((out) => ({ concurrency: c, closedLoopOpsPerSec: capacity.opsPerSec, closedLoopSource: capacity.source, rates: out }));
}

/**
 * The null case: a full launch's two calls, with its requests, against the null broker (null-broker.ts), closed loop
 * at every --concurrency and open loop at every rate the paced case ran. What is left of a launch's latency when the
 * broker does nothing: the floor its figures are to be read against.
 */
export async function measureNullLaunch(
  canned: CannedResponses,
  bundleRequest: keybroker.BundleRequest,
  secretRequest: keybroker.SecretRequest,
  paced: readonly PacedResult[],
  opts: Options,
  note: (msg: string) => void,
): Promise<NullLaunchResult> {
  note('null broker: starting');
  const server = await startNullBroker(canned, [BROKER_NODE_FLAG]);
  const hosts: Host[] = [];
  try {
    for (let i = 0; i < Math.max(...opts.concurrency); i++) hosts.push(new Host(server.address)); // paced ran at these too
    const launch = async (w: number): Promise<void> => {
      const bundle = await hosts[w]!.getBundle(bundleRequest);
      if (bundle.LaunchId !== canned.bundle.LaunchId) throw new Error('null broker: not the canned GetBundle response');
      await hosts[w]!.getSecret(secretRequest);
    };
    await launch(0);
    const cpu = new CpuMeter(() => server.cpuMs());
    const closed: ClosedLoop[] = [];
    for (const c of opts.concurrency) {
      note(`null launch, ${c} client(s)`);
      const r = await measureAsync('null launch', launch, { seconds: opts.seconds, warmupMs: opts.warmupMs, concurrency: c, window: cpu });
      const { ops, seconds, opsPerSec, p50Ms, p99Ms, maxMs } = r;
      closed.push({ concurrency: c, ops, seconds, opsPerSec, p50Ms, p99Ms, maxMs, ...cpuShare(cpu.take(), seconds * 1000, ops) });
    }
    const open: NullPaced[] = [];
    for (const p of paced) {
      for (const { offeredPerSec } of p.rates) {
        note(`null launch, paced, ${p.concurrency} client(s): ${fmt(offeredPerSec)}/s`);
        const { name: _name, ...r } = await measureOpenLoop('null launch, paced', launch, {
          ratePerSec: offeredPerSec,
          concurrency: p.concurrency,
          seconds: pacedSeconds(offeredPerSec, opts),
          warmupMs: opts.warmupMs,
          window: cpu,
        });
        open.push({ ...r, ...cpuShare(cpu.take(), r.seconds * 1000, r.completed) });
      }
    }
    return { pid: server.pid, closed, paced: open };
  } finally {
    for (const h of hosts) h.close();
    await server.stop();
  }
}

/**
 * GetSecret alone. Launch ids are single-use, so batches of launches are prepared untimed, then only their GetSecret
 * calls are timed (c in flight); batches are sized from the rate seen so far until `seconds` are measured. Every
 * response is then checked by LAUNCH_SECRET on the simulated SP (untimed).
 */
export async function measureGetSecret(
  hosts: Host[],
  sp: SimulatedSecureProcessor,
  bundleRequest: keybroker.BundleRequest,
  bundles: keybroker.BundleResponse[],
  c: number,
  opts: Options,
  window: WindowHooks,
): Promise<MeasureAsyncResult> {
  // Preparation is untimed. It first uses the sessions the GetBundle case left pending (saving their GetBundle), then
  // calls GetBundle with at least PREPARE_CONCURRENCY clients even when c is smaller.
  const prepare = async (n: number): Promise<Prepared[]> => {
    const out = bundles.splice(0, n).map((b) => launchUpToSecret(sp, b));
    n -= out.length;
    if (n === 0) return out;
    const pc = Math.min(hosts.length, Math.max(c, PREPARE_CONCURRENCY));
    await measureEach('prepare', Array.from({ length: n }), async (_, w) => out.push(await prepareLaunch(hosts[w]!, sp, bundleRequest)), { concurrency: pc });
    return out;
  };
  const batch = async (n: number, hooks?: WindowHooks) => {
    const items = await prepare(n);
    const r = await measureEach('GetSecret', items, async (p, w) => (p.response = await hosts[w]!.getSecret(p.request)), { concurrency: c, window: hooks });
    for (const p of items) finishLaunch(sp, p, p.response!);
    return r;
  };
  // A timed batch holds at least 8 calls per client, so the drain at its end (fewer than c in flight) stays small.
  const minBatch = Math.max(8 * c, 64);
  // A small warm-up batch (not recorded; the broker is already warm from GetBundle) gives the first rate estimate.
  // Every launch costs a GetBundle and an SP-side ECDH to prepare, so warming up for a full warmupMs would be dear.
  let rate = opts.warmupMs > 0 ? (await batch(Math.max(2 * c, 32))).opsPerSec : 100;
  const target = opts.seconds;
  let ops = 0;
  let seconds = 0;
  const latencies: Float64Array[] = [];
  while (seconds < target * 0.95) {
    const n = Math.min(100_000, Math.max(minBatch, Math.ceil(rate * (target - seconds) * 1.02)));
    const r = await batch(n, window);
    ops += r.ops;
    seconds += r.seconds;
    latencies.push(r.latenciesMs);
    rate = r.opsPerSec;
  }
  const all = new Float64Array(latencies.reduce((s, l) => s + l.length, 0));
  latencies.reduce((off, l) => (all.set(l, off), off + l.length), 0);
  return { name: 'GetSecret', ops, seconds, opsPerSec: ops / seconds, meanUs: (seconds * 1e6) / ops, concurrency: c, ...summarizeLatencies(all) };
}
