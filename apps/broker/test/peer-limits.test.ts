import { connect as h2connect, type ClientHttp2Session } from 'node:http2';
import { connect as tcpConnect, type Socket } from 'node:net';
import type { Store } from '@kb/store';
import { policyFor, startTestBroker, testDatabase, type TestBroker } from './support/broker';
import { expectedDigest, simulatedLaunch } from './support/host';
import { sleep } from './support/wait';

const KEY = [{ Guid: '736869e5-84f0-4973-92ec-06879ce3da0b', Format: 'binary', SecretType: 'key', Id: 'default/key/disk' }];
const IDLE_S = 1;
const ARRIVAL_S = 0.6;
const PER_PEER = 4;
const OVERALL = 6;

/**
 * Bounded resources on the guest-facing port (peer-limits.ts), seen from raw TCP and HTTP/2 clients on loopback: idle
 * connections are closed, connections over the per-peer and overall caps are refused while other peers are served, a
 * request that never finishes arriving is answered DEADLINE_EXCEEDED and its stream closed — and launches still work.
 * Other loopback addresses (127.0.0.2, 127.0.0.3) play other peers.
 */
describe('bounded resources per peer on the guest-facing port', () => {
  let db: Awaited<ReturnType<typeof testDatabase>>;
  let store: Store;
  let t: TestBroker;
  let port: number;
  const opened: { destroy(): void }[] = [];

  beforeAll(async () => {
    db = await testDatabase('pglite');
    store = await db.open();
    t = await startTestBroker(store, {
      idleTimeoutSeconds: IDLE_S,
      requestArrivalTimeoutSeconds: ARRIVAL_S,
      maxConnectionsPerPeer: PER_PEER,
      maxConnections: OVERALL,
      maxConnectionAgeSeconds: 0,
    });
    port = Number(t.broker.address.split(':').pop());
    await t.owner.call('putPolicy', { name: 'default', document_json: policyFor([expectedDigest(0x1)]) });
    await t.owner.call('putSecret', { id: 'default/key/disk', value: Buffer.from('disk passphrase'), policy_name: '' });
  }, 120_000);

  afterEach(() => {
    for (const o of opened.splice(0)) o.destroy();
  });

  afterAll(async () => {
    await t?.close();
    await store?.close();
    await db?.drop();
  });

  /** A raw TCP connection from `from`: 'admitted' once the server's HTTP/2 SETTINGS arrive, 'refused' if closed first. */
  function tcp(from = '127.0.0.1'): Promise<{ socket: Socket; fate: 'admitted' | 'refused'; closed: Promise<number> }> {
    return new Promise((resolve) => {
      const socket = tcpConnect({ host: '127.0.0.1', port, localAddress: from });
      opened.push(socket);
      const closed = new Promise<number>((done) => socket.once('close', () => done(performance.now())));
      socket.on('error', () => undefined);
      socket.once('data', () => resolve({ socket, fate: 'admitted', closed }));
      void closed.then(() => resolve({ socket, fate: 'refused', closed }));
    });
  }

  function h2(from = '127.0.0.1'): ClientHttp2Session {
    const session = h2connect(`http://127.0.0.1:${port}`, { createConnection: () => tcpConnect({ host: '127.0.0.1', port, localAddress: from }) });
    session.on('error', () => undefined);
    opened.push(session);
    return session;
  }

  /** One gRPC health check over a raw HTTP/2 session: the grpc-status it ends with. */
  function healthCheck(session: ClientHttp2Session): Promise<string | undefined> {
    return new Promise((resolve) => {
      const stream = session.request({ ':method': 'POST', ':path': '/grpc.health.v1.Health/Check', 'content-type': 'application/grpc', te: 'trailers' });
      let grpcStatus: string | undefined;
      stream.on('response', (h) => (grpcStatus ??= h['grpc-status'] as string | undefined));
      stream.on('trailers', (h) => (grpcStatus = h['grpc-status'] as string | undefined));
      stream.on('error', () => undefined);
      stream.on('close', () => resolve(grpcStatus));
      stream.resume();
      stream.end(Buffer.from([0, 0, 0, 0, 0])); // an empty HealthCheckRequest
    });
  }

  it('idle connections (raw TCP that never speaks, and HTTP/2 sessions after their last call) are closed after --idle-timeout', async () => {
    const started = performance.now();
    const raw = await Promise.all([tcp(), tcp()]);
    const sessions = [h2(), h2()];
    expect(await Promise.all(sessions.map(healthCheck))).toEqual(['0', '0']);
    expect(raw.map((r) => r.fate)).toEqual(['admitted', 'admitted']);
    const sessionsClosed = sessions.map((s) => new Promise<number>((done) => s.once('close', () => done(performance.now()))));
    const closedAt = await Promise.race([
      Promise.all([...raw.map((r) => r.closed), ...sessionsClosed]),
      new Promise((r) => setTimeout(r, IDLE_S * 1000 + 8000, 'still open').unref()),
    ]);
    expect(closedAt).not.toBe('still open');
    // not before the idle timeout (minus a little: the timer starts at the server's accept)
    for (const at of closedAt as number[]) expect(at - started).toBeGreaterThan(IDLE_S * 1000 * 0.8);
  }, 30_000);

  it('over --max-connections-per-peer a connection is refused while other peers are served; over --max-connections everyone is', async () => {
    const mine = [];
    for (let i = 0; i < PER_PEER; i++) mine.push(await tcp('127.0.0.1'));
    expect(mine.map((c) => c.fate)).toEqual(Array(PER_PEER).fill('admitted'));
    expect((await tcp('127.0.0.1')).fate).toBe('refused');
    // another peer is served meanwhile (a real call)
    const other = h2('127.0.0.2');
    expect(await healthCheck(other)).toBe('0');
    // fill the overall cap from a third peer, then nobody gets in
    const third = [];
    for (let i = 0; i < OVERALL - PER_PEER - 1; i++) third.push(await tcp('127.0.0.3'));
    expect(third.map((c) => c.fate)).toEqual(Array(OVERALL - PER_PEER - 1).fill('admitted'));
    expect((await tcp('127.0.0.3')).fate).toBe('refused');
    expect((await tcp('127.0.0.4')).fate).toBe('refused');
    // once this peer's connections close, it is admitted again
    for (const c of mine) c.socket.destroy();
    await Promise.all(mine.map((c) => c.closed));
    await sleep(50);
    expect((await tcp('127.0.0.1')).fate).toBe('admitted');
  }, 30_000);

  it('a half-sent request (headers and part of the message, then nothing) is answered DEADLINE_EXCEEDED and its stream closed after --request-arrival-timeout', async () => {
    const session = h2();
    const results = await Promise.all(
      [0, 1, 2].map(
        () =>
          new Promise<{ grpcStatus?: string; message?: string; ms: number }>((resolve) => {
            const sent = performance.now();
            const stream = session.request({
              ':method': 'POST',
              ':path': '/keybroker.KeyBrokerService/GetBundle',
              'content-type': 'application/grpc',
              te: 'trailers',
            });
            let grpcStatus: string | undefined;
            let message: string | undefined;
            const take = (h: Record<string, unknown>) => {
              grpcStatus ??= h['grpc-status'] as string | undefined;
              message ??= h['grpc-message'] as string | undefined;
            };
            stream.on('response', take);
            stream.on('trailers', take);
            stream.on('error', () => undefined);
            stream.on('close', () => resolve({ grpcStatus, message: message && decodeURI(message), ms: performance.now() - sent }));
            stream.resume();
            // a frame announcing 1000 bytes, of which 10 are sent; the stream is never ended
            const header = Buffer.alloc(5);
            header.writeUInt32BE(1000, 1);
            stream.write(Buffer.concat([header, Buffer.alloc(10, 0x0a)]));
            // never ended by the client: only the server's reset closes it
            setTimeout(() => resolve({ grpcStatus: 'stream still open', ms: performance.now() - sent }), ARRIVAL_S * 1000 + 8000).unref();
          }),
      ),
    );
    for (const r of results) {
      expect({ grpcStatus: r.grpcStatus, message: r.message }).toEqual({ grpcStatus: '4', message: 'the request did not finish arriving in time' });
      expect(r.ms).toBeGreaterThan(ARRIVAL_S * 1000 * 0.9);
      expect(r.ms).toBeLessThan(ARRIVAL_S * 1000 + 5000);
    }
    // the session itself still serves
    expect(await healthCheck(session)).toBe('0');
  }, 30_000);

  it('a connection past --max-connection-age is sent GOAWAY and closed; a call in flight meanwhile still gets its answer', async () => {
    const aged = await startTestBroker(store, { maxConnectionAgeSeconds: 1, idleTimeoutSeconds: 0 });
    try {
      const agedPort = Number(aged.broker.address.split(':').pop());
      const session = h2connect(`http://127.0.0.1:${agedPort}`);
      session.on('error', () => undefined);
      opened.push(session);
      const started = performance.now();
      const goaway = new Promise<number>((done) => session.once('goaway', () => done(performance.now() - started)));
      const closed = new Promise<number>((done) => session.once('close', () => done(performance.now() - started)));
      expect(await healthCheck(session)).toBe('0');
      const [goawayMs, closedMs] = await Promise.all([goaway, closed]);
      // ±10 % jitter on the age (grpc-js)
      expect(goawayMs).toBeGreaterThan(850);
      expect(closedMs).toBeLessThan(10_000);
    } finally {
      await aged.close();
    }
  }, 30_000);

  it('normal traffic is unaffected: launches, and a request whose message arrives slowly but within the deadline', async () => {
    for (let i = 0; i < 3; i++) {
      const { secrets } = await simulatedLaunch(t.host, t.platform, { policy: 0x1, requests: KEY });
      expect(secrets[0]!.data.toString()).toBe('disk passphrase');
    }
    const session = h2();
    const slow = await new Promise<string | undefined>((resolve) => {
      const stream = session.request({ ':method': 'POST', ':path': '/grpc.health.v1.Health/Check', 'content-type': 'application/grpc', te: 'trailers' });
      let grpcStatus: string | undefined;
      stream.on('response', (h) => (grpcStatus ??= h['grpc-status'] as string | undefined));
      stream.on('trailers', (h) => (grpcStatus = h['grpc-status'] as string | undefined));
      stream.on('close', () => resolve(grpcStatus));
      stream.resume();
      stream.write(Buffer.from([0, 0, 0]));
      setTimeout(() => stream.end(Buffer.from([0, 0])), ARRIVAL_S * 1000 * 0.4);
    });
    expect(slow).toBe('0');
  }, 60_000);
});
