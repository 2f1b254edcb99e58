/**
 * Every failure in libs/store is a StoreError with a stable code, so the broker and the admin API can map failures
 * to responses without parsing messages or seeing raw driver errors (which may quote SQL and parameters).
 */
export type StoreErrorCode =
  | 'ERR_STORE_NOT_FOUND' // a referenced row (policy, secret) does not exist
  | 'ERR_STORE_CONFLICT' // a row with this id already exists where a new one was required
  | 'ERR_STORE_IN_USE' // delete refused: other rows still reference this one
  | 'ERR_STORE_DECRYPT' // a sealed column failed authentication (tampered, or copied from another row)
  | 'ERR_STORE_MASTER_KEY' // the master key is malformed or is not the key this database was created with
  | 'ERR_STORE_ARGUMENT' // a value the store cannot hold (wrong length, empty id, not JSON...)
  | 'ERR_STORE_CONSTRAINT' // another database constraint rejected the write
  | 'ERR_STORE_CONNECT' // the database cannot be reached or started, or PGlite was closed under a call (retry later)
  | 'ERR_STORE_MIGRATION' // applying the schema migrations failed
  | 'ERR_STORE_CLOSED' // the store was used after close()
  | 'ERR_STORE_LOCKED' // another process has this PGlite data directory open
  | 'ERR_STORE_TIMEOUT' // the statement was cancelled: it ran past statementTimeoutMs (or an operator cancelled it)
  | 'ERR_STORE_QUERY'; // any other database failure

export class StoreError extends Error {
  override readonly name = 'StoreError';
  constructor(
    readonly code: StoreErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

export function isStoreError(e: unknown, code?: StoreErrorCode): e is StoreError {
  return e instanceof StoreError && (code === undefined || e.code === code);
}
