/**
 * Micro-benchmark of the SEV crypto core (libs/sev) and the simulated Secure Processor (libs/sev-sim), with the
 * node:crypto primitive floors measured in the same run so the ratios mean something on any machine.
 *
 *   npx tsx tools/bench/sev-crypto.ts [--seconds N] [--warmup-ms N] [--json]
 *   npm run bench:sev -- --json
 *
 * Every figure is synchronous throughput of one call at a time (no caching of results across calls beyond what the
 * library itself does, which the labels say), single-threaded except the rows labelled "warm worker pool".
 */
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { performance } from 'node:perf_hooks';
import { availableParallelism } from 'node:os';
import { parseArgs } from 'node:util';
import {
  buildSecretTable,
  computeMeasurement,
  packageSecret,
  sevEsLaunchDigest,
  sevLaunchDigest,
  sevPublicKey,
  sha384,
  snpLaunchDigest,
  snpOvmfHash,
  startSession,
  verifyChain,
  warmPageHashPool,
  sharedPageBuffer,
  verifyMeasurement,
  type ExtraRoot,
  type SevEsLaunchDigestInput,
  type SevLaunchDigestInput,
  type SnpLaunchDigestInput,
} from '@kb/sev';
import { createPlatform, platformChain, platformRoot, SimulatedSecureProcessor } from '@kb/sev-sim';
import { ecdhFloorCandidates, machineInfo } from './ecdh-floor';
import { fmt, measure, table, type MeasureResult } from './harness';

const USAGE = `Usage: npx tsx tools/bench/sev-crypto.ts [options]

Micro-benchmarks of libs/sev and libs/sev-sim against node:crypto floors measured in the same run.

Options:
  --seconds N     measured time per case, seconds (default 1.5)
  --warmup-ms N   warm-up time per case, milliseconds (default 200)
  --json          print one JSON object instead of the table
  -h, --help      print this help
`;

const SHARED = path.resolve(__dirname, '../../../shared');
const MILAN_CHAIN = path.join(SHARED, 'vectors/sev/platform-chains/milan_full_chain.bin');
const OVMF_TAIL = path.join(SHARED, 'vectors/measure/sev-snp-measure/fixtures/ovmf_AmdSev_suffix.bin');

const FIRMWARE_SIZE = 4 * 1024 * 1024;
const POLICY = 0x1; // NODBG
const FW = { apiMajor: 1, apiMinor: 55, build: 21 };
const SIM_RSA_BITS = 4096; // like Rome and later (and the Milan chain), so the cold case is comparable

interface Options {
  seconds: number;
  warmupMs: number;
  json: boolean;
}

