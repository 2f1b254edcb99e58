import type { SnpCertificateInput, SnpCertificateStore } from '@kb/store';
import { classifySnpFiles, caKey, vcekKey } from './offline-store';
import { asReport, tcbPrefix, vcekIds, type CertificateSource, type SnpProduct, type VcekId } from './source';

/**
 * (c) AMD's Key Distribution Service (../shared/specs/snp-attestation.md §4.1–§4.4), only when the operator enables
 * it (`--snp-kds URL`; off by default). Rules:
 *  - every answer is cached in the store (source `kds`): a VCEK never changes for (product, hwID, TCB); the chain per
 *    product; a CRL until its nextUpdate. A chip whose VCEK is cached never waits for KDS again;
 *  - one in-flight request per URL, shared by concurrent attestations;
 *  - KDS throttles (§4.3): 429 and 5xx are transient — honour Retry-After (seconds or HTTP date) when present, else
 *    back off 10 s, 20 s, 30 s (capped), within a total deadline; 404 means "no such chip/product" (remembered for a
 *    while, and the next product is tried for v2 reports); other 4xx are not retried;
 *  - off the critical path: an attestation waits at most `waitMs` for an answer it does not have; the fetch goes on in
 *    the background and fills the cache, so the guest's retry (clients re-attest on 401) succeeds.
 * Answers are untrusted bytes: they are cached only when they parse as what was asked for, and the verifier checks
 * the chain to the pinned roots every time.
 */
export interface KdsOptions {
  /** e.g. https://kdsintf.amd.com (tests: a local server) */
  baseUrl: string;
  cache: Pick<SnpCertificateStore, 'getSnpCertificate' | 'putSnpCertificate'>;
  /** per HTTP request (default 10 s) */
  requestTimeoutMs?: number;
  /** how long one attestation waits for an uncached answer (default 5 s) */
  waitMs?: number;
  /** total time a fetch keeps retrying transient failures (default 120 s) */
  retryDeadlineMs?: number;
  /** back-off without Retry-After (default 10 s, 20 s, 30 s, then 30 s) */
  backoffMs?: readonly number[];
  /** how long a 404 is remembered (default 10 min) */
  notFoundTtlMs?: number;
  log?: (msg: string) => void;
}

export type KdsOutcome = { ok: true; body: Buffer } | { ok: false; reason: 'not-found' | 'refused' | 'deadline' };

export class KdsFetcher implements CertificateSource {
  private readonly base: string;
  private readonly inflight = new Map<string, Promise<KdsOutcome>>();
  private readonly notFound = new Map<string, number>();
  /** KDS-wide: after a 429 nobody asks before this time */
  private blockedUntil = 0;
  private readonly timers = new Set<{ t: NodeJS.Timeout; done: () => void }>();
  private closed = false;
  /** requests actually sent (tests and metrics) */
  requests = 0;

  constructor(private readonly o: KdsOptions) {
    const u = new URL(o.baseUrl);
    if (u.protocol !== 'https:' && u.protocol !== 'http:') throw new Error(`--snp-kds: ${o.baseUrl} is not an http(s) URL`);
    this.base = o.baseUrl.replace(/\/+$/, '');
  }

  /** Stops waiting and retrying (broker shutdown); in-flight fetches end with `deadline`. */
  close(): void {
    this.closed = true;
    for (const x of this.timers) {
      clearTimeout(x.t);
      x.done();
    }
    this.timers.clear();
  }

  vcekUrl(id: VcekId): string {
    const t = id.tcb;
    const two = (n: number | undefined) => String(n ?? 0).padStart(2, '0');
    // Turin: fmcSPL first (§4.2); two-digit decimal values
    const q = `${id.product === 'Turin' ? `fmcSPL=${two(t.fmc)}&` : ''}blSPL=${two(t.bootloader)}&teeSPL=${two(t.tee)}&snpSPL=${two(t.snp)}&ucodeSPL=${two(t.microcode)}`;
    return `${this.base}/vcek/v1/${id.product}/${id.hwId}?${q}`;
  }

  async getVcek(report: Parameters<CertificateSource['getVcek']>[0]): Promise<Buffer | undefined> {
    for (const id of vcekIds(asReport(report))) {
      const key = vcekKey(id.product, id.hwId, tcbPrefix(id.tcb));
      const got = await this.cached(key, this.vcekUrl(id), (body) => {
        const [c] = classifySnpFiles([{ name: 'KDS VCEK', data: body }]);
        return c && c.key === key ? [c] : undefined; // the VCEK of another chip or TCB is not this answer
      });
      if (got) return got.get(key);
    }
    return undefined;
  }

  async getChain(product: SnpProduct) {
    const ask = caKey('ask', product);
    const ark = caKey('ark', product);
    const got = await this.cached([ask, ark], `${this.base}/vcek/v1/${product}/cert_chain`, (body) => {
      const items = classifySnpFiles([{ name: 'KDS cert_chain', data: body }]);
      return items.some((i) => i.key === ask) && items.some((i) => i.key === ark) ? items.filter((i) => i.key === ask || i.key === ark) : undefined;
    });
    return got ? { ask: got.get(ask)!, ark: got.get(ark)! } : undefined;
  }

  async getCrl(product: SnpProduct) {
    const key = caKey('crl', product);
    const got = await this.cached(key, `${this.base}/vcek/v1/${product}/crl`, (body) => {
      const [c] = classifySnpFiles([{ name: 'KDS CRL', data: body }]);
      return c && c.key === key ? [c] : undefined;
    });
    return got?.get(key);
  }

