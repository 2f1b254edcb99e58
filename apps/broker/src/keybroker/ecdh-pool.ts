import type { KeyObject } from 'node:crypto';
import type { P384Point } from '@kb/sev';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';

export interface Agreement {
  /** Z, 48 bytes: the caller wraps the session keys with it and then drops it */
  z: Buffer;
  /** the fresh GODH public key (its private half never leaves the worker and is dropped there) */
  godhPublicKey: P384Point;
}

export interface EcdhPoolOptions {
  /** Worker threads; default: one per core but one (the event loop keeps a core for gRPC and the database). */
  size?: number;
  /** GODH keys each worker generates ahead while idle (see ecdh-worker.js); default 32, 0 turns it off. */
  stock?: number;
}

interface Pending {
  resolve(a: Agreement): void;
  reject(e: Error): void;
}

/**
 * GetBundle's one expensive step — a fresh P-384 key and its ECDH with the PDH — runs on worker threads, so the event
 * loop keeps serving gRPC and the database while other cores do the arithmetic; idle workers make keys ahead. A
 * worker that dies fails its pending agreements (those GetBundle calls answer INTERNAL) and is replaced.
 */
export class EcdhPool {
  private readonly workers: Worker[] = [];
  private readonly pending = new Map<number, Pending>();
  private readonly owner = new Map<number, Worker>();
  private next = 0;
  private seq = 0;
  private closed = false;
  private readonly stock: number;
  /** PDH keys as SPKI: the chain cache hands out the same KeyObject for a known chain, so this is one export per host. */
  private readonly spkis = new WeakMap<KeyObject, Buffer>();

  constructor({ size = Math.max(1, availableParallelism() - 1), stock = 32 }: EcdhPoolOptions = {}) {
    this.stock = stock;
    for (let i = 0; i < size; i++) this.workers.push(this.spawn());
  }

  agree(pdh: KeyObject): Promise<Agreement> {
    if (this.closed) return Promise.reject(new Error('the ECDH pool is closed'));
    const id = ++this.seq;
    const worker = this.workers[this.next++ % this.workers.length]!;
    let spki = this.spkis.get(pdh);
    if (!spki) this.spkis.set(pdh, (spki = pdh.export({ format: 'der', type: 'spki' })));
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.owner.set(id, worker);
      worker.postMessage({ id, pdhSpki: spki });
    });
  }

  async close(): Promise<void> {
    this.closed = true;
    await Promise.all(this.workers.map((w) => w.terminate()));
    this.fail(() => true, new Error('the ECDH pool was closed'));
  }

  private spawn(): Worker {
    const worker = new Worker(join(__dirname, 'ecdh-worker.js'), { workerData: { stock: this.stock } });
    worker.unref();
    worker.on('message', (m: { id: number; z?: Uint8Array; x?: Uint8Array; y?: Uint8Array; error?: string }) => {
      const p = this.pending.get(m.id);
      if (!p) return;
      this.pending.delete(m.id);
      this.owner.delete(m.id);
      if (m.error || !m.z || !m.x || !m.y) return p.reject(new Error(`ECDH worker: ${m.error ?? 'empty answer'}`));
      p.resolve({ z: Buffer.from(m.z.buffer, m.z.byteOffset, m.z.byteLength), godhPublicKey: { x: m.x, y: m.y } });
    });
    const replace = (why: Error) => {
      this.fail((w) => w === worker, why);
      const i = this.workers.indexOf(worker);
      if (i >= 0 && !this.closed) this.workers[i] = this.spawn();
    };
    worker.on('error', replace);
    worker.on('exit', (code) => !this.closed && replace(new Error(`ECDH worker exited with code ${code}`)));
    return worker;
  }

  private fail(which: (w: Worker) => boolean, why: Error): void {
    for (const [id, w] of this.owner) {
      if (!which(w)) continue;
      this.pending.get(id)?.reject(why);
      this.pending.delete(id);
      this.owner.delete(id);
    }
  }
}
