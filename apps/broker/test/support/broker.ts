import { randomBytes } from 'node:crypto';
import { Client } from 'pg';
import { createPlatform, platformRoot, type SimulatedPlatform } from '@kb/sev-sim';
import { openStore, PGLITE_MEMORY, type Store } from '@kb/store';
import { startBroker, type RunningBroker } from '../../src/broker';
import { parseConfig, type BrokerConfig } from '../../src/config';
import { silentLogger } from '../../src/log';
import { HostClient, OwnerClient } from './grpc';

export type Driver = 'pglite' | 'pg';
export const DRIVERS: Driver[] = ['pglite', 'pg'];

/** One synthetic platform for a whole test file: RSA key generation is the slow part. */
let sharedPlatform: SimulatedPlatform | undefined;
export function testPlatform(): SimulatedPlatform {
  return (sharedPlatform ??= createPlatform({ name: 'sev-sim' }));
}

export const ADMIN_TOKEN = 'test-admin-token-0123456789abcdef';
export const MASTER_KEY = randomBytes(32);

export function testConfig(overrides: Partial<BrokerConfig> = {}): BrokerConfig {
  const base = parseConfig(
    ['--listen', '127.0.0.1:0', '--admin-listen', '127.0.0.1:0', '--http-listen', '127.0.0.1:0', '--data-dir', '/nonexistent-test-dir'],
    {},
  );
  if (base === 'help') throw new Error('unreachable');
  // A generous deadline: these suites run hundreds of launches at once on slow CI machines, and deadline.test.ts
  // tests the deadline itself.
  return { ...base, adminToken: ADMIN_TOKEN, bundleRatePerSecond: 0, requestTimeoutSeconds: 60, ...overrides };
}

/** A database for one test file: PGlite in memory, or a fresh PostgreSQL database (dropped by `drop`). */
export async function testDatabase(driver: Driver): Promise<{ url: string; open(): Promise<Store>; drop(): Promise<void> }> {
  if (driver === 'pglite') {
    return { url: PGLITE_MEMORY, open: () => openStore({ driver: 'pglite', dataDir: PGLITE_MEMORY, masterKey: MASTER_KEY }), drop: async () => undefined };
  }
  const base = process.env.KB_TEST_DATABASE_URL;
  if (!base) {
    throw new Error('the PostgreSQL suites need KB_TEST_DATABASE_URL (npm test starts a throwaway server when Debian postgresql is installed)');
  }
  const name = `kb_broker_test_${randomBytes(6).toString('hex')}`;
  await adminQuery(base, `CREATE DATABASE "${name}"`);
  const url = new URL(base);
  url.pathname = `/${name}`;
  return {
    url: url.toString(),
    open: () => openStore({ driver: 'pg', url: url.toString(), masterKey: MASTER_KEY, maxConnections: 20 }),
    drop: () => adminQuery(base, `DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`),
  };
}

async function adminQuery(url: string, sql: string): Promise<void> {
  const c = new Client({ connectionString: url });
  await c.connect();
  try {
    await c.query(sql);
  } finally {
    await c.end();
  }
}

export interface TestBroker {
  broker: RunningBroker;
  host: HostClient;
  owner: OwnerClient;
  store: Store;
  platform: SimulatedPlatform;
  close(): Promise<void>;
}

/** A broker on loopback that trusts the simulated platform's root, with clients for the host and the owner. */
export async function startTestBroker(store: Store, overrides: Partial<BrokerConfig> = {}, now?: () => Date): Promise<TestBroker> {
  const platform = testPlatform();
  const broker = await startBroker(testConfig(overrides), { store, logger: silentLogger, extraRoots: [platformRoot(platform)], now });
  const host = new HostClient(broker.address);
  const owner = new OwnerClient(broker.adminAddress, ADMIN_TOKEN);
  return {
    broker,
    host,
    owner,
    store,
    platform,
    async close() {
      host.close();
      owner.close();
      await broker.close();
    },
  };
}

/** A policy document that admits exactly the given digests on NODBG launches. */
export function policyFor(digests: Buffer[], extra: Record<string, unknown> = {}): string {
  return JSON.stringify({ version: 1, allowedDigests: digests.map((d) => d.toString('hex')), ...extra });
}
