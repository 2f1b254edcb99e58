import type { KeyObject } from 'node:crypto';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import type { P384Point } from '@kb/sev';

export interface Agreement {
  /** Z, 48 bytes: the caller wraps the session keys with it and then drops it */
  z: Buffer;
  /** the fresh GODH public key (its private half never leaves the worker and is dropped there) */
  godhPublicKey: P384Point;
}

export interface EcdhPoolOptions {
  /** Worker threads; default: one per core but one (the event loop keeps a core for gRPC and the database). */
  size?: number;
  /**
   * Work each worker does ahead while it has nothing else to do, at most: GODH keys, and whole agreements with the PDH
   * of the latest GetBundle; default 32, 0 turns it off.
   */
  stock?: number;
  /** Agreements made ahead and unused this long are dropped (their Z wiped); default five minutes. */
  aheadTtlMs?: number;
}

interface Pending {
  resolve(a: Agreement): void;
  reject(e: Error): void;
  slot: Slot;
}

interface Slot {
  worker: Worker;
  /** performance.now() at spawn, and how many predecessors in this slot died young (see replace) */
  born: number;
  crashes: number;
  /** agreements sent to this worker and not answered yet */
  inFlight: number;
  /** keys and agreements the worker holds (its last report, minus agreements sent since, which may have used one) */
  stock: number;
  /** a fill request is outstanding */
  filling: boolean;
  /** the worker said it had nothing left to do ahead (until its next agreement) */
  full: boolean;
  /**
   * An agreement was sent while a fill was outstanding: that fill's "full" predates the agreement (which may have
   * used a key, or named a new PDH to work ahead for), so it must not stop the filling.
   */
  fillOutdated: boolean;
}

/** What an agreement found ready: a whole agreement made ahead with that PDH, a key made ahead, or nothing. */
export type Ahead = 'agreement' | 'key' | 'none';

type Reply = { id: number; z?: Uint8Array; x?: Uint8Array; y?: Uint8Array; ahead?: Ahead; error?: string } | { stock: number; full: boolean };

/**
 * GetBundle's one expensive step — a fresh P-384 key and its ECDH with the PDH — runs on worker threads, so the event
 * loop keeps serving gRPC and the database while other cores do the arithmetic.
 *
 * An agreement needs nothing from the request but the PDH, and a host names the same PDH in every GetBundle. So a
 * worker with no agreement to do is asked to work ahead, one step at a time, up to `stock`: it makes GODH keys, and
 * binds them to the PDH of its latest agreement (deriving Z). A GetBundle that finds an agreement ready for its PDH
 * pays for no arithmetic at all; one that finds a key pays for the derive. Each key and agreement is used once, lives
 * only in the worker, and agreements unused for minutes are dropped. Under saturation the workers are never idle,
 * nothing is made ahead and each agreement starts from scratch: working ahead moves work into idle time and adds none
 * (but for agreements dropped unused). A worker that dies fails its pending agreements (those GetBundle calls answer
 * INTERNAL) and is replaced.
 */
export class EcdhPool {
  private readonly slots: Slot[] = [];
  private readonly pending = new Map<number, Pending>();
  private seq = 0;
  private closed = false;
  private readonly stock: number;
  private readonly aheadTtlMs: number;
  /** PDH keys as SPKI: the chain cache hands out the same KeyObject for a known chain, so this is one export per host. */
  private readonly spkis = new WeakMap<KeyObject, Buffer>();
  private readonly served: Record<Ahead, number> = { agreement: 0, key: 0, none: 0 };

  constructor({ size = Math.max(1, availableParallelism() - 1), stock = 32, aheadTtlMs = 5 * 60_000 }: EcdhPoolOptions = {}) {
    this.stock = stock;
    this.aheadTtlMs = aheadTtlMs;
    for (let i = 0; i < size; i++) this.slots.push(this.spawn());
  }

