/**
 * Two broker processes' worth of state on one PostgreSQL (two brokers, two stores, one database): a session made on
 * one is attested on the other and its resource fetched from the first; a nonce claimed by both at once is verified
 * by exactly one; a broker restarted on the same database keeps serving the sessions and tokens issued before.
 */
import { randomBytes } from 'node:crypto';
import type { Store } from '@kb/store';
import type { RunningBroker } from '../../src/broker';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ADMIN_TOKEN, MASTER_KEY, testDatabase } from '../support/broker';
import { spawnBroker, type BrokerProcess } from '../support/process';
import { sampleAttestation } from './support/client';
import { KbsTestClient, type Wire } from './support/kbs-client';
import { httpWire, startKbsBroker } from './support/http';

const SECRET = randomBytes(64);

describe('KBS sessions shared by brokers on one PostgreSQL (KB_TEST_DATABASE_URL)', () => {
  let db: Awaited<ReturnType<typeof testDatabase>>;
  let stores: Store[] = [];
  let brokers: RunningBroker[] = [];
  let a: Wire;
  let b: Wire;

  beforeAll(async () => {
    db = await testDatabase('pg');
    stores = [await db.open(), await db.open()];
    brokers = [await startKbsBroker(stores[0]!), await startKbsBroker(stores[1]!)];
    a = httpWire(brokers[0]!.httpAddress!);
    b = httpWire(brokers[1]!.httpAddress!);
    await stores[0]!.putKbsResource({ id: 'default/key/shared', bytes: SECRET });
  }, 120_000);
  afterAll(async () => {
    for (const x of brokers) await x.close();
    for (const s of stores) await s.close();
    await db?.drop();
  });

  it('auth on one broker, attest on the other, the resource from the first (cookie and Bearer)', async () => {
    const onA = new KbsTestClient(a);
    await onA.auth();
    const onB = new KbsTestClient(b, onA.key);
    onB.cookie = onA.cookie;
    onB.nonce = onA.nonce;
    expect((await onB.attest()).status).toBe(200);
    onA.token = onB.token;
    const viaCookie = await onA.resource('default/key/shared');
    expect(viaCookie.status).toBe(200);
    expect(onA.decrypt(viaCookie.body).equals(SECRET)).toBe(true);
    expect(onA.decrypt((await onA.resource('default/key/shared', 'bearer')).body).equals(SECRET)).toBe(true);
  });

  it('the same attestation sent to both brokers at once: exactly one token', async () => {
    for (let i = 0; i < 5; i++) {
      const c = new KbsTestClient(a);
      await c.auth();
      const body = JSON.stringify(sampleAttestation(c.nonce!, c.key.jwk));
      const [ra, rb] = await Promise.all([a, b].map((w) => w('POST', '/kbs/v0/attest', { body, cookie: c.cookie!, contentType: 'application/json' })));
      const statuses = [ra!.status, rb!.status].sort();
      // the loser sees either the winner's token (already attested: same token) or, while the winner is still
      // verifying, a refusal; never a second, different token
      if (statuses[0] === 200 && statuses[1] === 200) expect(JSON.parse(ra!.body).token).toBe(JSON.parse(rb!.body).token);
      else expect(statuses).toEqual([200, 401]);
    }
  });

  it('a broker restarted on the database serves the sessions and tokens issued before', async () => {
    const c = new KbsTestClient(a);
    await c.auth();
    await c.attest();
    await brokers[0]!.close();
    brokers[0] = await startKbsBroker(stores[0]!);
    const again = new KbsTestClient(httpWire(brokers[0]!.httpAddress!), c.key);
    again.cookie = c.cookie;
    again.token = c.token;
    expect(again.decrypt((await again.resource('default/key/shared')).body).equals(SECRET)).toBe(true);
    expect((await again.resource('default/key/shared', 'bearer')).status).toBe(200);
  });

  it('two broker processes: a session made on one is consumed on the other', async () => {
    const dirs = [mkdtempSync(join(tmpdir(), 'kb-kbs-')), mkdtempSync(join(tmpdir(), 'kb-kbs-'))];
    const env = { KB_DATABASE_URL: db.url, KB_MASTER_KEY: MASTER_KEY.toString('base64'), KB_ADMIN_TOKEN: ADMIN_TOKEN, KB_KBS_SAMPLE_TEE: '1' };
    const procs: BrokerProcess[] = [];
    try {
      for (const dir of dirs)
        procs.push(await spawnBroker(['--listen', '127.0.0.1:0', '--admin-listen', '127.0.0.1:0', '--http-listen', '127.0.0.1:0', '--data-dir', dir], env));
      const [p, q] = procs.map((x) => httpWire(x.httpAddress!));
      const c = new KbsTestClient(p!);
      await c.auth();
      const other = new KbsTestClient(q!, c.key);
      Object.assign(other, { cookie: c.cookie, nonce: c.nonce });
      expect((await other.attest()).status).toBe(200);
      const got = await c.resource('default/key/shared');
      expect(got.status).toBe(200);
      expect(c.decrypt(got.body).equals(SECRET)).toBe(true);
      // a repeated /attest on the first process gets the token the second issued (the session is shared)
      const again = await c.attest();
      expect(JSON.parse(again.body).token).toBe(other.token);
      // the spent nonce replayed in a new session on the first process is refused
      const fresh = new KbsTestClient(p!, c.key);
      await fresh.auth();
      expect((await fresh.attest(sampleAttestation(c.nonce!, c.key.jwk))).status).toBe(401);
    } finally {
      for (const x of procs) expect(await x.stop()).toBe(0);
      for (const d of dirs) rmSync(d, { recursive: true, force: true });
    }
  }, 120_000);
});
