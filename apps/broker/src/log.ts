import pino from 'pino';

/**
 * Structured logging with pino: one JSON object per line on stderr (`{"level":"info","t":"<ISO time>","pid":…,
 * "hostname":…,"msg":…, …fields}`), so operators can ship it anywhere and tell replicas apart by hostname.
 *
 * Callers pass only non-secret fields: handlers never hand keys, payloads or tokens to the logger. As a second line
 * of defence, fields whose names mean a secret (REDACTED_FIELDS, at the top level or one object down) are replaced by
 * "[redacted]" before a line is written, so a careless `{ token }` in a later change still cannot leak.
 */
export type LogLevel = 'debug' | 'info' | 'warn' | 'error';

export interface Logger {
  debug(msg: string, fields?: Record<string, unknown>): void;
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
}

/** Field names that only ever hold secrets in this code base (TIK/TEK, session and connection keys, tokens, payloads). */
export const REDACTED_FIELDS = [
  'token',
  'adminToken',
  'authorization',
  'password',
  'masterKey',
  'key',
  'tik',
  'tek',
  'tikTek',
  'z',
  'secret',
  'payload',
  'value',
  'connectionKey',
  'sessionKey',
] as const;

export function createLogger(level: LogLevel = 'info', sink?: (line: string) => void): Logger {
  const destination = sink
    ? { write: (line: string) => sink(line.endsWith('\n') ? line.slice(0, -1) : line) }
    : // Synchronous: a start-up failure's line must be written before the process exits with its code.
      pino.destination({ dest: 2, sync: true });
  const p = pino(
    {
      level,
      timestamp: () => `,"t":"${new Date().toISOString()}"`,
      formatters: { level: (label) => ({ level: label }) },
      redact: { paths: REDACTED_FIELDS.flatMap((f) => [f, `*.${f}`]), censor: '[redacted]' },
    },
    destination,
  );
  // The message goes in first, as a field: the line reads level, time, msg, then the event's fields (as before pino,
  // and what people grep for); pino would otherwise append msg after the fields.
  return {
    debug: (m, f) => p.debug({ msg: m, ...f }),
    info: (m, f) => p.info({ msg: m, ...f }),
    warn: (m, f) => p.warn({ msg: m, ...f }),
    error: (m, f) => p.error({ msg: m, ...f }),
  };
}

export const silentLogger: Logger = { debug() {}, info() {}, warn() {}, error() {} };
