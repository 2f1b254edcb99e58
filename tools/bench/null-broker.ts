/**
 * The transport floor of a launch (the `null` case of tools/bench/broker.ts): a KeyBrokerService in a process of its
 * own that answers every GetBundle and GetSecret with the responses of one real launch, and does nothing else — no
 * chain check, no ECDH, no database. The simulated hosts call it exactly as they call kb-broker (the same requests and
 * client options, one connection each), so a "null launch" (the two calls, without the SP work between them) costs
 * what any broker built on grpc-js pays on this machine before doing any work of its own: protobuf, HTTP/2, loopback
 * TCP, and waking two processes up. A full launch's latency is only meaningful next to it.
 *
 * broker.ts starts it as `node --max-semi-space-size=32 --import tsx null-broker.ts` (the V8 flag kb-broker runs
 * with, and the guest-facing server's options), writes the two responses as one JSON line to its stdin and reads the
 * bound address as one JSON line from its stdout.
 */
import { spawn } from 'node:child_process';
import * as path from 'node:path';
import { createInterface } from 'node:readline';
import { Server, ServerCredentials } from '@grpc/grpc-js';
import { KEYBROKER_SERVER_OPTIONS } from '@kb/broker';
import { keybroker } from '@kb/grpc-api';
import { cpuMsOf } from './proc-stat';

/** What the null broker answers, every time. */
export interface CannedResponses {
  bundle: keybroker.BundleResponse;
  secret: keybroker.SecretResponse;
}

export interface NullBroker {
  address: string;
  pid: number;
  /** utime+stime of the null broker process, ms; undefined without /proc */
  cpuMs(): number | undefined;
  stop(): Promise<void>;
}

const START_TIMEOUT_MS = 60_000;
const STOP_TIMEOUT_MS = 5_000;

/** Starts the null broker process; `nodeFlags` as kb-broker gets them (e.g. its semi-space size). */
export async function startNullBroker(responses: CannedResponses, nodeFlags: readonly string[]): Promise<NullBroker> {
  const child = spawn(process.execPath, [...nodeFlags, '--import', 'tsx', __filename, '--serve'], {
    cwd: path.resolve(__dirname, '../..'),
    env: { ...process.env, NODE_OPTIONS: '' },
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), STOP_TIMEOUT_MS);
    await exited;
    clearTimeout(timer);
  };
  child.stdin!.end(JSON.stringify(responses) + '\n');
  let timer: NodeJS.Timeout | undefined;
  try {
    const address = await Promise.race([
      new Promise<string>((resolve, reject) => {
        createInterface({ input: child.stdout! }).once('line', (line) => {
          try {
            resolve((JSON.parse(line) as { listening: string }).listening);
          } catch {
            reject(new Error(`null broker: unexpected output ${JSON.stringify(line)}`));
          }
        });
      }),
      new Promise<never>((_, reject) => child.once('error', reject)),
      exited.then(() => Promise.reject(new Error(`null broker exited (${child.exitCode ?? child.signalCode}) before listening`))),
      new Promise<never>(
        (_, reject) => (timer = setTimeout(() => reject(new Error(`null broker did not start in ${START_TIMEOUT_MS / 1000} s`)), START_TIMEOUT_MS)),
      ),
    ]);
    return { address, pid: child.pid!, cpuMs: () => cpuMsOf([child.pid!]), stop };
  } catch (e) {
    await stop();
    throw e;
  } finally {
    clearTimeout(timer);
  }
}

/** The process itself: serve the canned responses on 127.0.0.1 (any port) until SIGTERM. */
async function serve(): Promise<void> {
  let input = '';
  for await (const chunk of process.stdin) input += String(chunk);
  const canned = JSON.parse(input) as CannedResponses;
  const server = new Server({ ...KEYBROKER_SERVER_OPTIONS });
  const service: keybroker.KeyBrokerServiceServer = {
    getBundle: (_call, callback) => callback(null, canned.bundle),
    getSecret: (_call, callback) => callback(null, canned.secret),
    getOnlineSecret: (_call, callback) => callback({ code: 12, details: 'not served by the null broker' }, null),
  };
  server.addService(keybroker.KeyBrokerServiceService, service);
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', ServerCredentials.createInsecure(), (e, p) => (e ? reject(e) : resolve(p))),
  );
  process.once('SIGTERM', () => server.tryShutdown(() => process.exit(0)));
  process.stdout.write(JSON.stringify({ listening: `127.0.0.1:${port}` }) + '\n');
}

if (require.main === module && process.argv.includes('--serve')) {
  serve().catch((e: unknown) => {
    process.stderr.write(`null broker: ${(e as Error)?.stack ?? String(e)}\n`);
    process.exit(1);
  });
}
