import fc from 'fast-check';
import { spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { isSevError } from '../../src/errors';
import {
  injectPageHashFault,
  pageHashes,
  PAGE_HASH_CHUNK_PAGES,
  PAGE_HASH_COLD_MIN_PAGES,
  PAGE_HASH_MIN_PAGES,
  shutdownPageHashPool,
  warmPageHashPool,
  type WorkerFault,
} from '../../src/snp/page-hashes';
import type { ParallelPageHashes } from '../../src/snp/page-hash-job';
import { SnpLaunchDigest, SnpPageType } from '../../src/snp/page-info';

/**
 * The worker-pool page hashes (CONTENTS of §4.1) against the sequential path: same digests byte for byte, typed
 * errors instead of hangs when a worker misbehaves, and no process kept alive by the pool.
 */
const sha384 = (b: Uint8Array) => createHash('sha384').update(b).digest();

/** The PAGE_INFO chain over `data` from `gpa`, optionally seeded, with the given page-hash options. */
function chain(data: Uint8Array, threads: number, opts: { seed?: Buffer; chunkPages?: number; windowPages?: number; gpa?: bigint } = {}): Buffer {
  const { chunkPages, windowPages } = opts;
  return new SnpLaunchDigest(opts.seed).updateNormalRange(opts.gpa ?? 0xffc0_0000n, data, { threads, chunkPages, windowPages }).digest();
}

// Workers that are still starting get no work (the calling thread does it all), so most tests wait for them.
beforeAll(async () => expect(await warmPageHashPool(1)).toBe(true));
afterAll(() => shutdownPageHashPool());

describe('page hashes on worker threads (launch-digest.md §4.1)', () => {
  it('equals the sequential chain on random data, sizes and chunkings, seeded or not', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 200 }),
        fc.integer({ min: 1, max: 40 }),
        fc.integer({ min: 1, max: 120 }),
        fc.integer({ min: 1, max: 2 }),
        fc.option(fc.uint8Array({ minLength: 48, maxLength: 48 }), { nil: undefined }),
        fc.integer({ min: 0, max: 0xfffff }),
        (pages, chunkPages, windowPages, threads, seed, gpaPage) => {
          const data = randomBytes(pages * 4096);
          const o = { seed: seed && Buffer.from(seed), chunkPages, windowPages, gpa: BigInt(gpaPage) * 4096n };
          expect(chain(data, threads, o).equals(chain(data, 0, o))).toBe(true);
        },
      ),
      { numRuns: 40 },
    );
  });

  it('the range chain equals one PAGE_INFO step per page, GPAs across 4 GiB and up to the last page below 2^64', () => {
    const data = randomBytes(3 * 4096);
    for (const gpa of [0n, 0xffff_e000n, 0xffff_f000n, 0x1_2345_6000n, (1n << 64n) - 3n * 4096n]) {
      const stepwise = new SnpLaunchDigest();
      for (let i = 0; i < 3; i++) stepwise.update(SnpPageType.NORMAL, gpa + BigInt(i * 4096), data.subarray(i * 4096, (i + 1) * 4096));
      for (const threads of [0, 1]) expect(chain(data, threads, { gpa }).equals(stepwise.digest())).toBe(true);
    }
    expect(() => chain(data, 0, { gpa: (1n << 64n) - 2n * 4096n })).toThrow(/64-bit/);
  });

  it('gives each page its SHA-384 across chunk and window boundaries, whatever the order of reading', () => {
    for (const [chunkPages, windowPages] of [
      [1, 1],
      [3, 7], // windows round up to 3 chunks (9 pages)
      [PAGE_HASH_CHUNK_PAGES, 1024],
      [PAGE_HASH_CHUNK_PAGES, 2 * PAGE_HASH_CHUNK_PAGES],
    ] as const) {
      const w = Math.ceil(windowPages / chunkPages) * chunkPages;
      const sizes = [1, chunkPages - 1, chunkPages, chunkPages + 1, 2 * chunkPages + 1, w - 1, w, w + 1, 2 * w + chunkPages + 2];
      for (const pages of sizes.filter((n) => n >= 1)) {
        const data = randomBytes(pages * 4096);
        const want = (i: number) => sha384(data.subarray(i * 4096, (i + 1) * 4096)).toString('hex');
        // In order, then a second job read backwards (skipped windows are hashed on the calling thread).
        for (const order of ['forward', 'backward']) {
          const h = pageHashes(data, { threads: 1, chunkPages, windowPages });
          try {
            expect([h.parallel, h.count]).toEqual([true, pages]);
            for (let k = 0; k < pages; k++) {
              const i = order === 'forward' ? k : pages - 1 - k;
              expect(h.get(i).toString('hex')).toBe(want(i));
            }
          } finally {
            h.close();
          }
        }
      }
    }
  });

  it('hashes a list of pages and a shared buffer like the same pages in one buffer', () => {
    const data = randomBytes(200 * 4096);
    const list = Array.from({ length: 200 }, (_, i) => data.subarray(i * 4096, (i + 1) * 4096));
    const shared = new Uint8Array(new SharedArrayBuffer(data.length + 4096), 4096);
    shared.set(data);
    for (const input of [list, shared]) {
      const h = pageHashes(input, { threads: 1, windowPages: 64 });
      try {
        expect(h.parallel).toBe(true);
        for (let i = 0; i < h.count; i++) expect(h.get(i).equals(sha384(list[i]!))).toBe(true);
      } finally {
        h.close();
      }
    }
  });

  it('by default uses a running pool from PAGE_HASH_MIN_PAGES pages on, and starts one only for large inputs', async () => {
    const multi = availableParallelism() > 1;
    const at = (pages: number) => {
      const h = pageHashes(Buffer.alloc(pages * 4096));
      h.close();
      return h.parallel;
    };
    expect([at(PAGE_HASH_MIN_PAGES - 1), at(PAGE_HASH_MIN_PAGES)]).toEqual([false, multi]);
    await shutdownPageHashPool();
    expect(at(PAGE_HASH_MIN_PAGES)).toBe(false); // no pool, and not worth starting one
    expect(at(PAGE_HASH_COLD_MIN_PAGES)).toBe(multi); // starts it
    expect(at(PAGE_HASH_MIN_PAGES)).toBe(multi);
    expect(await warmPageHashPool(1)).toBe(true);
  });

  it('takes the sequential path when a job is already running (a nested digest) or threads is 0', () => {
    const data = randomBytes(64 * 4096);
    const outer = pageHashes(data, { threads: 1 });
    try {
      expect(pageHashes(data, { threads: 1 }).parallel).toBe(false);
      expect(pageHashes(data, { threads: 0 }).parallel).toBe(false);
      expect(outer.get(63).equals(sha384(data.subarray(63 * 4096)))).toBe(true);
    } finally {
      outer.close();
    }
    expect(chain(data, 1)).toEqual(chain(data, 0));
  });

  it('refuses a bad thread count and partial pages with typed errors', () => {
    expect(() => pageHashes(Buffer.alloc(4096), { threads: -1 })).toThrow(expect.objectContaining({ code: 'ERR_SEV_ARGUMENT' }));
    expect(() => pageHashes(Buffer.alloc(4095), { threads: 1 })).toThrow(expect.objectContaining({ code: 'ERR_SEV_LENGTH' }));
    expect(() => pageHashes([Buffer.alloc(4096), Buffer.alloc(10)])).toThrow(expect.objectContaining({ code: 'ERR_SEV_LENGTH' }));
  });

  /** Runs the digest with `fault` injected until a worker took a chunk (the calling thread may do all of it first). */
  function withFault(fault: WorkerFault, data: Buffer): { error?: unknown; digests: Buffer[] } {
    const digests: Buffer[] = [];
    for (let attempt = 0; attempt < 20; attempt++) {
      injectPageHashFault(fault);
      try {
        digests.push(chain(data, 1, { chunkPages: 1 }));
      } catch (error) {
        return { error, digests };
      } finally {
        injectPageHashFault(undefined);
      }
    }
    return { digests };
  }

  it.each<[WorkerFault, RegExp]>([
    ['throw', /worker thread failed/],
    ['exit', /exited in the middle of a job/],
  ])('a worker that does "%s" mid-job gives ERR_SEV_WORKER, not a digest; the next job gets a new pool', async (fault, message) => {
    const data = randomBytes(256 * 4096);
    const expected = chain(data, 0);
    expect(await warmPageHashPool(1)).toBe(true);
    const { error, digests } = withFault(fault, data);
    for (const d of digests) expect(d).toEqual(expected); // tries where no worker got a chunk
    expect(isSevError(error, 'ERR_SEV_WORKER')).toBe(true);
    expect((error as Error).message).toMatch(message);
    expect(chain(data, 1)).toEqual(expected);
  });

  it('a worker that stalls holding a chunk costs a ~1 ms wait, then the chunk is hashed here: no hang, no wrong digest', async () => {
    const data = randomBytes(256 * 4096);
    const want = (i: number) => sha384(data.subarray(i * 4096, (i + 1) * 4096));
    expect(await warmPageHashPool(1)).toBe(true);
    const t0 = Date.now();
    let stolen = 0;
    // Until the (only) worker has claimed a chunk and stalled on it; from then on it takes no job at all.
    for (let attempt = 0; attempt < 50 && stolen === 0; attempt++) {
      injectPageHashFault('hang');
      const h = pageHashes(data, { threads: 1, chunkPages: 1 });
      try {
        for (let i = 0; i < h.count; i++) expect(h.get(i).equals(want(i))).toBe(true);
      } finally {
        h.close();
        injectPageHashFault(undefined);
      }
      stolen = (h as ParallelPageHashes).stolen;
    }
    expect(stolen).toBe(1);
    expect(chain(data, 1)).toEqual(chain(data, 0));
    expect(Date.now() - t0).toBeLessThan(15_000);
    await shutdownPageHashPool(); // terminates the stalled worker
  });

  it('does not keep the process alive: a child computes a digest on the pool and exits by itself', () => {
    const data = randomBytes(300 * 4096);
    const src = join(__dirname, '../../src/snp');
    // The worker takes part (the pool is ready before the digest), and nothing shuts the pool down.
    const script = `
      const { pageHashes, warmPageHashPool } = require(${JSON.stringify(join(src, 'page-hashes.ts'))});
      const { SnpLaunchDigest } = require(${JSON.stringify(join(src, 'page-info.ts'))});
      const data = require('node:fs').readFileSync(0);
      warmPageHashPool(1).then((ready) => {
        const h = pageHashes(data);
        h.close();
        console.log(ready, h.parallel, new SnpLaunchDigest().updateNormalRange(0x1000n, data).digest().toString('hex'));
      });`;
    const t0 = Date.now();
    const r = spawnSync(process.execPath, ['--import', 'tsx', '-e', script], { input: data, encoding: 'utf8', timeout: 30_000 });
    expect(r.error).toBeUndefined();
    expect(r.status).toBe(0);
    expect(r.stdout.trim()).toBe(`true true ${chain(data, 0, { gpa: 0x1000n }).toString('hex')}`);
    expect(Date.now() - t0).toBeLessThan(20_000);
  });
});
