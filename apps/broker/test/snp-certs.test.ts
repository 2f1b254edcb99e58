import { readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { parseSnpReport, verifySnpReport } from '@kb/sev';
import { createPlatform, loadSnpCa, SimulatedSnpAttestation, SimulatedSnpChip, SimulatedSnpFirmware, syntheticSnpCrl, syntheticSnpRoots } from '@kb/sev-sim';
import { openStore, PGLITE_MEMORY, type Store } from '@kb/store';
import {
  caKey,
  certificateSourceFor,
  classifySnpFiles,
  importSnpCertificates,
  KdsFetcher,
  offlineStoreSource,
  parseRetryAfter,
  SnpImportError,
  vcekKey,
} from '../src/snp-certs';
import { parseConfig, ConfigError } from '../src/config';
import { MASTER_KEY, startTestBroker } from './support/broker';

const KBS = join(__dirname, '../../../../shared/vectors/kbs-protocol/upstream/snp');
const FIXTURES = join(__dirname, '../../../libs/sev-sim/fixtures');
const pem = (der: Buffer) => `-----BEGIN CERTIFICATE-----\n${der.toString('base64').replace(/(.{64})/g, '$1\n')}\n-----END CERTIFICATE-----\n`;

// one PGlite for the file (opening one costs seconds); each test starts from an empty table
let store: Store;
beforeAll(async () => {
  store = await openStore({ driver: 'pglite', dataDir: PGLITE_MEMORY, masterKey: MASTER_KEY });
});
afterEach(async () => {
  for (const r of await store.listSnpCertificates()) await store.deleteSnpCertificate(r.key);
});
afterAll(() => store.close());

async function simulated() {
  const ca = await loadSnpCa({ name: 'sev-sim-snp', generation: 'genoa', dir: FIXTURES });
  const chip = new SimulatedSnpChip(ca);
  const fw = new SimulatedSnpFirmware(createPlatform({ name: 'sev-sim-snp' }));
  const h = fw.snpLaunchStart({ policy: 0x30000n });
  fw.snpLaunchFinish(h);
  const report = new SimulatedSnpAttestation(fw, chip).report(h, Buffer.alloc(64, 3));
  return { ca, chip, report };
}

describe('offline store: kbctl snp import-certs layout', () => {
  it('classifies real AMD files by content: a Milan VCEK per hwID and TCB, the ASK/ARK/ASVK bundle', async () => {
    const vcek = readFileSync(join(KBS, 'test-vcek-milan.der'));
    const items = await importSnpCertificates(store, [
      { name: 'vcek/x/vcek.der', data: vcek },
      { name: 'milan_ask_ark_asvk.pem', data: readFileSync(join(KBS, 'amd/milan_ask_ark_asvk.pem')) },
    ]);
    const report = parseSnpReport(readFileSync(join(KBS, 'test-report-milan-v2.bin')));
    const hw = report.chipId.toString('hex');
    expect(items.map((i) => i.key)).toEqual([
      vcekKey('Milan', hw, 'bl03_tee00_snp08_ucode115'),
      caKey('ask', 'Milan'),
      caKey('ark', 'Milan'),
      caKey('asvk', 'Milan'),
    ]);
    const src = offlineStoreSource(store);
    expect(await src.getVcek(report)).toEqual(vcek);
    expect((await src.getChain('Milan'))?.ark).toEqual(items[2]!.der);
    expect(await src.getChain('Genoa')).toBeUndefined();
    // another TCB of the same chip is another VCEK: not found
    const other = Buffer.from(report.raw);
    other[0x186] = 9; // REPORTED_TCB snp
    expect(await src.getVcek(other)).toBeUndefined();
  });

  it('a bad file is named and nothing is written', async () => {
    const vcek = readFileSync(join(KBS, 'test-vcek-milan.der'));
    await expect(
      importSnpCertificates(store, [
        { name: 'good.der', data: vcek },
        { name: 'junk.pem', data: Buffer.from('-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n') },
      ]),
    ).rejects.toThrow(SnpImportError);
    await expect(importSnpCertificates(store, [{ name: 'vlek.der', data: readFileSync(join(KBS, 'test-vlek-milan.der')) }])).rejects.toThrow(/VLEK/);
    expect(await store.listSnpCertificates()).toEqual([]);
  });

  it('the certificate source order: evidence, then store; verification with the synthetic roots', async () => {
    const { ca, chip, report } = await simulated();
    await importSnpCertificates(store, [{ name: 'vcek.pem', data: Buffer.from(pem(chip.vcek().der)) }]);
    const src = certificateSourceFor({ store });
    const vcek = await src.getVcek(report);
    expect(vcek).toEqual(chip.vcek().der);
    expect(verifySnpReport(report, { roots: syntheticSnpRoots(ca), certificates: { vcek: vcek! } }).ok).toBe(true);
    const fromEvidence = certificateSourceFor({ store, evidence: { vcek: Buffer.from('evidence') } });
    expect((await fromEvidence.getVcek(report))?.toString()).toBe('evidence');
  });
});

/** A local server that behaves like AMD's KDS: scripted answers per request. */
async function fakeKds(handler: (path: string, n: number) => { status: number; body?: Buffer | string; headers?: Record<string, string>; delayMs?: number }) {
  const seen: string[] = [];
  const server: Server = createServer((req, res) => {
    seen.push(req.url!);
    const a = handler(req.url!, seen.length);
    setTimeout(() => res.writeHead(a.status, a.headers ?? {}).end(a.body ?? ''), a.delayMs ?? 0);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    seen,
    close: () => new Promise<void>((r) => (server.closeAllConnections(), server.close(() => r()))),
  };
}

describe('KDS fetcher against a local KDS-like server', () => {
  it('builds the VCEK URL, caches the answer in the store, and never asks again for a known chip', async () => {
    const { chip, report } = await simulated();
    const kds = await fakeKds(() => ({ status: 200, body: chip.vcek().der }));
    const f = new KdsFetcher({ baseUrl: kds.url, cache: store });
    try {
      const got = await Promise.all([f.getVcek(report), f.getVcek(report), f.getVcek(report)]);
      expect(got.every((g) => g?.equals(chip.vcek().der))).toBe(true);
      expect(kds.seen).toEqual([`/vcek/v1/Genoa/${chip.hwIdHex}?blSPL=10&teeSPL=00&snpSPL=23&ucodeSPL=84`]);
      await kds.close();
      expect(await f.getVcek(report)).toEqual(chip.vcek().der);
      expect(f.requests).toBe(1);
      const row = await store.getSnpCertificate(vcekKey('Genoa', chip.hwIdHex, 'bl10_tee00_snp23_ucode84'));
      expect(row?.source).toBe('kds');
    } finally {
      f.close();
      await kds.close();
    }
  });

  it('429 with Retry-After: waits as told, then succeeds', async () => {
    const { chip, report } = await simulated();
    const kds = await fakeKds((_p, n) => (n === 1 ? { status: 429, headers: { 'retry-after': '1' } } : { status: 200, body: chip.vcek().der }));
    const f = new KdsFetcher({ baseUrl: kds.url, cache: store, backoffMs: [60_000] });
    try {
      const t0 = Date.now();
      expect(await f.getVcek(report)).toEqual(chip.vcek().der);
      expect(Date.now() - t0).toBeGreaterThanOrEqual(950);
      expect(kds.seen).toHaveLength(2);
    } finally {
      f.close();
      await kds.close();
    }
  });

  it('a slow KDS does not hold the attestation: it answers undefined at waitMs, the fetch fills the cache for the retry', async () => {
    const { chip, report } = await simulated();
    const kds = await fakeKds(() => ({ status: 200, body: chip.vcek().der, delayMs: 600 }));
    const f = new KdsFetcher({ baseUrl: kds.url, cache: store, waitMs: 100 });
    try {
      const t0 = Date.now();
      expect(await f.getVcek(report)).toBeUndefined();
      expect(Date.now() - t0).toBeLessThan(500);
      await new Promise((r) => setTimeout(r, 900));
      expect(await f.getVcek(report)).toEqual(chip.vcek().der);
      expect(kds.seen).toHaveLength(1);
    } finally {
      f.close();
      await kds.close();
    }
  });

  it('404 is remembered; a request timeout and 5xx back off within the deadline; a wrong answer is not cached', async () => {
    const { chip, report, ca } = await simulated();
    const kds404 = await fakeKds(() => ({ status: 404 }));
    const f404 = new KdsFetcher({ baseUrl: kds404.url, cache: store });
    expect(await f404.getVcek(report)).toBeUndefined();
    expect(await f404.getVcek(report)).toBeUndefined();
    expect(kds404.seen).toHaveLength(1);
    await kds404.close();

    const flaky = await fakeKds((_p, n) =>
      n === 1 ? { status: 200, body: chip.vcek().der, delayMs: 400 } : n === 2 ? { status: 503 } : { status: 200, body: chip.vcek().der },
    );
    const f = new KdsFetcher({ baseUrl: flaky.url, cache: store, requestTimeoutMs: 150, backoffMs: [50], waitMs: 5_000 });
    expect(await f.getVcek(report)).toEqual(chip.vcek().der);
    expect(flaky.seen).toHaveLength(3);
    f.close();
    await flaky.close();

    const other = new SimulatedSnpChip(ca);
    const liar = await fakeKds(() => ({ status: 200, body: other.vcek().der }));
    const { report: r2 } = await simulated();
    const fl = new KdsFetcher({ baseUrl: liar.url, cache: store });
    expect(await fl.getVcek(r2)).toBeUndefined();
    expect(await store.listSnpCertificates({ kind: 'vcek' })).toHaveLength(1);
    fl.close();
    await liar.close();
  });

  it('cert_chain: PEM ASK then ARK, cached per product; a 400 is not retried', async () => {
    const { ca } = await simulated();
    const kds = await fakeKds((p) => (p === '/vcek/v1/Genoa/cert_chain' ? { status: 200, body: pem(ca.ask.der) + pem(ca.ark.der) } : { status: 400 }));
    const f = new KdsFetcher({ baseUrl: kds.url, cache: store });
    try {
      const c = await f.getChain('Genoa');
      expect(c?.ask).toEqual(ca.ask.der);
      expect(c?.ark).toEqual(ca.ark.der);
      expect(await f.getChain('Genoa')).toBeDefined();
      expect(await f.getCrl('Genoa')).toBeUndefined();
      expect(kds.seen).toEqual(['/vcek/v1/Genoa/cert_chain', '/vcek/v1/Genoa/crl']);
    } finally {
      f.close();
      await kds.close();
    }
  });

  it('CRLs: imported and fetched ones are kept until nextUpdate, then fetched again', async () => {
    const { ca } = await simulated();
    const fresh = syntheticSnpCrl(ca);
    const items = await importSnpCertificates(store, [{ name: 'genoa.crl', data: fresh }]);
    expect(items.map((i) => [i.key, i.kind])).toEqual([['crl/Genoa', 'crl']]);
    expect(await offlineStoreSource(store).getCrl('Genoa')).toEqual(fresh);
    const old = syntheticSnpCrl(ca, { thisUpdate: new Date(Date.now() - 10 * 86_400_000), nextUpdate: new Date(Date.now() - 86_400_000) });
    await importSnpCertificates(store, [{ name: 'old.crl', data: old }]);
    expect(await offlineStoreSource(store).getCrl('Genoa')).toBeUndefined();
    const kds = await fakeKds(() => ({ status: 200, body: fresh }));
    const f = new KdsFetcher({ baseUrl: kds.url, cache: store });
    try {
      expect(await f.getCrl('Genoa')).toEqual(fresh);
      expect(await f.getCrl('Genoa')).toEqual(fresh);
      expect(kds.seen).toEqual(['/vcek/v1/Genoa/crl']);
      expect((await store.getSnpCertificate('crl/Genoa'))?.source).toBe('kds');
    } finally {
      f.close();
      await kds.close();
    }
  });

  it('Retry-After forms', () => {
    expect(parseRetryAfter('7')).toBe(7000);
    expect(parseRetryAfter(new Date(Date.now() + 5000).toUTCString())).toBeGreaterThan(3000);
    expect(parseRetryAfter('soon')).toBeUndefined();
    expect(classifySnpFiles([])).toEqual([]);
  });
});

describe('the broker: --snp-kds (off by default)', () => {
  it('parses the flag and refuses non-http URLs', () => {
    const base = ['--listen', '127.0.0.1:0', '--data-dir', '/x'];
    expect((parseConfig(base, {}) as { snpKdsUrl?: string }).snpKdsUrl).toBeUndefined();
    expect((parseConfig([...base, '--snp-kds', 'https://kdsintf.amd.com/'], {}) as { snpKdsUrl?: string }).snpKdsUrl).toBe('https://kdsintf.amd.com');
    expect((parseConfig(base, { KB_SNP_KDS: 'http://127.0.0.1:9' }) as { snpKdsUrl?: string }).snpKdsUrl).toBe('http://127.0.0.1:9');
    expect(() => parseConfig([...base, '--snp-kds', 'ftp://x'], {})).toThrow(ConfigError);
  });

  it("a running broker's certificate source: store first, then KDS only when enabled", async () => {
    const { chip, report } = await simulated();
    const kds = await fakeKds(() => ({ status: 200, body: chip.vcek().der }));
    const off = await startTestBroker(store);
    try {
      expect(await off.broker.snpCertificates().getVcek(report)).toBeUndefined();
    } finally {
      await off.close();
    }
    const on = await startTestBroker(store, { snpKdsUrl: kds.url });
    try {
      expect(await on.broker.snpCertificates().getVcek(report)).toEqual(chip.vcek().der);
      expect(kds.seen).toHaveLength(1);
      expect(await on.broker.snpCertificates({ vcek: Buffer.from('from evidence') }).getVcek(report)).toEqual(Buffer.from('from evidence'));
    } finally {
      await on.close();
      await kds.close();
    }
  });
});