  /** Store first; else the (shared) fetch, waited for at most waitMs; valid answers are cached. */
  private async cached(
    keys: string | string[],
    url: string,
    accept: (body: Buffer) => SnpCertificateInput[] | undefined,
  ): Promise<Map<string, Buffer> | undefined> {
    const ks = Array.isArray(keys) ? keys : [keys];
    const rows = await Promise.all(ks.map((k) => this.o.cache.getSnpCertificate(k)));
    if (rows.every((r) => r && (!r.expiresAt || r.kind !== 'crl' || r.expiresAt.getTime() > Date.now()))) return new Map(rows.map((r) => [r!.key, r!.der]));
    let p = this.inflight.get(url);
    if (!p) {
      p = this.fetchWithRetry(url).then(async (out) => {
        if (!out.ok) return out;
        let items: SnpCertificateInput[] | undefined;
        try {
          items = accept(out.body);
        } catch {
          items = undefined;
        }
        if (!items) {
          this.o.log?.(`KDS ${url}: the answer is not the certificate asked for; not cached`);
          return { ok: false, reason: 'refused' } as const;
        }
        for (const i of items) {
          try {
            await this.o.cache.putSnpCertificate({ ...i, source: 'kds' });
          } catch (e) {
            this.o.log?.(`KDS ${url}: caching failed (${(e as Error).message})`);
          }
        }
        return { ok: true, body: out.body } as const;
      });
      this.inflight.set(url, p);
      void p.finally(() => this.inflight.delete(url));
    }
    const out = await this.race(p);
    if (!out?.ok) return undefined;
    const again = await Promise.all(ks.map((k) => this.o.cache.getSnpCertificate(k)));
    if (again.every((r) => r)) return new Map(again.map((r) => [r!.key, r!.der]));
    // the cache write failed: answer from the fetched body anyway
    const items = accept(out.body) ?? [];
    return new Map(items.map((i) => [i.key, i.der]));
  }

  private race(p: Promise<KdsOutcome>): Promise<KdsOutcome | undefined> {
    return new Promise((resolve) => {
      const x = { t: setTimeout(() => (this.timers.delete(x), x.done()), this.o.waitMs ?? 5_000), done: () => resolve(undefined) };
      x.t.unref();
      this.timers.add(x);
      p.then(
        (v) => {
          clearTimeout(x.t);
          this.timers.delete(x);
          resolve(v);
        },
        () => resolve(undefined),
      );
    });
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      if (this.closed) return resolve();
      const x = { t: setTimeout(() => (this.timers.delete(x), resolve()), ms), done: () => resolve() };
      x.t.unref();
      this.timers.add(x);
    });
  }

  private async fetchWithRetry(url: string): Promise<KdsOutcome> {
    const nf = this.notFound.get(url);
    if (nf !== undefined && nf > Date.now()) return { ok: false, reason: 'not-found' };
    const deadline = Date.now() + (this.o.retryDeadlineMs ?? 120_000);
    const backoff = this.o.backoffMs ?? [10_000, 20_000, 30_000];
    for (let attempt = 0; !this.closed; attempt++) {
      const wait = this.blockedUntil - Date.now();
      if (wait > 0) {
        if (Date.now() + wait > deadline) return { ok: false, reason: 'deadline' };
        await this.sleep(wait);
        if (this.closed) break;
      }
      let status = 0;
      let retryAfter: number | undefined;
      try {
        this.requests++;
        const res = await fetch(url, { signal: AbortSignal.timeout(this.o.requestTimeoutMs ?? 10_000), headers: { accept: '*/*' } });
        status = res.status;
        const body = Buffer.from(await res.arrayBuffer());
        if (status === 200) return { ok: true, body };
        retryAfter = parseRetryAfter(res.headers.get('retry-after'));
      } catch (e) {
        this.o.log?.(`KDS ${url}: ${(e as Error).name === 'TimeoutError' ? 'timed out' : (e as Error).message}`);
      }
      if (status === 404) {
        this.notFound.set(url, Date.now() + (this.o.notFoundTtlMs ?? 600_000));
        return { ok: false, reason: 'not-found' };
      }
      if (status >= 400 && status < 500 && status !== 429 && status !== 408) {
        this.o.log?.(`KDS ${url}: HTTP ${status}, not retried`);
        return { ok: false, reason: 'refused' };
      }
      const delay = retryAfter ?? backoff[Math.min(attempt, backoff.length - 1)]!;
      if (status === 429) this.blockedUntil = Math.max(this.blockedUntil, Date.now() + delay);
      this.o.log?.(`KDS ${url}: ${status ? `HTTP ${status}` : 'no answer'}; retry in ${Math.round(delay / 1000)} s`);
      if (Date.now() + delay > deadline) return { ok: false, reason: 'deadline' };
      if (status !== 429) await this.sleep(delay);
    }
    return { ok: false, reason: 'deadline' };
  }
}

/** Retry-After in ms: delta-seconds or an HTTP date (RFC 9110 §10.2.3); undefined when absent or unusable. */
export function parseRetryAfter(v: string | null): number | undefined {
  if (!v) return undefined;
  if (/^\d+$/.test(v.trim())) return Number(v.trim()) * 1000;
  const t = Date.parse(v);
  return Number.isNaN(t) ? undefined : Math.max(0, t - Date.now());
}
