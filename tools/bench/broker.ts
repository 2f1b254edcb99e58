/**
 * End-to-end benchmark of the broker: simulated SEV hosts (libs/sev-sim) calling it over real gRPC on loopback, on
 * PGlite and on PostgreSQL, with the node:crypto ECDH P-384 floor measured in the same run.
 *
 * By default the broker runs as its own process, as deployed (`tsx apps/broker/src/main.ts`, seeded through the admin
 * API; PGlite on disk in its --data-dir), while this process runs the simulated clients, the simulated Secure
 * Processor and the floor. `--broker inprocess` starts it in this process instead (apps/broker/src/broker.ts).
 *
 *   npx tsx tools/bench/broker.ts [--broker process|inprocess] [--driver pglite|pg|both] [--seconds N] [--concurrency 1,16,64]
 *                                 [--cases bundle,secret,launch,paced,null] [--rates auto|R1,R2,…] [--cpu-prof DIR] [--json]
 *
 * Cases, each at every concurrency (one gRPC connection per simulated client):
 *   GetBundle           GetBundle alone, the same certificate chain every time (chain verdict cached by the broker)
 *   GetSecret           GetSecret alone: launches are prepared untimed beforehand (GetBundle + LAUNCH_START/UPDATE/MEASURE
 *                       on the simulated Secure Processor), then only their GetSecret calls are timed
 *   full launch         GetBundle + LAUNCH_START/UPDATE/MEASURE + GetSecret + LAUNCH_SECRET/FINISH, checked end to end;
 *                       closed loop (each client sends its next launch when the previous one returns): capacity
 *   full launch, paced  the same launches arriving open loop, as a Poisson process at given rates, served by the
 *                       clients (FIFO queue when all are busy), latency from the scheduled arrival: the latency a host
 *                       sees at a given launch rate, which is what the p99 goal is about (closed loop, 16 clients can
 *                       only see p99 < 20 ms at > 800 launches/s, several times what two P-384 ECDHs per launch allow
 *                       on a small machine)
 *   null launch         the transport floor: a launch's two calls (same requests, same clients) against a broker process
 *                       that answers with canned responses and does nothing else (null-broker.ts), closed loop and at
 *                       the paced rates, after the broker under test has stopped
 * Full launches are also timed by phase (launch-phases.ts): the broker's two round trips apart from the simulated SP's
 * work, which a real host does on its AMD Secure Processor rather than on the broker's machine.
 */
import { performance } from 'node:perf_hooks';
import { sevPublicKey } from '@kb/sev';
import { createPlatform } from '@kb/sev-sim';
import { runDriver } from './broker/cases';
import {
  FIRMWARE,
  FLOOR_SECONDS,
  GOAL_BUNDLE_RATIO,
  GOAL_LAUNCH_CLIENTS,
  GOAL_LAUNCH_P99_MS,
  PACED_FRACTIONS,
  PG_POOL,
  POLICY,
  PROBE_SECONDS,
} from './broker/constants';
import { parseOptions } from './broker/options';
import { nullTable, openLoopGoalText, pacedTable, restVsGrpcLines, transportFloorText } from './broker/report';
import { type DriverResult, type EcdhFloor } from './broker/results';
import { openLoopGoal, transportFloor } from './broker/stats';
import { ecdhFloorCandidates, machineInfo } from './ecdh-floor';
import { fmt, measure, type MeasureResult, table } from './harness';
import { phaseTable } from './launch-phases';
import { ticksPerSecond } from './proc-stat';

// ---- main -----------------------------------------------------------------------------------------------------------

