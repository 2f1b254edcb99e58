import { PGlite } from '@electric-sql/pglite';
import { DrizzleQueryError } from 'drizzle-orm';
import { Pool } from 'pg';
import { toStoreError } from '../src/db-errors';
import { StoreError } from '../src/errors';

function driverError(code: string, message = `driver says ${code}`): Error {
  return Object.assign(new Error(message), { code });
}

// How drizzle reports a failed statement: the SQL and its parameters in the message, the driver error as cause.
function wrapped(cause: Error): DrizzleQueryError {
  return new DrizzleQueryError('insert into "secrets" values ($1)', ['sealed-bytes-param'], cause);
}

describe('toStoreError', () => {
  it.each([
    ['23505', 'ERR_STORE_CONFLICT'],
    ['23503', 'ERR_STORE_CONSTRAINT'],
    ['23514', 'ERR_STORE_CONSTRAINT'],
    ['22P02', 'ERR_STORE_ARGUMENT'],
    ['08006', 'ERR_STORE_CONNECT'],
    ['28P01', 'ERR_STORE_CONNECT'],
    ['3D000', 'ERR_STORE_CONNECT'],
    ['57P01', 'ERR_STORE_CONNECT'],
    ['ECONNREFUSED', 'ERR_STORE_CONNECT'],
    ['57014', 'ERR_STORE_TIMEOUT'],
    ['55P03', 'ERR_STORE_TIMEOUT'],
    ['40001', 'ERR_STORE_QUERY'],
  ])('SQLSTATE/errno %s → %s, keeping only the driver error as cause', (code, expected) => {
    const cause = driverError(code);
    const e = toStoreError(wrapped(cause));
    expect(e).toBeInstanceOf(StoreError);
    expect(e.code).toBe(expected);
    expect(e.cause).toBe(cause);
    expect(e.message).not.toMatch(/insert into|sealed-bytes-param/);
  });

  it('lets the statement decide what a foreign-key or unique violation means', () => {
    const inUse = new StoreError('ERR_STORE_IN_USE', 'in use');
    expect(toStoreError(wrapped(driverError('23503')), { foreignKey: () => inUse })).toBe(inUse);
    const taken = new StoreError('ERR_STORE_CONFLICT', 'taken');
    expect(toStoreError(wrapped(driverError('23505')), { unique: () => taken })).toBe(taken);
  });

  it('maps uncoded connection losses to ERR_STORE_CONNECT and other failures to ERR_STORE_QUERY', () => {
    expect(toStoreError(wrapped(new Error('Connection terminated unexpectedly'))).code).toBe('ERR_STORE_CONNECT');
    const other = toStoreError(wrapped(new Error('something odd')));
    expect(other.code).toBe('ERR_STORE_QUERY');
    expect(other.cause).toBeInstanceOf(Error);
    expect(other.cause).not.toBeInstanceOf(DrizzleQueryError);
  });

  it('maps a closed PGlite and an ended pool (the broker answers UNAVAILABLE) to ERR_STORE_CONNECT', async () => {
    const lite = await PGlite.create();
    await lite.close();
    const closed = await lite.query('SELECT 1').then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(toStoreError(wrapped(closed as Error)).code).toBe('ERR_STORE_CONNECT');
    const pool = new Pool({ connectionString: 'postgres://kb@127.0.0.1:1/none' });
    await pool.end();
    const ended = await pool.query('SELECT 1').then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(toStoreError(wrapped(ended as Error)).code).toBe('ERR_STORE_CONNECT');
  });

  it('passes StoreErrors through unchanged', () => {
    const e = new StoreError('ERR_STORE_DECRYPT', 'x');
    expect(toStoreError(e)).toBe(e);
  });
});
