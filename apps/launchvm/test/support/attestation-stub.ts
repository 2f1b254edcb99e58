import { randomBytes, randomUUID } from 'node:crypto';
import { createServer as createHttpServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { buildSecretTable, launchDigest, packageSecret, parseSevCertificate, startSession, verifyMeasurement, type VcpuSpec } from '@kb/sev';

/**
 * A MINIMAL STAND-IN for the broker's attestation service (issue #15), for launchvm's client tests only, until the
 * broker side is on main: it speaks the contract's wire (paths, field names, error shape) and does the real SEV
 * crypto (@kb/sev: session from the host's PDH, measurement check, LAUNCH_SECRET packet), so the simulated host
 * really boots with the secrets. It is NOT the service: no owner API, no OCA check, no persistence, no audit.
 * Every request body is recorded so tests can assert the exact JSON launchvm sends.
 */
export interface StubVm {
  policy: number;
  firmware: Buffer;
  kernelHashes?: { kernel: Buffer; initrd?: Buffer; cmdline?: string };
  vcpus?: number;
  vcpu?: VcpuSpec;
  secrets: { guid: string; data: Buffer }[];
}

export interface StubRequest {
  method: string;
  path: string;
  body: unknown;
}

export interface AttestationStub {
  /** base URL, e.g. http://127.0.0.1:PORT/sev/v1 */
  service: string;
  vms: Map<string, StubVm>;
  requests: StubRequest[];
  stop(): Promise<void>;
}

export async function startAttestationStub(tls?: { key: string; cert: string }): Promise<AttestationStub> {
  const vms = new Map<string, StubVm>();
  const requests: StubRequest[] = [];
  const sessions = new Map<string, { vmid: string; tek: Buffer; tik: Buffer; policy: number }>();
  let refs = 0;
  const refuse = (res: ServerResponse, status: number, error: string, message: string) => {
    const ref = `stub${++refs}`;
    send(res, status, { error, message: `${message} (ref ${ref})`, ref });
  };
  const handler = (req: IncomingMessage, res: ServerResponse) => {
    const parts: Buffer[] = [];
    req.on('data', (c: Buffer) => parts.push(c));
    req.on('end', () => {
      let body: unknown;
      try {
        body = JSON.parse(Buffer.concat(parts).toString('utf8'));
      } catch {
        return refuse(res, 400, 'bad-request', 'the body is not JSON');
      }
      const path = req.url ?? '';
      requests.push({ method: req.method ?? '', path, body });
      const m = /^\/sev\/v1\/vm\/([0-9a-f-]{36})\/(launch|validate)$/.exec(path);
      if (!m || req.method !== 'POST') return refuse(res, 404, 'not-found', 'no such endpoint');
      const vm = vms.get(m[1]!);
      if (!vm) return refuse(res, 404, 'not-found', 'launch refused');
      const b = body as Record<string, unknown>;
      if (m[2] === 'launch') {
        const s = startSession({ pdh: parseSevCertificate(Buffer.from(String(b.pdh), 'base64')), policy: vm.policy });
        const launchId = randomUUID();
        sessions.set(launchId, { vmid: m[1]!, tek: s.tek, tik: s.tik, policy: vm.policy });
        return send(res, 200, {
          session: s.launchBlob.toString('base64'),
          'owner-cert': s.godhCert.toString('base64'),
          policy: vm.policy,
          'launch-id': launchId,
        });
      }
      const session = sessions.get(String(b['launch-id']));
      sessions.delete(String(b['launch-id'])); // consumed once, as the service does
      if (!session || session.vmid !== m[1]) return refuse(res, 403, 'attestation-failed', 'attestation failed');
      const digest = vm.vcpu
        ? launchDigest({ mode: 'seves', firmware: vm.firmware, kernelHashes: vm.kernelHashes, vcpus: vm.vcpus ?? 1, vcpu: vm.vcpu })
        : launchDigest({ mode: 'sev', firmware: vm.firmware, kernelHashes: vm.kernelHashes });
      let measure: Buffer;
      try {
        measure = verifyMeasurement({
          tik: session.tik,
          apiMajor: Number(b['api-major']),
          apiMinor: Number(b['api-minor']),
          build: Number(b['build-id']),
          policy: session.policy,
          digest,
          measurement: Buffer.from(String(b.measurement), 'base64'),
        });
      } catch {
        return refuse(res, 403, 'attestation-failed', 'attestation failed');
      }
      const packet = packageSecret({ tek: session.tek, tik: session.tik, measure, data: buildSecretTable(vm.secrets), iv: randomBytes(16) });
      send(res, 200, { 'secret-header': packet.header.toString('base64'), 'secret-table': packet.data.toString('base64') });
    });
  };
  const server: Server = tls ? createHttpsServer(tls, handler) : createHttpServer(handler);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as { port: number }).port;
  return {
    service: `${tls ? 'https' : 'http'}://127.0.0.1:${port}/sev/v1`,
    vms,
    requests,
    stop: () => new Promise<void>((r) => server.close(() => r())),
  };
}

function send(res: ServerResponse, status: number, body: object): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}