function parseOptions(): Options {
  let values;
  try {
    ({ values } = parseArgs({
      options: {
        seconds: { type: 'string' },
        'warmup-ms': { type: 'string' },
        json: { type: 'boolean', default: false },
        help: { type: 'boolean', short: 'h', default: false },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (e) {
    process.stderr.write(`${(e as Error).message}\n\n${USAGE}`);
    process.exit(2);
  }
  if (values.help) {
    process.stdout.write(USAGE);
    process.exit(0);
  }
  const num = (flag: string, raw: string | undefined, dflt: number, allowZero: boolean): number => {
    if (raw === undefined) return dflt;
    const n = Number(raw);
    if (raw.trim() === '' || !Number.isFinite(n) || n < 0 || (n === 0 && !allowZero)) {
      process.stderr.write(`--${flag} must be a number ${allowZero ? '>= 0' : '> 0'}, got ${JSON.stringify(raw)}\n\n${USAGE}`);
      process.exit(2);
    }
    return n;
  };
  return {
    seconds: num('seconds', values.seconds, 1.5, false),
    warmupMs: num('warmup-ms', values['warmup-ms'], 200, true),
    json: values.json === true,
  };
}

interface Case {
  id: string;
  name: string;
  fn: () => unknown;
  /** For MB/s: payload bytes one operation processes (the firmware size for launch digests). */
  bytesPerOp?: number;
  /** id of the floor case this one is compared with (resolved after the run for 'ecdh-floor'). */
  floor?: string;
  isFloor?: boolean;
}

interface Row extends MeasureResult {
  id: string;
  mbPerSec?: number;
  floor?: { id: string; name: string; ratio: number };
  isFloor?: boolean;
  /** SNP rows: the ratio to the floor again, from short rounds alternating with it (median, range; see PAIRED_ROUNDS) */
  paired?: { rounds: number; median: number; min: number; max: number };
}

/**
 * The SNP rows are measured again in this many short rounds, each right after a round of the SHA-384 floor (ABAB):
 * this VM's speed drifts by tens of percent over seconds, so two rows measured seconds apart can differ by that much
 * whatever the code does; a ratio of rounds 0.1 s apart, and its median over the rounds, does not.
 */
const PAIRED_ROUNDS = 15;
const PAIRED_SECONDS = 0.1;

function assert(cond: unknown, what: string): asserts cond {
  if (!cond) throw new Error(`benchmark setup sanity check failed: ${what}`);
}

async function main(): Promise<void> {
  const opts = parseOptions();
  const progress = (msg: string) => {
    if (process.stderr.isTTY) process.stderr.write(msg);
  };
  const tStart = performance.now();

  // ---- fixtures -------------------------------------------------------------------------------------------------
  progress('setup: loading fixtures, generating a sev-sim platform (RSA-4096 roots, a few seconds)…\n');
  const milanChain = readFileSync(MILAN_CHAIN);
  const milan = verifyChain(milanChain);
  assert(milan.trustedBy === 'amd' && milan.generation === 'milan', `Milan chain verifies as milan (got ${milan.generation})`);
  const pdh = milan.pdh;

  const tSim = performance.now();
  const platform = createPlatform({ name: 'bench-sim', rsaBits: SIM_RSA_BITS, firmware: FW });
  const simSetupMs = performance.now() - tSim;
  const simChain = platformChain(platform);
  const simRoot = platformRoot(platform);
  const freshRoot = (): ExtraRoot => ({ name: simRoot.name, ark: Buffer.from(simRoot.ark), ask: Buffer.from(simRoot.ask) });
  assert(verifyChain(simChain, { extraRoots: [freshRoot()] }).trustedBy === 'extra', 'sev-sim chain verifies under its root');

  const tail = readFileSync(OVMF_TAIL);
  assert(tail.length >= 4096, 'OVMF tail fixture is at least 4 KiB');
  const firmware = Buffer.concat([randomBytes(FIRMWARE_SIZE - 4096), tail.subarray(tail.length - 4096)]);
  assert(firmware.length === FIRMWARE_SIZE, 'firmware is 4 MiB');
  const kernel = randomBytes(1024);
  const sevInput: SevLaunchDigestInput = { firmware, kernelHashes: { kernel } };
  const esInput: SevEsLaunchDigestInput = { firmware, kernelHashes: { kernel }, vcpus: 4, vcpu: { type: 'EPYC-v4' } };
  const sevDigest = sevLaunchDigest(sevInput);
  sevEsLaunchDigest(esInput); // throws if the tail lacks the SEV-ES reset block
  assert(sevLaunchDigest({ firmware }).equals(createHash('sha256').update(firmware).digest()), 'plain SEV digest is SHA-256(firmware)');
  // The sequential rows force threads: 0; the parallel rows use the default with the pool started and ready.
  const snpInput: SnpLaunchDigestInput = { firmware, kernelHashes: { kernel }, vcpus: 4, vcpu: { type: 'EPYC-v4' }, threads: 0 };
  const poolReady = await warmPageHashPool();
  const snpParInput: SnpLaunchDigestInput = { ...snpInput, threads: undefined };
  // The same image in shared memory, as a caller measuring it repeatedly keeps it: the workers read it where it lies.
  const sharedFirmware = sharedPageBuffer(firmware);
  const snpSharedInput: SnpLaunchDigestInput = { ...snpParInput, firmware: sharedFirmware };
  // The seeded digest equals the full one only if the firmware pages really are the first step of the chain.
  assert(
    snpLaunchDigest({ ...snpInput, ovmfHash: snpOvmfHash(firmware) }).equals(snpLaunchDigest(snpInput)),
    'SNP digest seeded with its own OVMF hash is unchanged',
  );
  assert(
    snpLaunchDigest(snpParInput).equals(snpLaunchDigest(snpInput)) &&
      snpLaunchDigest(snpSharedInput).equals(snpLaunchDigest(snpInput)) &&
      snpOvmfHash(firmware).equals(snpOvmfHash(firmware, undefined, { threads: 0 })),
    'SNP digests with worker-thread page hashes equal the sequential ones',
  );
  const perPage = (): void => {
    for (let o = 0; o < firmware.length; o += 4096) sha384(firmware.subarray(o, o + 4096));
  };

  const ecdhCandidates = ecdhFloorCandidates(sevPublicKey(pdh));

  // measurement / secret inputs
  const session = startSession({ pdh, policy: POLICY });
  const mnonce = randomBytes(16);
  const measurement = Buffer.concat([computeMeasurement({ tik: session.tik, ...FW, policy: POLICY, digest: sevDigest, mnonce }), mnonce]);
  const measureParams = { tik: session.tik, ...FW, policy: POLICY, digest: sevDigest, measurement };
  const launchMeasure = verifyMeasurement(measureParams);
  const secretEntries = [{ guid: randomUUID(), data: randomBytes(32) }];
  const secretTable = buildSecretTable(secretEntries);
  const secretKeys = { tek: session.tek, tik: session.tik, measure: launchMeasure };

  // simulated Secure Processor
  const sp = new SimulatedSecureProcessor(platform);
  const simSession = startSession({ pdh: platform.pdh, policy: POLICY });
  const simLaunch = (): void => {
    const h = sp.launchStart({ policy: POLICY, godhCert: simSession.godhCert, launchBlob: simSession.launchBlob });
    sp.launchUpdateData(h, firmware);
    const m = sp.launchMeasure(h);
    const packet = packageSecret({ tek: simSession.tek, tik: simSession.tik, measure: m.subarray(0, 32), data: secretTable });
    sp.launchSecret(h, packet.header, packet.data);
    sp.launchFinish(h);
    sp.decommission(h);
  };
  {
    const h = sp.launchStart({ policy: POLICY, godhCert: simSession.godhCert, launchBlob: simSession.launchBlob });
    sp.launchUpdateData(h, firmware);
    sp.launchMeasure(h);
    assert(sp.launchDigest(h)?.equals(sevLaunchDigest({ firmware })), 'simulated SP measures the same digest');
    sp.decommission(h);
    simLaunch();
  }

  // ---- cases ----------------------------------------------------------------------------------------------------
  const cases: Case[] = [
    {
      id: 'chain-milan',
      name: 'chain verify, Milan (pinned ARK/ASK checks cached per process)',
      fn: () => verifyChain(milanChain),
    },
    {
      id: 'chain-sim-cached',
      name: 'chain verify, sev-sim RSA-4096, same ExtraRoot (root checks cached)',
      fn: () => verifyChain(simChain, { extraRoots: [simRoot] }),
    },
    {
      id: 'chain-sim-cold',
      name: 'chain verify, fully cold (sev-sim RSA-4096, new ExtraRoot per call)',
      fn: () => verifyChain(simChain, { extraRoots: [freshRoot()] }),
    },
    ...ecdhCandidates.map((c) => ({ id: c.id, name: `[floor] ECDH P-384 keygen+derive: ${c.method}`, fn: c.fn, isFloor: true })),
    {
      id: 'session',
      name: 'startSession (Milan PDH, policy 0x1)',
      fn: () => startSession({ pdh, policy: POLICY }),
      floor: 'ecdh-floor',
    },
    {
      id: 'measurement',
      name: 'verifyMeasurement (HMAC-SHA256 over 71 B + compare)',
      fn: () => verifyMeasurement(measureParams),
    },
    {
      id: 'secret',
      name: `packageSecret (prebuilt ${secretTable.length} B table, 1 × 32 B key)`,
      fn: () => packageSecret({ ...secretKeys, data: secretTable }),
    },
    {
      id: 'secret-table',
      name: 'buildSecretTable + packageSecret (1 × 32 B key)',
      fn: () => packageSecret({ ...secretKeys, data: buildSecretTable(secretEntries) }),
    },
    {
      id: 'sha256-floor',
      name: '[floor] createHash(sha256) over the 4 MiB firmware',
      fn: () => createHash('sha256').update(firmware).digest(),
      bytesPerOp: FIRMWARE_SIZE,
      isFloor: true,
    },
    {
      id: 'digest-sev',
      name: 'sevLaunchDigest, 4 MiB firmware + kernel hashes (1 KiB kernel)',
      fn: () => sevLaunchDigest(sevInput),
      bytesPerOp: FIRMWARE_SIZE,
      floor: 'sha256-floor',
    },
    {
      id: 'digest-seves',
      name: 'sevEsLaunchDigest, same + 4 vCPUs EPYC-v4 (VMSAs)',
      fn: () => sevEsLaunchDigest(esInput),
      bytesPerOp: FIRMWARE_SIZE,
      floor: 'sha256-floor',
    },
    {
      id: 'sha384-floor',
      name: '[floor] createHash(sha384) over the 4 MiB firmware',
      fn: () => createHash('sha384').update(firmware).digest(),
      bytesPerOp: FIRMWARE_SIZE,
      isFloor: true,
    },
    {
      id: 'sha384-per-page',
      name: 'SHA-384 of each 4 KiB page separately, no chaining (1024 node:crypto calls)',
      fn: perPage,
      bytesPerOp: FIRMWARE_SIZE,
      floor: 'sha384-floor',
    },
    {
      id: 'digest-snp-ovmf',
      name: 'snpOvmfHash, 4 MiB firmware (1024 PAGE_INFO steps), sequential (threads: 0)',
      fn: () => snpOvmfHash(firmware, undefined, { threads: 0 }),
      bytesPerOp: FIRMWARE_SIZE,
      floor: 'sha384-floor',
    },
    {
      id: 'digest-snp',
      name: 'snpLaunchDigest, same + metadata, kernel hashes page, 4 vCPUs EPYC-v4, sequential',
      fn: () => snpLaunchDigest(snpInput),
      bytesPerOp: FIRMWARE_SIZE,
      floor: 'sha384-floor',
    },
    ...(poolReady
      ? [
          {
            id: 'digest-snp-ovmf-par',
            name: `snpOvmfHash, 4 MiB firmware, page hashes on a warm worker pool (${availableParallelism() - 1} + this thread)`,
            fn: () => snpOvmfHash(firmware),
            bytesPerOp: FIRMWARE_SIZE,
            floor: 'sha384-floor',
          },
          {
            id: 'digest-snp-par',
            name: 'snpLaunchDigest, same inputs, page hashes on the warm worker pool',
            fn: () => snpLaunchDigest(snpParInput),
            bytesPerOp: FIRMWARE_SIZE,
            floor: 'sha384-floor',
          },
          {
            id: 'digest-snp-ovmf-shared',
            name: 'snpOvmfHash, warm worker pool, the firmware already in shared memory (sharedPageBuffer: no copy)',
            fn: () => snpOvmfHash(sharedFirmware),
            bytesPerOp: FIRMWARE_SIZE,
            floor: 'sha384-floor',
          },
          {
            id: 'digest-snp-shared',
            name: 'snpLaunchDigest, warm worker pool, the firmware already in shared memory',
            fn: () => snpLaunchDigest(snpSharedInput),
            bytesPerOp: FIRMWARE_SIZE,
            floor: 'sha384-floor',
          },
        ]
      : []),
    {
      id: 'sim-launch',
      name: 'simulated SP launch: start+update(4 MiB)+measure+secret',
      fn: simLaunch,
      bytesPerOp: FIRMWARE_SIZE,
    },
  ];

  const rows: Row[] = [];
  for (const [i, c] of cases.entries()) {
    progress(`[${i + 1}/${cases.length}] ${c.name}\n`);
    const r = measure(c.name, c.fn, { seconds: opts.seconds, warmupMs: opts.warmupMs });
    const row: Row = { id: c.id, ...r };
    if (c.bytesPerOp !== undefined) row.mbPerSec = (r.opsPerSec * c.bytesPerOp) / 1e6;
    if (c.isFloor) row.isFloor = true;
    rows.push(row);
  }

  // ---- floors and ratios -----------------------------------------------------------------------------------------
  const byId = new Map(rows.map((r) => [r.id, r]));
  const get = (id: string): Row => {
    const r = byId.get(id);
    if (!r) throw new Error(`no result ${id}`);
    return r;
  };
  const ecdhFloor = ecdhCandidates.map((c) => get(c.id)).reduce((a, b) => (b.opsPerSec > a.opsPerSec ? b : a));
  const ecdhFloorHow = ecdhCandidates.find((c) => c.id === ecdhFloor.id)!.method;
  for (const c of cases) {
    if (!c.floor) continue;
    const floor = c.floor === 'ecdh-floor' ? ecdhFloor : get(c.floor);
    const row = get(c.id);
    row.floor = { id: floor.id, name: floor.name, ratio: row.opsPerSec / floor.opsPerSec };
  }

  const floorCase = cases.find((c) => c.id === 'sha384-floor')!;
  for (const c of cases.filter((x) => x.id.startsWith('digest-snp'))) {
    progress(`paired with the floor: ${c.name}\n`);
    const ratios: number[] = [];
    for (let round = 0; round < PAIRED_ROUNDS; round++) {
      const f = measure(floorCase.name, floorCase.fn, { seconds: PAIRED_SECONDS, warmupMs: 0 });
      const r = measure(c.name, c.fn, { seconds: PAIRED_SECONDS, warmupMs: 0 });
      ratios.push(r.opsPerSec / f.opsPerSec);
    }
    ratios.sort((a, b) => a - b);
    get(c.id).paired = { rounds: PAIRED_ROUNDS, median: ratios[Math.floor(PAIRED_ROUNDS / 2)]!, min: ratios[0]!, max: ratios[PAIRED_ROUNDS - 1]! };
  }

  const totalSeconds = (performance.now() - tStart) / 1000;
  const machine = machineInfo();
  const notes = [
    'ops/s and mean µs/op are single-threaded, one call at a time; MB/s = 10^6 bytes of firmware per second.',
    'ratio = case throughput / floor throughput (1.00 = as fast as the bare node:crypto primitive).',
    `ECDH floor = the faster of the two [floor] ECDH rows: ${ecdhFloorHow}.`,
    'verifyChain caches the pinned ARK/ASK self-checks (and the ASK public key) once per process; "fully cold" passes a new ExtraRoot object per call, so ARK self + ARK→ASK RSA-4096 verifications and the ARK/ASK key parsing are redone each time.',
    'Launch-digest MB/s count the 4 MiB firmware only; the SEV digest also hashes the 176 B kernel-hash table, the SEV-ES digest 4 × 4 KiB VMSAs too.',
    'SNP digests hash every 4 KiB page on its own and then its 112 B PAGE_INFO (two SHA-512 blocks): two node:crypto calls per page, so on one thread they are bounded by the per-page row. The "warm worker pool" rows hash the pages on worker threads while this thread chains PAGE_INFO (libs/sev snp/page-hashes.ts; the pool started and ready before the run, as in a long-running process; a one-shot CLI only starts it for images >= 128 MiB). Goal: the parallel rows >= 0.9x the bulk SHA-384 floor, judged by the "paired" ratio (the median over ${PAIRED_ROUNDS} rounds of ${PAIRED_SECONDS} s alternating with the floor).',
    'simulated SP launch: the owner session is prepared once; per launch it runs the SP-side ECDH + unwrap, SHA-256 of 4 MiB, LAUNCH_MEASURE, packageSecret (owner) and LAUNCH_SECRET.',
  ];

  if (opts.json) {
    process.stdout.write(
      JSON.stringify(
        {
          benchmark: 'sev-crypto',
          machine,
          settings: { seconds: opts.seconds, warmupMs: opts.warmupMs, simRsaBits: SIM_RSA_BITS, firmwareBytes: FIRMWARE_SIZE },
          ecdhFloor: { id: ecdhFloor.id, method: ecdhFloorHow },
          results: rows,
          setup: { simPlatformMs: Math.round(simSetupMs) },
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
  out.push('sev-crypto micro-benchmark (libs/sev, libs/sev-sim)');
  out.push(`cpu:  ${machine.cpu} (${machine.cores} cores)   node: ${machine.node}   ${machine.platform}`);
  out.push(`date: ${machine.date}   ${opts.seconds} s per case after ${opts.warmupMs} ms warm-up`);
  out.push('');
  const floorTag = (r: Row) => (r.id === ecdhFloor.id || r.id === 'sha256-floor' || r.id === 'sha384-floor' ? 'floor' : r.isFloor ? '(slower)' : '');
  const floorName: Record<string, string> = { 'sha256-floor': 'SHA-256', 'sha384-floor': 'SHA-384' };
  out.push(
    table(
      ['case', 'ops/s', 'µs/op', 'MB/s', 'vs floor'],
      rows.map((r) => [
        r.name,
        fmt(r.opsPerSec),
        fmt(r.meanUs),
        r.mbPerSec === undefined ? '' : fmt(r.mbPerSec),
        r.floor ? `${r.floor.ratio.toFixed(2)}x ${floorName[r.floor.id] ?? 'ECDH'}` : floorTag(r),
      ]),
      new Set([1, 2, 3]),
    ),
  );
  out.push('');
  out.push(`SNP digests paired with the SHA-384 floor (${PAIRED_ROUNDS} rounds of ${PAIRED_SECONDS} s each, alternating): median (range)`);
  for (const r of rows.filter((x) => x.paired)) {
    const p = r.paired!;
    out.push(`  ${p.median.toFixed(2)}x (${p.min.toFixed(2)}-${p.max.toFixed(2)})  ${r.name}`);
  }
  const goal = rows.find((r) => r.id === 'digest-snp-ovmf-shared')?.paired;
  out.push(
    goal
      ? `goal: the SNP digest of the 4 MiB image >= 0.9x the SHA-384 floor (snpOvmfHash, warm pool, image in shared memory, paired median): ${goal.median.toFixed(2)}x ${goal.median >= 0.9 ? 'met' : 'NOT met'}`
      : 'goal: the SNP digest of the 4 MiB image >= 0.9x the SHA-384 floor: not measured (one core: no worker pool)',
  );
  out.push('');
  for (const n of notes) out.push(`- ${n}`);
  out.push(`- setup: sev-sim platform generation ${fmt(simSetupMs / 1000)} s; whole run ${fmt(totalSeconds)} s.`);
  process.stdout.write(out.join('\n') + '\n');
}

void main();