  agree(pdh: KeyObject): Promise<Agreement> {
    if (this.closed) return Promise.reject(new Error('the ECDH pool is closed'));
    const id = ++this.seq;
    const slot = this.pick();
    if (slot.inFlight === Number.POSITIVE_INFINITY) return Promise.reject(new Error('no ECDH worker is running (being replaced)'));
    let spki = this.spkis.get(pdh);
    if (!spki) this.spkis.set(pdh, (spki = pdh.export({ format: 'der', type: 'spki' })));
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject, slot });
      slot.inFlight++;
      slot.stock = Math.max(0, slot.stock - 1);
      slot.full = false;
      if (slot.filling) slot.fillOutdated = true;
      slot.worker.postMessage({ id, pdhSpki: spki });
    });
  }

  /** Keys and agreements made ahead and not used yet, over all workers (as last reported by them). */
  stocked(): number {
    return this.slots.reduce((n, s) => n + s.stock, 0);
  }

  /** Every worker has made all it may ahead (as last reported), until its next agreement. */
  stockedUp(): boolean {
    return this.slots.every((s) => s.full && !s.filling && s.inFlight === 0);
  }

  /** Agreements answered so far, by what they found made ahead. */
  stats(): Readonly<Record<Ahead, number>> {
    return { ...this.served };
  }

  async close(): Promise<void> {
    this.closed = true;
    await Promise.all(this.slots.map((s) => s.worker.terminate()));
    this.fail(() => true, new Error('the ECDH pool was closed'));
  }

  /** The least busy worker; among equals, the one with keys in stock. */
  private pick(): Slot {
    let best = this.slots[0]!;
    for (const s of this.slots) {
      if (s.inFlight < best.inFlight || (s.inFlight === best.inFlight && s.stock > best.stock)) best = s;
    }
    return best;
  }

  /** One step at a time, and only while the worker has no agreement queued, so a GetBundle waits for at most one. */
  private topUp(slot: Slot): void {
    if (this.closed || slot.filling || slot.full || slot.inFlight > 0 || this.stock === 0) return;
    slot.filling = true;
    slot.worker.postMessage({ fill: true });
  }

  private spawn(crashes = 0): Slot {
    const worker = new Worker(join(__dirname, 'ecdh-worker.js'), { workerData: { stock: this.stock, aheadTtlMs: this.aheadTtlMs } });
    worker.unref();
    const slot: Slot = { worker, born: performance.now(), crashes, inFlight: 0, stock: 0, filling: false, full: false, fillOutdated: false };
    worker.on('message', (m: Reply) => {
      if ('stock' in m) {
        slot.filling = false;
        slot.stock = m.stock;
        slot.full = m.full && !slot.fillOutdated;
        slot.fillOutdated = false;
        return this.topUp(slot);
      }
      const p = this.pending.get(m.id);
      if (!p) return;
      this.pending.delete(m.id);
      slot.inFlight--;
      this.topUp(slot);
      if (m.error || !m.z || !m.x || !m.y) return p.reject(new Error(`ECDH worker: ${m.error ?? 'empty answer'}`));
      this.served[m.ahead ?? 'none']++;
      p.resolve({ z: Buffer.from(m.z.buffer, m.z.byteOffset, m.z.byteLength), godhPublicKey: { x: m.x, y: m.y } });
    });
    // A worker that died young is replaced after a pause that doubles (up to 5 s), so one that cannot start does not
    // respawn in a loop; a spawn that throws (out of threads or memory) is retried the same way. Never an exception
    // out of this event handler: that would end the process.
    const replace = (why: Error) => {
      this.fail((s) => s === slot, why);
      if (this.closed || !this.slots.includes(slot) || slot.inFlight === Number.POSITIVE_INFINITY) return;
      slot.inFlight = Number.POSITIVE_INFINITY; // pick() avoids it while a successor is on its way
      const crashes = performance.now() - slot.born < 1000 ? slot.crashes + 1 : 0;
      const respawn = () => {
        const i = this.slots.indexOf(slot);
        if (i < 0 || this.closed) return;
        try {
          this.slots[i] = this.spawn(crashes);
        } catch {
          setTimeout(respawn, 5000).unref();
        }
      };
      if (crashes === 0) respawn();
      else setTimeout(respawn, Math.min(5000, 50 * 2 ** crashes)).unref();
    };
    worker.on('error', replace);
    worker.on('exit', (code) => !this.closed && replace(new Error(`ECDH worker exited with code ${code}`)));
    this.topUp(slot);
    return slot;
  }

  private fail(which: (s: Slot) => boolean, why: Error): void {
    for (const [id, p] of this.pending) {
      if (!which(p.slot)) continue;
      p.slot.inFlight--;
      p.reject(why);
      this.pending.delete(id);
    }
  }
}
