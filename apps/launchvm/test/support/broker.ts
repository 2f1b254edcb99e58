import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { credentials, Metadata, type ServiceError } from '@grpc/grpc-js';
import { admin } from '@kb/grpc-api';
import { encodeRootFile, type SimulatedPlatform } from '@kb/sev-sim';

export const ROOT = resolve(__dirname, '../../../..');
export const TSX = join(ROOT, 'node_modules/.bin/tsx');

export interface TestBroker {
  address: string;
  putPolicy(name: string, doc: object): Promise<void>;
  putSecret(id: string, value: Buffer): Promise<void>;
  log: string[];
  stop(): Promise<void>;
}

/**
 * A real broker process (embedded PGlite in `dir`) trusting the simulated platform's root, and the two admin calls
 * the tests need. The same process a deployment runs, so launchvm is tested against the real wire and checks.
 */
export async function startTestBroker(dir: string, platform: SimulatedPlatform): Promise<TestBroker> {
  const rootFile = join(dir, 'sim-root.cert');
  writeFileSync(rootFile, encodeRootFile(platform));
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('KB_')));
  const child: ChildProcess = spawn(
    TSX,
    [
      'apps/broker/src/main.ts',
      '--data-dir',
      join(dir, 'broker-data'),
      '--listen',
      '127.0.0.1:0',
      '--admin-listen',
      '127.0.0.1:0',
      '--http-listen',
      '127.0.0.1:0',
      '--trust-root',
      `sev-sim=${rootFile}`,
      '--bundle-rate',
      '0',
    ],
    { cwd: ROOT, env: { ...env, NODE_OPTIONS: '' }, stdio: ['ignore', 'ignore', 'pipe'] },
  );
  const log: string[] = [];
  const exited = new Promise<void>((r) => child.once('close', () => r()));
  const { address, adminAddress } = await new Promise<{ address: string; adminAddress: string }>((ready, fail) => {
    const timer = setTimeout(() => fail(new Error(`broker did not start:\n${log.join('\n')}`)), 60_000);
    child.once('exit', (code) => fail(new Error(`broker exited (${code}):\n${log.join('\n')}`)));
    createInterface({ input: child.stderr! }).on('line', (line) => {
      log.push(line);
      if (!line.includes('"broker listening"')) return;
      clearTimeout(timer);
      const m = JSON.parse(line) as { keybroker: string; admin: string };
      ready({ address: m.keybroker, adminAddress: m.admin });
    });
  });
  const token = readFileSync(join(dir, 'broker-data', 'admin.token'), 'utf8').trim();
  const client = new admin.BrokerAdminClient(adminAddress, credentials.createInsecure());
  const md = new Metadata();
  md.set('authorization', `Bearer ${token}`);
  const call = (method: string, req: unknown) =>
    new Promise<void>((ok, fail) =>
      (client as unknown as Record<string, Function>)[method]!.call(client, req, md, (e: ServiceError | null) => (e ? fail(e) : ok())),
    );
  return {
    address,
    log,
    putPolicy: (name, doc) => call('putPolicy', { name, document_json: JSON.stringify(doc) }),
    putSecret: (id, value) => call('putSecret', { id, value, policy_name: '' }),
    async stop() {
      client.close();
      child.kill('SIGTERM');
      await exited;
    },
  };
}
