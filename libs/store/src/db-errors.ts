/**
 * Translation of driver failures into StoreError. Drizzle wraps driver errors in a DrizzleQueryError whose message
 * quotes the SQL and its parameters, so that wrapper is never passed on: only the driver error is kept as `cause`.
 */
import { DrizzleQueryError } from 'drizzle-orm';
import { StoreError } from './errors';

/** A foreign-key or unique violation means different things for different statements; callers say which. */
export interface ErrorHints {
  foreignKey?: () => StoreError;
  unique?: () => StoreError;
}

interface CodedError extends Error {
  code: string;
}

// SQLSTATE classes/codes and Node socket errors that mean "the database is unreachable", not "the query is wrong".
const CONNECT_STATES = /^(08...|28...|3D000|53300|57P0[1-3])$/;
const CONNECT_ERRNOS = new Set(['ECONNREFUSED', 'ECONNRESET', 'ENOTFOUND', 'ETIMEDOUT', 'EHOSTUNREACH', 'EAI_AGAIN', 'EPIPE']);

/**
 * Statements cancelled (statement_timeout, lock_timeout) so far in this process, for the broker's metrics. Counted
 * here because every driver failure passes through this translation exactly once (a StoreError is returned as is).
 * Per process, not per store: a broker opens one store.
 */
let cancelledStatements = 0;
export const statementTimeouts = () => cancelledStatements;

export function toStoreError(e: unknown, hints: ErrorHints = {}): StoreError {
  if (e instanceof StoreError) return e;
  const coded = findCodedError(e);
  if (coded === undefined) {
    const cause = innermost(e);
    // node-postgres reports a dropped socket or a pool acquire timeout as plain Errors without a code.
    // PGlite throws "PGlite is closed" once its WASM instance is gone (closed under a running call, or aborted).
    if (cause instanceof Error && /connection terminated|trying to connect|PGlite is closed|pool after calling end/i.test(cause.message)) {
      return new StoreError('ERR_STORE_CONNECT', `database unavailable: ${cause.message}`, { cause });
    }
    return new StoreError('ERR_STORE_QUERY', 'database operation failed', {
      cause: cause instanceof DrizzleQueryError ? undefined : cause,
    });
  }
  const { code } = coded;
  const cause = coded;
  if (code === '23505') return hints.unique?.() ?? new StoreError('ERR_STORE_CONFLICT', coded.message, { cause });
  if (code === '23503') return hints.foreignKey?.() ?? new StoreError('ERR_STORE_CONSTRAINT', coded.message, { cause });
  if (code.startsWith('23')) return new StoreError('ERR_STORE_CONSTRAINT', coded.message, { cause });
  if (code.startsWith('22')) {
    return new StoreError('ERR_STORE_ARGUMENT', `value rejected by the database: ${coded.message}`, { cause });
  }
  // query_canceled: statement_timeout (statementTimeoutMs) or pg_cancel_backend; lock_not_available: lock_timeout
  if (code === '57014' || code === '55P03') {
    cancelledStatements++;
    return new StoreError('ERR_STORE_TIMEOUT', `statement cancelled: ${coded.message}`, { cause });
  }
  if (CONNECT_STATES.test(code) || CONNECT_ERRNOS.has(code)) {
    return new StoreError('ERR_STORE_CONNECT', `database unavailable: ${coded.message}`, { cause });
  }
  return new StoreError('ERR_STORE_QUERY', `database operation failed (${code})`, { cause });
}

function findCodedError(e: unknown): CodedError | undefined {
  for (let cur = e, depth = 0; cur instanceof Error && depth < 8; cur = cur.cause, depth++) {
    const code = (cur as { code?: unknown }).code;
    if (typeof code === 'string' && code.length > 0) return cur as CodedError;
  }
  return undefined;
}

function innermost(e: unknown): unknown {
  let cur = e;
  for (let depth = 0; cur instanceof Error && cur.cause !== undefined && depth < 8; depth++) cur = cur.cause;
  return cur;
}
