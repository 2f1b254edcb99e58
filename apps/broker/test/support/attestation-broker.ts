import type { TestBroker } from './broker';

/** The attestation service's base URL on a test broker's HTTP listener. */
export function serviceBase(t: TestBroker): string {
  if (!t.broker.httpAddress) throw new Error('the broker has no HTTP listener');
  return `http://${t.broker.httpAddress}/sev/v1`;
}
