// Run by last-resort.test.ts as its own process (node --import tsx): a broker-like process with the last-resort
// handler installed, into which argv[2] bugs are injected: one unhandled rejection, then N exceptions from timers.
import { installLastResort } from '../../src/last-resort';
import { createLogger } from '../../src/log';

installLastResort(createLogger('info'));
const throws = Number(process.argv[2] ?? 1);
void Promise.reject(new Error('a promise nobody awaits'));
for (let i = 0; i < throws; i++) {
  setTimeout(() => {
    throw new Error(`thrown from timer ${i}`);
  }, 10 + i);
}
setTimeout(() => process.stdout.write('still serving\n'), 300);
