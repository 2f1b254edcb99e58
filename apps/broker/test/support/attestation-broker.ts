import type { TestBroker } from './broker';

/** The attestation service's base URL on a test broker's HTTP listener. */
export function serviceBase(t: TestBroker): string {
  const address = (t.broker as unknown as { httpAddress?: string }).httpAddress;
  if (!address) throw new Error('the broker has no HTTP listener');
  return `http://${address}/sev/v1`;
}
