/** Real HTTP on loopback for the KBS tests: a broker process-in-test with the KBS API, and a fetch-based Wire. */
import type { Store } from '@kb/store';
import { startBroker, type RunningBroker } from '../../../src/broker';
import { silentLogger } from '../../../src/log';
import type { KbsApiOptions } from '../../../src/kbs/api';
import { testConfig } from '../../support/broker';
import type { Wire } from './kbs-client';

export async function startKbsBroker(store: Store, kbs: KbsApiOptions = {}, now?: () => Date): Promise<RunningBroker> {
  // the sample TEE on (test mode), the broker's own KBS API (http/apis.ts) with the test's options
  return startBroker(testConfig({ kbsSampleTee: true }), { store, logger: silentLogger, now, kbs });
}

export function httpWire(address: string): Wire {
  return async (method, path, o) => {
    const headers: Record<string, string> = {};
    if (o.cookie) headers.cookie = o.cookie;
    if (o.authorization) headers.authorization = o.authorization;
    if (o.contentType) headers['content-type'] = o.contentType;
    const res = await fetch(`http://${address}${path}`, { method, headers, ...(o.body !== undefined ? { body: o.body } : {}) });
    const out: Record<string, string | undefined> = {};
    res.headers.forEach((v, k) => (out[k] = v));
    return { status: res.status, headers: out, body: await res.text() };
  };
}