async function main(): Promise<void> {
  const opts = parseOptions();
  const progress = (msg: string) => {
    if (process.stderr.isTTY) process.stderr.write(msg);
  };
  const tStart = performance.now();

  let cleanup: (() => Promise<void>) | undefined;
  const onSignal = (signal: NodeJS.Signals) => {
    if (interrupted) return;
    interrupted = true;
    process.stderr.write(`\n${signal}: ${opts.broker === 'process' ? 'stopping the broker process, ' : ''}dropping the benchmark database\n`);
    void (cleanup ?? (async () => undefined))().finally(() => process.exit(signal === 'SIGINT' ? 130 : 143));
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);

  progress('setup: generating a sev-sim platform…\n');
  const tSim = performance.now();
  const platform = createPlatform({ name: 'bench-sim' });
  const simSetupMs = performance.now() - tSim;

  // ECDH floor: the same work as the broker's per-GetBundle key agreement, against the same PDH. Measured right before
  // each driver's cases, since throughput on a shared VM drifts by ±10–15 % within a minute.
  const candidates = ecdhFloorCandidates(sevPublicKey(platform.pdh));
  const floorSeconds = Math.min(opts.seconds, FLOOR_SECONDS);
  const measureFloor = (): EcdhFloor => {
    const measured: MeasureResult[] = candidates.map((c) => measure(c.method, c.fn, { seconds: floorSeconds }));
    const best = measured.reduce((a, b) => (b.opsPerSec > a.opsPerSec ? b : a));
    return { opsPerSec: best.opsPerSec, meanUs: best.meanUs, method: best.name, candidates: measured };
  };

  const drivers: DriverResult[] = [];
  for (const d of opts.drivers) {
    progress(`${d}: ECDH P-384 floor\n`);
    const floor = measureFloor();
    progress(`${d}: starting the broker${opts.broker === 'process' ? ' process' : ''}\n`);
    drivers.push(await runDriver(d, platform, opts, floor, progress, (fn) => (cleanup = fn)));
  }
  const totalSeconds = (performance.now() - tStart) / 1000;

  const machine = machineInfo();
  const cores = machine.cores;
  const goals = drivers.map((d) => {
    const bundle = d.results
      .filter((r) => r.case === 'bundle')
      .map((r) => ({ concurrency: r.concurrency, ratio: r.ratioToFloor, met: r.ratioToFloor >= GOAL_BUNDLE_RATIO }));
    const l = d.results.find((r) => r.case === 'launch' && r.concurrency === GOAL_LAUNCH_CLIENTS);
    return {
      driver: d.driver,
      bundleRatio: { goal: GOAL_BUNDLE_RATIO, byConcurrency: bundle },
      launchP99: l ? { goalMs: GOAL_LAUNCH_P99_MS, concurrency: GOAL_LAUNCH_CLIENTS, p99Ms: l.p99Ms, met: l.p99Ms < GOAL_LAUNCH_P99_MS } : null,
      launchP99OpenLoop: openLoopGoal(d.paced, (r) => r.p99Ms),
      // the same, for the broker's part alone: a launch's GetBundle + GetSecret round trips, without the simulated SP
      brokerShareP99OpenLoop: openLoopGoal(d.paced, (r) => r.phases?.broker.p99Ms ?? NaN),
      transportFloor: transportFloor(d),
    };
  });
  const notes = [
    ...(opts.broker === 'process'
      ? [
          `Processes (${cores} cores, shared): the bench process (pid ${process.pid}) runs the simulated hosts (gRPC clients), the simulated Secure Processor and the ECDH floor; the broker process (kb-broker: tsx apps/broker/src/main.ts, a fresh one per database; pid in each heading) runs the broker, its gRPC servers and, with PGlite, the database (on disk in its --data-dir, as in production); PostgreSQL runs in its server's own processes. Clients, PostgreSQL and the broker still share the same ${cores} cores.`,
          'The broker process is started with --bundle-rate 0 --max-pending-sessions 1000000 --log-level info ("broker listening" is an info line; nothing is logged per request), the sev-sim root as --trust-root, KB_ADMIN_TOKEN (and KB_DATABASE_URL + KB_MASTER_KEY for PostgreSQL); the tenant default policy and the secret are put through the admin API (BrokerAdmin PutPolicy/PutSecret), then stopped with SIGTERM.',
          `broker CPU = utime+stime of the broker process (from /proc/<pid>/stat of the tsx wrapper and its node child, ${ticksPerSecond()} ticks/s) over the measured windows only: ms/op = that ÷ ops, % = that ÷ wall time (100 % = one core). bench CPU = process.cpuUsage() of the bench process over the same windows; other CPU = the rest of the machine's busy time (/proc/stat) over them: PostgreSQL, and anything else running, which skews the run.`,
        ]
      : [
          `The broker, its gRPC server, every simulated client and the simulated Secure Processor run in this one Node process (pid ${process.pid}, one JS thread) on a ${cores}-core machine; PGlite also runs on that thread, a PostgreSQL server in its own processes. Client-side work (protobuf, SP-side ECDH in LAUNCH_START, LAUNCH_SECRET) competes with the broker for the same CPU, so these are lower bounds on a dedicated broker. bench CPU = process.cpuUsage() over the measured windows (100 % = one core), broker included; other CPU = the rest of the machine's busy time (/proc/stat): PostgreSQL, and anything else running, which skews the run.`,
        ]),
    `ECDH floor = node:crypto P-384 keygen+derive against the platform PDH, single-threaded in the bench process, measured right before each database's cases (before its broker starts); the faster of generateKeyPairSync + diffieHellman and createECDH.generateKeys + computeSecret. ÷ floor = case ops/s divided by that driver's floor (GetBundle does one such keygen+derive per call; a full launch two, the second in the simulated SP).`,
    `GetBundle: the same certificate chain each call (the broker caches the chain verdict); rate limit off (bundle rate 0), max pending sessions ${opts.broker === 'process' ? '1e6' : '1e9'}.`,
    'GetSecret: only the GetSecret calls are timed; their launches (GetBundle + LAUNCH_START/UPDATE/MEASURE) are prepared untimed in batches beforehand, first from the sessions the GetBundle case issued, and each response is checked by LAUNCH_SECRET afterwards. One 32-byte key under the tenant default policy.',
    `full launch: GetBundle + LAUNCH_START/UPDATE(64 KiB)/MEASURE + GetSecret + LAUNCH_SECRET/FINISH, the guest secret checked each time; the simulated SP's part ${opts.spThreads > 0 ? `on ${opts.spThreads} worker thread(s) of the bench process (--sp-threads), as a real host's SP is not the CPU running its gRPC client` : "on the bench's event loop (--sp-threads 0)"}.`,
    "One gRPC connection per client (no subchannel sharing). Closed loop (first table): each client sends its next call as soon as the previous one returns, so the broker is saturated and mean latency ≈ clients ÷ ops/s (Little's law): ops/s is capacity. p50/p99/max are single-call latencies; ops/s over the whole window.",
    ...(opts.cases.includes('paced')
      ? [
          `Open loop (full launch, paced): launches arrive as a Poisson process at the offered rate however the broker keeps up, as from independent hosts, each taken by a free client (FIFO queue when all are busy); latency runs from the scheduled arrival, so queueing, and any lateness of the bench's event loop, counts (no coordinated omission): the latency a host sees at that launch rate. Rates: ${opts.rates === undefined ? `${PACED_FRACTIONS.join(', ')} × the closed-loop full launch/s at the same clients, stopping one rate after the first whose p99 ≥ ${GOAL_LAUNCH_P99_MS} ms` : 'from --rates'}; each for ${opts.seconds} s, or longer for at least ${opts.minArrivals} arrivals, after ${opts.warmupMs} ms of arrivals at that rate.`,
          `paced columns: closed-loop/s = the full launch case's launch/s at those clients (or, marked "probe", a ${PROBE_SECONDS} s closed-loop run when that case was not run), ÷ closed = offered ÷ that; arrivals = launches scheduled in the window, each timed to completion (few at low rates: p99 is then about the max); achieved/s = launches completed within the window ÷ its length; wait ms = mean time in the queue over all arrivals; waited = % of arrivals that found every client busy; lag p99 ms = how late the bench's event loop released arrivals (busy with other simulated hosts' gRPC${opts.spThreads > 0 ? '' : ' and SP work, which real hosts would do on their own machines'}), part of the latency; broker CPU ms/op per completed launch.`,
        ]
      : []),
    ...(opts.cases.includes('launch') || opts.cases.includes('paced')
      ? [
          "full launch by phase: GetBundle and GetSecret = each call's round trip as the host sees it (gRPC both ways, the broker's work, and any wait for the bench's own busy event loop); SP start…measure = LAUNCH_START (with the SP side's P-384 ECDH) + LAUNCH_UPDATE_DATA (64 KiB) + LAUNCH_MEASURE on the simulated SP, SP secret+finish = LAUNCH_SECRET + LAUNCH_FINISH + the guest-side check (with --sp-threads, each including its hop to the SP thread and back), where a real host uses its AMD Secure Processor; broker: both calls = GetBundle + GetSecret of one launch (percentiles of that sum). Each column's percentiles are taken on their own, so they do not add up to the launch's.",
        ]
      : []),
    ...(opts.cases.includes('null')
      ? [
          `null launch (the transport floor): once each broker under test has stopped, the same clients send a full launch's two calls, with its very requests, to a null broker (tools/bench/null-broker.ts: a process of its own, grpc-js with kb-broker's server options and V8 flag) that answers each with the responses of one real launch and does nothing else — no chain check, no ECDH, no database — and no SP work runs between the calls. Closed loop at every number of clients, and open loop at the rates the paced case ran. Its latency is what any broker on grpc-js pays on this machine before its own work (protobuf, HTTP/2, loopback TCP, two processes waking up); compare it with the broker's share of the paced launches. server CPU = the null broker process's.`,
        ]
      : []),
    ...(opts.cpuProf !== undefined
      ? [
          `--cpu-prof: each broker process ran under node's CPU profiler (--cpu-prof --cpu-prof-dir=${opts.cpuProf}), which costs it CPU: its figures are below an unprofiled run's. The profiles are listed in each heading.`,
        ]
      : []),
  ];
  if (opts.driverNote) notes.push(opts.driverNote);
  for (const d of drivers) {
    if (d.broker.mode !== 'process') continue;
    const exit = d.broker.exit;
    if (!exit || exit.code !== 0)
      notes.push(
        `${d.driver}: the broker process did not exit cleanly after SIGTERM (${exit ? `code ${exit.code}, signal ${exit.signal}` : 'still running'}).`,
      );
    if (d.broker.unexpectedLog.length > 0)
      notes.push(`${d.driver}: the broker process logged ${d.broker.unexpectedLog.length} unexpected warning/error line(s), e.g. ${d.broker.unexpectedLog[0]}`);
    if (d.broker.cpuProfiles?.length === 0)
      notes.push(`${d.driver}: --cpu-prof: no .cpuprofile for broker pid ${d.broker.pid} in ${opts.cpuProf} (node writes it only on a clean exit).`);
  }

  if (opts.json) {
    process.stdout.write(
      JSON.stringify(
        {
          benchmark: 'broker',
          machine,
          settings: {
            broker: opts.broker,
            seconds: opts.seconds,
            warmupMs: opts.warmupMs,
            minArrivals: opts.minArrivals,
            spThreads: opts.spThreads,
            concurrency: opts.concurrency,
            cases: opts.cases,
            rates: opts.rates ?? { auto: PACED_FRACTIONS, stop: `one rate after the first with p99 >= ${GOAL_LAUNCH_P99_MS} ms` },
            cpuProf: opts.cpuProf ?? null,
            drivers: opts.drivers,
            pgliteDir: opts.pgliteDir,
            pgPool: PG_POOL,
            firmwareBytes: FIRMWARE.length,
            policy: POLICY,
          },
          drivers,
          goals,
          setup: { simPlatformMs: Math.round(simSetupMs), driversMs: Object.fromEntries(drivers.map((d) => [d.driver, Math.round(d.setupMs)])) },
          totalSeconds,
          notes,
        },
        null,
        2,
      ) + '\n',
    );
    return;
  }

  const out: string[] = [];
  out.push(
    opts.broker === 'process'
      ? `broker end-to-end benchmark (gRPC on loopback; broker: its own process, kb-broker; clients, simulated SP and ECDH floor: this process, pid ${process.pid})`
      : `broker end-to-end benchmark (gRPC on loopback; broker, clients, simulated SP and ECDH floor all in this process, pid ${process.pid})`,
  );
  out.push(`cpu:  ${machine.cpu} (${cores} cores)   node: ${machine.node}   ${machine.platform}`);
  out.push(`date: ${machine.date}   ${opts.seconds} s per case (paced: per rate) after ${opts.warmupMs} ms warm-up`);
  for (const d of drivers) {
    out.push('');
    out.push(`${d.label}`);
    out.push(
      d.broker.mode === 'process'
        ? `broker process: pid ${d.broker.pid} (tsx wrapper ${d.broker.wrapperPid}): ${d.broker.command}`
        : `broker: in the bench process (pid ${d.broker.pid})`,
    );
    if (d.broker.mode === 'process' && d.broker.cpuProfiles) out.push(`CPU profiles: ${d.broker.cpuProfiles.join(' ') || 'none written'}`);
    out.push(
      `ECDH P-384 keygen+derive floor: ${fmt(d.ecdhFloor.opsPerSec)} ops/s (${fmt(d.ecdhFloor.meanUs)} µs/op; ` +
        d.ecdhFloor.candidates.map((c) => `${c.name} ${fmt(c.opsPerSec)}/s`).join(', ') +
        ')',
    );
    if (d.results.length > 0) {
      out.push(
        table(
          ['case', 'clients', 'ops/s', 'p50 ms', 'p99 ms', 'max ms', '÷ floor', 'broker CPU ms/op', 'broker CPU', 'bench CPU', 'other CPU'],
          d.results.map((r) => [
            r.name,
            String(r.concurrency),
            fmt(r.opsPerSec),
            fmt(r.p50Ms),
            fmt(r.p99Ms),
            fmt(r.maxMs),
            r.ratioToFloor.toFixed(2),
            r.brokerCpuMsPerOp === null ? '-' : fmt(r.brokerCpuMsPerOp),
            r.brokerCpuPct === null ? '-' : `${r.brokerCpuPct.toFixed(0)} %`,
            `${r.benchCpuPct.toFixed(0)} %`,
            r.otherCpuPct === null ? '-' : `${r.otherCpuPct.toFixed(0)} %`,
          ]),
          new Set([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]),
        ),
      );
    }
    if (d.paced.length > 0)
      out.push('', 'full launch, paced (open loop: Poisson arrivals at the offered rate; latency from the scheduled arrival)', pacedTable(d.paced));
    if (d.restPaced.length > 0) out.push('', 'full launch over REST (/sev/v1), paced at the same rates', pacedTable(d.restPaced));
    if (d.results.some((r) => r.case === 'rest')) out.push('', ...restVsGrpcLines(d));
    const phaseRows = [
      ...d.results.filter((r) => r.case === 'launch').map((r) => ({ label: ['closed loop', String(r.concurrency), '-'], phases: r.phases })),
      ...d.paced.flatMap((p) => p.rates.map((r) => ({ label: ['paced', String(p.concurrency), fmt(r.offeredPerSec)], phases: r.phases }))),
    ];
    if (phaseRows.length > 0) {
      out.push('', 'full launch by phase, as the host sees it: p50 / p99 ms (paced: from when a client takes the launch, queue wait excluded)');
      out.push(phaseTable(['full launch', 'clients', 'offered/s'], phaseRows));
    }
    if (d.nullLaunch) {
      out.push(
        '',
        `null launch, the transport floor: a launch's two calls answered with canned responses by a process doing nothing else (pid ${d.nullLaunch.pid}), no SP work`,
      );
      out.push(nullTable(d.nullLaunch));
    }
  }
  out.push('');
  out.push('goals:');
  for (const g of goals) {
    const b = g.bundleRatio.byConcurrency.map((x) => `${x.concurrency}: ${x.ratio.toFixed(2)} ${x.met ? 'ok' : 'MISSED'}`).join(', ');
    out.push(`  ${g.driver.padEnd(6)} GetBundle ÷ floor ≥ ${GOAL_BUNDLE_RATIO.toFixed(2)} — ${b || 'not measured (add bundle to --cases)'}`);
    const launchGoal = `  ${g.driver.padEnd(6)} full launch p99 < ${GOAL_LAUNCH_P99_MS} ms at ${GOAL_LAUNCH_CLIENTS} clients`;
    out.push(
      `${launchGoal}, closed loop (saturation): ` +
        (g.launchP99
          ? `${fmt(g.launchP99.p99Ms)} ms ${g.launchP99.met ? 'ok' : 'MISSED'}`
          : `not measured (add launch to --cases and ${GOAL_LAUNCH_CLIENTS} to --concurrency)`),
    );
    out.push(`${launchGoal}, open loop: ${openLoopGoalText(g.launchP99OpenLoop)}`);
    out.push(
      `  ${''.padEnd(6)} the broker's part alone (GetBundle + GetSecret round trips, no SP work), open loop: ${openLoopGoalText(g.brokerShareP99OpenLoop)}`,
    );
    out.push(`  ${''.padEnd(6)} ${transportFloorText(g.transportFloor)}`);
  }
  for (const d of drivers) {
    // Where the broker's CPU goes: with one core for the broker, GetBundle ÷ floor cannot exceed floor time ÷ broker CPU per op.
    const r = d.results.filter((x) => x.case === 'bundle' && x.brokerCpuMsPerOp !== null).at(-1);
    if (!r) continue;
    const floorMs = d.ecdhFloor.meanUs / 1000;
    out.push(
      `  ${d.driver.padEnd(6)} GetBundle at ${r.concurrency} clients: the broker process spends ${fmt(r.brokerCpuMsPerOp!)} ms CPU per call = ` +
        `${(r.brokerCpuMsPerOp! / floorMs).toFixed(2)}× the floor's ${fmt(floorMs)} ms (ECDH ≈ ${((100 * floorMs) / r.brokerCpuMsPerOp!).toFixed(0)} % of it), at ${r.brokerCpuPct!.toFixed(0)} % of a core`,
    );
  }
  out.push('');
  for (const n of notes) out.push(`- ${n}`);
  out.push(
    `- setup: sev-sim platform ${fmt(simSetupMs / 1000)} s; ${drivers.map((d) => `${d.driver} ${fmt(d.setupMs / 1000)} s`).join(', ')}; whole run ${fmt(totalSeconds)} s.`,
  );
  process.stdout.write(out.join('\n') + '\n');
}

/** Set on SIGINT/SIGTERM: calls then fail because the broker is stopping and the database is being dropped. */
let interrupted = false;

main().then(
  () => process.exit(0),
  (e: unknown) => {
    if (interrupted) return; // the SIGINT handler exits once the database is dropped
    process.stderr.write(`broker benchmark failed: ${(e as Error)?.stack ?? String(e)}\n`);
    process.exit(1);
  },
);
