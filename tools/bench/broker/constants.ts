/** The benchmark's fixed parameters: cases, what the simulated hosts launch, goals and limits. */
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import * as path from 'node:path';
import { type HostLaunch } from '../host-sp';

export type Driver = 'pglite' | 'pg';
export type BrokerMode = 'process' | 'inprocess';
export type CaseId = 'bundle' | 'secret' | 'launch' | 'paced' | 'rest' | 'null';
export const CASES: { id: CaseId; name: string }[] = [
  { id: 'bundle', name: 'GetBundle' },
  { id: 'secret', name: 'GetSecret' },
  { id: 'launch', name: 'full launch' },
  { id: 'paced', name: 'full launch, paced' },
  { id: 'rest', name: 'full launch, REST (/sev/v1)' },
  { id: 'null', name: 'null launch' },
];

export const POLICY = 0x1; // NODBG
export const FIRMWARE = randomBytes(64 * 1024); // what the simulated SP measures; only its digest matters to the broker
export const DIGEST = createHash('sha256').update(FIRMWARE).digest();
export const SECRET_ID = 'bench/key/disk';
export const SECRET_VALUE = randomBytes(32);
export const SECRET_GUID = randomUUID();
/** What each simulated host launches and checks (host-sp.ts). */
export const HOST_LAUNCH: HostLaunch = { policy: POLICY, firmwareImage: FIRMWARE, secretGuid: SECRET_GUID, secretValue: SECRET_VALUE };
export const MASTER_KEY = randomBytes(32);
export const ADMIN_TOKEN = randomBytes(24).toString('hex');
/** The repository root (tools/bench/broker/../../..). */
export const ROOT = path.resolve(__dirname, '../../..');
/** kb-broker's start-up, at most (tsx compiles on the fly). */
export const BROKER_START_TIMEOUT_MS = 60_000;
/** The V8 flag `npm start` and the Dockerfile run kb-broker with (package.json). */
export const BROKER_NODE_FLAG = '--max-semi-space-size=32';
/** After SIGTERM, how long the broker process may take to exit before it is killed. */
export const BROKER_STOP_TIMEOUT_MS = 15_000;
export const PG_POOL = 10; // openStore's default, which is what `kb-broker --database-url` uses
export const CALL_DEADLINE_MS = 60_000;
/** Clients used to prepare GetSecret's launches (untimed), at least. */
export const PREPARE_CONCURRENCY = 16;
/** GetBundle responses kept for GetSecret's preparation, at most. */
export const MAX_KEPT_BUNDLES = 50_000;
/** Per floor candidate, before each driver (capped by --seconds). */
export const FLOOR_SECONDS = 1;
export const GOAL_BUNDLE_RATIO = 0.7;
export const GOAL_LAUNCH_P99_MS = 20;
export const GOAL_LAUNCH_CLIENTS = 16;
/** Default paced rates: these fractions of the closed-loop full launch/s at the same number of clients, in order. */
export const PACED_FRACTIONS = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8];
/** Paced: a p99 over fewer than a few hundred arrivals is about their maximum, so low rates run longer. */
export const DEFAULT_MIN_ARRIVALS = 300;
/** The closed-loop probe giving the paced case its capacity when the launch case is not run, seconds at most. */
export const PROBE_SECONDS = 2;
