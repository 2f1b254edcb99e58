/**
 * Two broker processes' worth of state on one PostgreSQL (two brokers, two stores, one database): a session made on
 * one is attested on the other and its resource fetched from the first; a nonce claimed by both at once is verified
 * by exactly one; a broker restarted on the same database keeps serving the sessions and tokens issued before.
 */
import { randomBytes } from 'node:crypto';
import type { Store } from '@kb/store';
import type { RunningBroker } from '../../src/broker';
import { testDatabase } from '../support/broker';
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
});
