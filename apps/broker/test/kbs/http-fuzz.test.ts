/**
 * Hostile input to every KBS message over real HTTP: random and mutated bodies, cookies, Authorization headers and
 * paths. Every answer is a 4xx with an ErrorInformation body and a reference; nothing is written but audit entries
 * (no session attested, no resource released, no release counted).
 */
import fc from 'fast-check';
import { randomBytes } from 'node:crypto';
import { openStore, PGLITE_MEMORY, type Store } from '@kb/store';
import type { RunningBroker } from '../../src/broker';
import { MASTER_KEY } from '../support/broker';
import { sampleAttestation, vector } from './support/client';
import { KbsTestClient, type Wire } from './support/kbs-client';
import { httpWire, startKbsBroker } from './support/http';

let store: Store;
let broker: RunningBroker;
let wire: Wire;

beforeAll(async () => {
  store = await openStore({ driver: 'pglite', dataDir: PGLITE_MEMORY, masterKey: MASTER_KEY });
  broker = await startKbsBroker(store);
  wire = httpWire(broker.httpAddress!);
  await store.putKbsResource({ id: 'default/key/fuzz', bytes: randomBytes(16) });
}, 60_000);
afterAll(async () => {
  await broker?.close();
  await store?.close();
});

const isErrorInformation = (r: { status: number; body: string }) => {
  expect(r.status).toBeGreaterThanOrEqual(400);
  expect(r.status).toBeLessThan(500);
  const b = JSON.parse(r.body) as Record<string, unknown>;
  expect(typeof b.type).toBe('string');
  expect(b.detail).toMatch(/\(ref [0-9a-f]+\)$/);
};

async function released(): Promise<number> {
  return (await store.listAudit({ limit: 10_000 })).filter((e) => e.event === 'kbs.resource' || e.event === 'kbs.attest').length;
}

const transcript = vector('derived/rcar-sample-transcript.json');
const goodAttest = (nonce: string, jwk: Record<string, string>) => JSON.stringify(sampleAttestation(nonce, jwk));

/** Mutations of a JSON text: random bytes, truncation, a member dropped, retyped or replaced. */
function mutations(text: string): fc.Arbitrary<string> {
  const paths = (v: unknown, at: string[] = []): string[][] =>
    v && typeof v === 'object' ? Object.entries(v).flatMap(([k, x]) => [[...at, k], ...paths(x, [...at, k])]) : [];
  const all = paths(JSON.parse(text));
  const values = fc.oneof(
    fc.constant(null),
    fc.integer(),
    fc.string(),
    fc.constant([]),
    fc.constant({}),
    fc.double(),
    fc.boolean(),
    fc.string({ unit: 'binary' }),
  );
  return fc.oneof(
    fc.string({ unit: 'binary', maxLength: 200 }),
    fc.nat(text.length).map((n) => text.slice(0, n)),
    fc.tuple(fc.constantFrom(...all), values, fc.boolean()).map(([p, v, drop]) => {
      const o = JSON.parse(text);
      let cur = o;
      for (const k of p.slice(0, -1)) cur = cur[k];
      if (drop) delete cur[p[p.length - 1]!];
      else cur[p[p.length - 1]!] = v;
      return JSON.stringify(o);
    }),
  );
}

it('auth: mutated Request bodies are 4xx ErrorInformation unless well-formed (0.4.0, sample)', async () => {
  await fc.assert(
    fc.asyncProperty(mutations(transcript.auth_request_body), async (body) => {
      const r = await wire('POST', '/kbs/v0/auth', { body, contentType: 'application/json' });
      if (r.status === 200) {
        // only a well-formed request may pass (extra-params is any JSON, other members ignored)
        const o = JSON.parse(body);
        expect(o.version).toMatch(/^0\.4\.0(\+.*)?$/);
        expect(o.tee).toBe('sample');
      } else isErrorInformation(r);
    }),
    { numRuns: 150 },
  );
});

it('attest: mutated Attestation bodies never attest, and nothing is released', async () => {
  const before = await released();
  const c = new KbsTestClient(wire);
  await c.auth();
  const good = goodAttest(c.nonce!, c.key.jwk);
  await fc.assert(
    fc.asyncProperty(mutations(good), async (body) => {
      if (body === good) return;
      const fresh = new KbsTestClient(wire, c.key);
      await fresh.auth();
      // the mutation names the first session's nonce, so even a structurally valid one fails the binding
      const r = await fresh.attest(body);
      isErrorInformation(r);
    }),
    { numRuns: 120 },
  );
  expect(await released()).toBe(before);
});

it('resource: random cookies, Authorization headers and paths are 4xx and release nothing', async () => {
  const before = await released();
  await fc.assert(
    fc.asyncProperty(
      fc.oneof(
        fc.constant('default/key/fuzz'),
        fc.string({ maxLength: 60 }).map((s) => encodeURIComponent(s)),
        fc.array(fc.stringMatching(/^[A-Za-z0-9_.-]{0,8}$/), { maxLength: 5 }).map((a) => a.join('/')),
      ),
      fc.option(
        fc.oneof(
          fc.stringMatching(/^[0-9a-f]{32}$/),
          fc.string({ maxLength: 80 }).filter((s) => /^[\x21-\x7e]*$/.test(s) && !s.includes(';')),
        ),
      ),
      fc.option(
        fc.oneof(
          fc.string({ maxLength: 100 }).filter((s) => /^[\x20-\x7e]*$/.test(s)),
          fc.base64String().map((s) => `Bearer ${s}.${s}.${s}`),
        ),
      ),
      async (path, cookie, auth) => {
        const r = await wire('GET', `/kbs/v0/resource/${path}`, {
          ...(cookie !== null ? { cookie: `kbs-session-id=${cookie}` } : {}),
          ...(auth !== null ? { authorization: auth } : {}),
        });
        isErrorInformation(r);
      },
    ),
    { numRuns: 150 },
  );
  expect(await released()).toBe(before);
});

it('oversized and non-JSON bodies, other methods and paths: 4xx ErrorInformation', async () => {
  for (const [method, path, body] of [
    ['POST', '/kbs/v0/auth', Buffer.alloc(2 * 1024 * 1024, 0x20)],
    ['POST', '/kbs/v0/attest', Buffer.from([0xff, 0xfe, 0x00])],
    ['GET', '/kbs/v0/auth', undefined],
    ['POST', '/kbs/v0/resource/a/b/c', Buffer.from('x')],
    ['GET', '/kbs/v0/', undefined],
  ] as const) {
    const r = await wire(method, path, body === undefined ? {} : { body, contentType: 'application/octet-stream' });
    isErrorInformation(r);
  }
});
