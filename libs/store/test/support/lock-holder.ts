/**
 * A separate process holding a data-directory lock (node --import tsx lock-holder.ts LOCK_FILE): prints its pid once
 * it holds the lock, then waits to be killed.
 */
import { lockDataDir } from '../../src/data-dir-lock';

lockDataDir(process.argv[2]!).then(
  () => {
    process.stdout.write(`${JSON.stringify({ pid: process.pid })}\n`);
    setInterval(() => undefined, 60_000);
  },
  (e: Error) => {
    process.stderr.write(`${e.message}\n`);
    process.exit(1);
  },
);
