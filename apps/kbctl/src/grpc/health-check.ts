import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { Client, credentials, type ChannelCredentials } from '@grpc/grpc-js';
import { CliError, type Io } from '../cli';
import { DEFAULT_BROKER_PORT } from '../connection-flags';
import { describeUnreachable, probeHealth } from './health-probe';

const ATTEMPT_MS = 2000;
const PAUSE_MS = 250;

/** `kbctl health`: one Check, or Checks until SERVING while --wait lasts. */
export async function checkHealth(o: { target: string; service: string; waitSeconds: number; caFile?: string }, io: Io): Promise<number> {
  let creds: ChannelCredentials = credentials.createInsecure();
  if (o.caFile) {
    try {
      creds = credentials.createSsl(readFileSync(resolve(io.cwd, o.caFile)));
    } catch (e) {
      throw new CliError(`cannot read the TLS CA certificate from ${o.caFile} (${(e as NodeJS.ErrnoException).code ?? e})`);
    }
  }
  const deadline = Date.now() + o.waitSeconds * 1000;
  const what = o.service ? `service ${o.service} at ${o.target}` : `the broker at ${o.target}`;
  let told = false;
  for (;;) {
    // A fresh channel per attempt: grpc-js backs off reconnecting a channel that failed, which would stretch a wait.
    const client = new Client(o.target, creds);
    const remaining = deadline - Date.now();
    const r = await probeHealth(client, o.service, Math.max(500, Math.min(ATTEMPT_MS, remaining)));
    client.close();
    if (r.status === 'SERVING') {
      io.out('SERVING');
      return 0;
    }
    const why =
      'error' in r
        ? r.status === 'UNREACHABLE'
          ? describeUnreachable(r.error.details, `is the broker running? (it listens on port ${DEFAULT_BROKER_PORT} by default)`)
          : r.error.details
        : r.status;
    if (Date.now() + PAUSE_MS >= deadline) {
      io.err(`${what} is not serving: ${why}${o.waitSeconds > 0 ? ` (waited ${o.waitSeconds} s)` : ''}`);
      return 1;
    }
    if (!told && o.waitSeconds > 0) {
      io.err(`waiting up to ${o.waitSeconds} s for ${what} …`);
      told = true;
    }
    await new Promise((r2) => setTimeout(r2, PAUSE_MS));
  }
}
