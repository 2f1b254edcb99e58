/**
 * The same simulated host as host.ts, launching through the attestation service (/sev/v1) instead of the simple-kbs
 * gRPC API: the VM registered once (the bench's firmware in the catalogue, its secret), then per launch /launch and
 * /validate over HTTP/1.1 keep-alive (Node's fetch and its global connection pool).
 */
import { createHash, randomUUID } from 'node:crypto';
import { platformChain, type SimulatedPlatform } from '@kb/sev-sim';
import { ADMIN_TOKEN, CALL_DEADLINE_MS, FIRMWARE, POLICY, SECRET_GUID, SECRET_VALUE } from './constants';

const CERT_SIZE = 0x824;

export class RestHost {
  readonly vm = randomUUID();
  private readonly launchBody: string;
  constructor(
    private readonly base: string,
    platform: SimulatedPlatform,
  ) {
    const chain = platformChain(platform);
    this.launchBody = JSON.stringify({ pdh: chain.subarray(0, CERT_SIZE).toString('base64'), 'cert-chain': chain.toString('base64') });
  }

  private async call(method: 'POST' | 'GET', path: string, body: string | Buffer, contentType: string, token?: string): Promise<Record<string, unknown>> {
    const headers: Record<string, string> = { 'content-type': contentType };
    if (token) headers.authorization = `Bearer ${token}`;
    const res = await fetch(`${this.base}${path}`, { method, body, headers, signal: AbortSignal.timeout(CALL_DEADLINE_MS) });
    const text = await res.text();
    if (res.status >= 300) throw new Error(`${method} ${path}: HTTP ${res.status} ${text}`);
    return text ? (JSON.parse(text) as Record<string, unknown>) : {};
  }

  /** Untimed: the firmware into the catalogue and the VM registered, as its owner does once. */
  async register(platform: SimulatedPlatform): Promise<void> {
    await this.call('POST', '/firmware', FIRMWARE, 'application/octet-stream', ADMIN_TOKEN);
    const reg = {
      scheme: 'amd-sev',
      'cloud-cert': platform.oca.raw.toString('base64'),
      policy: POLICY,
      'cpu-count': 1,
      'firmware-hashes': [createHash('sha256').update(FIRMWARE).digest('hex')],
      secrets: [{ guid: SECRET_GUID, data: SECRET_VALUE.toString('base64') }],
    };
    await this.call('POST', `/vm/${this.vm}`, JSON.stringify(reg), 'application/json', ADMIN_TOKEN);
  }

  launch(): Promise<{ session: string; 'owner-cert': string; 'launch-id': string }> {
    return this.call('POST', `/vm/${this.vm}/launch`, this.launchBody, 'application/json') as never;
  }

  validate(
    launchId: string,
    measurement: Buffer,
    fw: { apiMajor: number; apiMinor: number; build: number },
  ): Promise<{ 'secret-header': string; 'secret-table': string }> {
    const body = {
      'launch-id': launchId,
      'api-major': fw.apiMajor,
      'api-minor': fw.apiMinor,
      'build-id': fw.build,
      policy: POLICY,
      measurement: measurement.toString('base64'),
      'firmware-hash': FIRMWARE_SHA256,
      'cpu-count': 1,
    };
    return this.call('POST', `/vm/${this.vm}/validate`, JSON.stringify(body), 'application/json') as never;
  }
}

const FIRMWARE_SHA256 = createHash('sha256').update(FIRMWARE).digest('hex');
