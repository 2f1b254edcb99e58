/**
 * What every table module needs: the drizzle database (either driver), the sealer, and `run`, which refuses use after
 * close() and turns driver failures into StoreError.
 */
import type { PgDatabase, PgQueryResultHKT } from 'drizzle-orm/pg-core';
import { toStoreError, type ErrorHints } from './db-errors';
import { StoreError } from './errors';
import type { Sealer } from './sealing';

/** A drizzle database or transaction on either driver (PGlite or node-postgres). */
export type Db = PgDatabase<PgQueryResultHKT>;

export interface StoreContext {
  readonly sealer: Sealer;
  run<T>(op: (db: Db) => Promise<T>, hints?: ErrorHints): Promise<T>;
  /**
   * A statement of the request path, built on first use and kept: drizzle then skips rebuilding its SQL on every call
   * (a third of a simple query's CPU), and node-postgres makes it a named server-side statement per connection.
   */
  prepared<T>(build: (db: Db) => T): () => T;
}

export function createContext(db: Db, sealer: Sealer, isClosed: () => boolean): StoreContext {
  return {
    sealer,
    async run(op, hints) {
      if (isClosed()) throw new StoreError('ERR_STORE_CLOSED', 'store is closed');
      try {
        return await op(db);
      } catch (e) {
        throw toStoreError(e, hints);
      }
    },
    prepared(build) {
      let statement: ReturnType<typeof build> | undefined;
      return () => (statement ??= build(db));
    },
  };
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** Launch and client ids arrive from the untrusted host: a malformed one is simply "no such row", not a SQL error. */
export function isUuid(value: string): boolean {
  return UUID.test(value);
}

export function requireId(id: string, what: string): void {
  if (typeof id !== 'string' || id.length === 0) throw new StoreError('ERR_STORE_ARGUMENT', `${what} must be a non-empty string`);
}

export function requireBuffer(value: Buffer, what: string): void {
  if (!Buffer.isBuffer(value)) throw new StoreError('ERR_STORE_ARGUMENT', `${what} must be a Buffer`);
}

export function requireLength(value: Buffer, length: number, what: string): void {
  if (!Buffer.isBuffer(value) || value.length !== length) {
    throw new StoreError('ERR_STORE_ARGUMENT', `${what} must be ${length} bytes`);
  }
}

export function requireUint(value: number, max: number, what: string): void {
  if (!Number.isInteger(value) || value < 0 || value > max) {
    throw new StoreError('ERR_STORE_ARGUMENT', `${what} must be an integer in [0, ${max}]`);
  }
}

/** Plain JSON only: binary values (Buffer, typed arrays) are refused rather than silently turned into objects. */
export function requireJson(value: unknown, what: string): void {
  let text: string | undefined;
  try {
    text = JSON.stringify(value, function (this: Record<string, unknown>, key: string, v: unknown) {
      if (ArrayBuffer.isView(this[key]) || this[key] instanceof ArrayBuffer) throw new TypeError('binary value');
      return v;
    });
  } catch (e) {
    throw new StoreError('ERR_STORE_ARGUMENT', `${what} is not plain JSON`, { cause: e });
  }
  if (text === undefined) throw new StoreError('ERR_STORE_ARGUMENT', `${what} is not a JSON value`);
}

export function notFound(what: string): StoreError {
  return new StoreError('ERR_STORE_NOT_FOUND', `${what} does not exist`);
}
