import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { status } from '@grpc/grpc-js';
import { platformRoot } from '@kb/sev-sim';
import { startBroker } from '../src/broker';
import { createLogger, REDACTED_FIELDS } from '../src/log';
import { ADMIN_TOKEN, MASTER_KEY, policyFor, testConfig, testDatabase, testPlatform } from './support/broker';
import { failure, HostClient, OwnerClient } from './support/grpc';
import { expectedDigest, prepareLaunch, simulatedLaunch } from './support/host';
import { spawnBroker } from './support/process';
import { scrape, value } from './support/prometheus';

type Line = Record<string, unknown>;
const capture = (level: Parameters<typeof createLogger>[0] = 'debug') => {
  const raw: string[] = [];
  return { raw, lines: () => raw.map((l) => JSON.parse(l) as Line), logger: createLogger(level, (l) => raw.push(l)) };
};

describe('the structured logger (pino)', () => {
  it('writes one JSON object per line: level name, ISO time, message and the fields at the top level', () => {
    const { raw, lines, logger } = capture('info');
    logger.info('broker listening', { keybroker: '127.0.0.1:1', tls: false });
    expect(raw).toHaveLength(1);
    expect(raw[0]).not.toContain('\n');
    const [l] = lines();
    expect(l).toMatchObject({ level: 'info', msg: 'broker listening', keybroker: '127.0.0.1:1', tls: false, pid: process.pid });
    expect(new Date(l!.t as string).toISOString()).toBe(l!.t);
    // the message before the event's fields, as people read and grep the lines
    expect(Object.keys(l!)).toEqual(['level', 't', 'pid', 'hostname', 'msg', 'keybroker', 'tls']);
  });

  it('drops lines below its level', () => {
    const { lines, logger } = capture('warn');
    logger.debug('d');
    logger.info('i');
    logger.warn('w');
    logger.error('e');
    expect(lines().map((l) => [l.level, l.msg])).toEqual([
      ['warn', 'w'],
      ['error', 'e'],
    ]);
  });

  it('redacts secret-named fields, at the top level and one object down, whatever their value', () => {
    const { raw, lines, logger } = capture();
    const secret = 'S3CRET-' + MASTER_KEY.toString('hex');
    const fields = Object.fromEntries(REDACTED_FIELDS.map((f) => [f, secret]));
    logger.error('careless', { ...fields, detail: { ...fields, ok: 'kept' }, list: 'kept too' });
    expect(raw.join('\n')).not.toContain('S3CRET');
    const [l] = lines();
    for (const f of REDACTED_FIELDS) {
      expect(l![f]).toBe('[redacted]');
      expect((l!.detail as Line)[f]).toBe('[redacted]');
    }
    expect(l).toMatchObject({ detail: { ok: 'kept' }, list: 'kept too' });
  });
});

describe('what a running broker logs never holds a token, a secret or a key', () => {
  it('a release, a refusal and a refused admin call: the reasons are there, the secrets are not', async () => {
    const db = await testDatabase('pglite');
    const store = await db.open();
    const { raw, lines, logger } = capture('debug');
    const broker = await startBroker(testConfig(), { store, logger, extraRoots: [platformRoot(testPlatform())] });
    const host = new HostClient(broker.address);
    const owner = new OwnerClient(broker.adminAddress, ADMIN_TOKEN);
    const intruder = new OwnerClient(broker.adminAddress, 'wrong-token-but-long-enough-0123');
    const KEY = [{ Guid: '0b6f2c0e-3f5e-4c1a-9d55-7f1d2a9b8c41', Format: 'binary', SecretType: 'key', Id: 'log/key/disk' }];
    const passphrase = 'correct horse battery staple';
    try {
      await owner.call('putPolicy', { name: 'default', document_json: policyFor([expectedDigest(0x1)]) });
      await owner.call('putSecret', { id: 'log/key/disk', value: Buffer.from(passphrase), policy_name: '' });
      const { bundle } = await simulatedLaunch(host, testPlatform(), { policy: 0x1, requests: KEY });
      const wrong = await prepareLaunch(host, testPlatform(), { policy: 0x1, requests: KEY, firmware: Buffer.alloc(32 * 1024) });
      expect((await failure(host.getSecret(wrong.request))).code).toBe(status.PERMISSION_DENIED);
      expect((await failure(intruder.call('listPolicies', { prefix: '', page_size: 0, page_token: '' }))).code).toBe(status.UNAUTHENTICATED);

      const text = raw.join('\n');
      for (const leak of [
        ADMIN_TOKEN,
        'wrong-token-but-long-enough-0123',
        passphrase,
        Buffer.from(passphrase).toString('base64'),
        MASTER_KEY.toString('base64'),
        bundle.LaunchBlob,
        bundle.GuestOwnerPublicKey,
      ]) {
        expect(text).not.toContain(leak);
      }
      // ...while the operator still learns what happened
      expect(lines()).toEqual(
        expect.arrayContaining([
          expect.objectContaining({ level: 'info', msg: 'GetSecret failed', class: 'denied', reason: expect.any(String), ref: expect.any(String) }),
          expect.objectContaining({ level: 'warn', msg: 'admin call refused: bad or missing token' }),
        ]),
      );
    } finally {
      host.close();
      owner.close();
      intruder.close();
      await broker.close();
      await store.close();
    }
  });
});

/** A loopback port free a moment ago (the broker binds it right after). */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}

describe('kb-broker as a process', () => {
  it('logs JSON lines on stderr, takes KB_METRICS_LISTEN from the environment, and serves metrics there', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'kb-log-'));
    try {
      const metricsAt = `127.0.0.1:${await freePort()}`;
      const proc = await spawnBroker(['--listen', '127.0.0.1:0', '--admin-listen', '127.0.0.1:0', '--http-listen', '127.0.0.1:0', '--data-dir', dir], {
        KB_METRICS_LISTEN: metricsAt,
      });
      let stderr = '';
      proc.child.stderr!.on('data', (c: Buffer) => (stderr += c.toString()));
      const token = readFileSync(join(dir, 'admin.token'), 'utf8').trim();
      try {
        const owner = new OwnerClient(proc.adminAddress, token);
        await owner.call('listPolicies', { prefix: '', page_size: 0, page_token: '' });
        owner.close();
        const samples = await scrape(metricsAt);
        expect(value(samples, 'kb_rpc_requests_total', { api: 'admin', method: '/kb.admin.v1.BrokerAdmin/ListPolicies', code: 'OK' })).toBe(1);
        expect(value(samples, 'kb_process_resident_memory_bytes')).toBeGreaterThan(0);
      } finally {
        expect(await proc.stop()).toBe(0);
      }
      const lines = stderr.split('\n').filter(Boolean);
      const notJson = lines.filter((l) => {
        try {
          JSON.parse(l);
          return false;
        } catch {
          return true;
        }
      });
      expect(notJson).toEqual([]);
      expect(stderr).not.toContain(token);
      expect(lines.map((l) => (JSON.parse(l) as Line).msg)).toContain('shutting down');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 90_000);
});
