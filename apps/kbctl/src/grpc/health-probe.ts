import { status, type Client, type ServiceError } from '@grpc/grpc-js';

/**
 * grpc.health.v1.Health/Check, encoded by hand: the request is one string field and the answer one enum field, so
 * this needs no .proto file or loader (github.com/grpc/grpc/blob/master/doc/health-checking.md).
 */
const STATUS_NAMES = ['UNKNOWN', 'SERVING', 'NOT_SERVING', 'SERVICE_UNKNOWN'] as const;

/** HealthCheckRequest { string service = 1; } */
function encodeRequest(service: string): Buffer {
  const name = Buffer.from(service, 'utf8');
  if (name.length === 0) return Buffer.alloc(0);
  if (name.length > 127) throw new RangeError('service name too long');
  return Buffer.concat([Buffer.from([0x0a, name.length]), name]);
}

/** HealthCheckResponse { ServingStatus status = 1; } (absent field: UNKNOWN) */
function decodeResponse(bytes: Buffer): string {
  let value = 0;
  for (let i = 0; i < bytes.length;) {
    const tag = bytes[i++]!;
    if (tag === 0x08) {
      let shift = 0;
      value = 0;
      for (;;) {
        const b = bytes[i++];
        if (b === undefined) throw new Error('truncated health answer');
        value |= (b & 0x7f) << shift;
        if ((b & 0x80) === 0) break;
        shift += 7;
      }
    } else {
      throw new Error(`unexpected field in the health answer (tag ${tag})`);
    }
  }
  return STATUS_NAMES[value] ?? `status ${value}`;
}

export type Probe = { status: string } | { status: 'UNREACHABLE' | 'ERROR'; error: ServiceError };

/** One Check call on `client`'s channel; `service` '' asks about the server as a whole. */
export function probeHealth(client: Client, service: string, timeoutMs: number): Promise<Probe> {
  return new Promise((done) => {
    client.makeUnaryRequest('/grpc.health.v1.Health/Check', encodeRequest, decodeResponse, service, { deadline: Date.now() + timeoutMs }, (err, res) => {
      if (err) {
        if (err.code === status.NOT_FOUND) return done({ status: 'SERVICE_UNKNOWN' });
        return done({ status: err.code === status.UNAVAILABLE || err.code === status.DEADLINE_EXCEEDED ? 'UNREACHABLE' : 'ERROR', error: err });
      }
      done({ status: res ?? 'UNKNOWN' });
    });
  });
}

/**
 * grpc-js's UNAVAILABLE details ("No connection established. Last error: connect ECONNREFUSED 1.2.3.4:5 (time)",
 * "Name resolution failed for target dns:x … Resolution note: …") in the user's terms.
 */
export function describeUnreachable(details: string, refusedHint: string): string {
  const code = /\b(ECONNREFUSED|ENOTFOUND|EAI_AGAIN|ETIMEDOUT|EHOSTUNREACH|ENETUNREACH|ECONNRESET)\b/.exec(details)?.[1];
  if (code === 'ECONNREFUSED') return `connection refused: ${refusedHint}`;
  if (code === 'ENOTFOUND' || code === 'EAI_AGAIN' || /Name resolution failed/i.test(details)) return 'the host name does not resolve';
  if (code === 'ETIMEDOUT') return 'the connection timed out';
  if (code === 'EHOSTUNREACH' || code === 'ENETUNREACH') return 'no route to that host';
  if (code === 'ECONNRESET') return 'the connection was reset (TLS on one side only?)';
  if (/SSL|TLS|certificate|handshake/i.test(details)) return 'the TLS handshake failed (check --tls-ca, and whether the broker serves TLS)';
  // Anything else: its first sentence, without grpc-js's notes and timestamps.
  const first = details
    .replace(/Resolution note:.*$/s, '')
    .replace(/\s*\(\d{4}-\d\d-\d\dT[^)]*\)/g, '')
    .split(/\.\s/)[0]!
    .trim();
  return first || 'unavailable';
}
