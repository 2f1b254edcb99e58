import type { Logger } from './log';

/** More uncaught exceptions than this within a minute: something is broken for good, and a restart is the remedy. */
const MAX_UNCAUGHT_PER_MINUTE = 10;

/**
 * The process-wide last resort, installed by kb-broker's main. Every timer and background promise handles its own
 * failure (logs it and retries); this only catches the ones that slipped through, so that one forgotten `.catch`
 * cannot end a broker that hosts depend on.
 *
 * - An unhandled rejection is a promise nobody awaited: nothing is waiting on its state, so the broker logs it (as
 *   the bug it is) and keeps serving.
 * - An uncaught exception abandons the callback it was thrown from (a timer, a socket event). The broker's state that
 *   matters (sessions, releases, the audit trail) is in the database and its transactions, so serving on is safe;
 *   it is logged, and a burst of them (more than 10 in a minute) exits with code 70 for a supervisor to restart.
 */
export function installLastResort(logger: Logger, exit: (code: number) => void = (code) => process.exit(code)): () => void {
  const recent: number[] = [];
  const onRejection = (reason: unknown) => {
    logger.error('unhandled promise rejection (a bug); the broker keeps serving', { error: describe(reason) });
  };
  const onException = (error: unknown) => {
    const now = performance.now();
    recent.push(now);
    while (recent.length > 0 && now - recent[0]! > 60_000) recent.shift();
    if (recent.length > MAX_UNCAUGHT_PER_MINUTE) {
      logger.error('uncaught exception; too many within a minute, exiting for a restart', { error: describe(error), exitCode: 70 });
      exit(70);
      return;
    }
    logger.error('uncaught exception (a bug); the broker keeps serving', { error: describe(error) });
  };
  process.on('unhandledRejection', onRejection);
  process.on('uncaughtException', onException);
  return () => {
    process.off('unhandledRejection', onRejection);
    process.off('uncaughtException', onException);
  };
}

function describe(e: unknown): string {
  return e instanceof Error ? (e.stack ?? e.message) : String(e);
}
