// kb-broker's command line. Run from the build (apps/broker/dist/main.js: `npm start`, `npx kb-broker`) or from
// source with tsx (tests, `tsx apps/broker/src/main.ts`).
import { format } from 'node:util';
import { setLogger } from '@grpc/grpc-js';
import { ConfigError, HELP, parseConfig } from './config';
import { startBroker } from './broker';
import { installLastResort } from './last-resort';
import { createLogger } from './log';

declare const __KB_BUNDLE__: boolean | undefined;

async function main(): Promise<number> {
  let config;
  try {
    config = parseConfig(process.argv.slice(2));
  } catch (e) {
    process.stderr.write(`kb-broker: ${(e as Error).message}\nRun 'kb-broker --help'.\n`);
    return 2;
  }
  if (config === 'help') {
    process.stdout.write(HELP);
    return 0;
  }
  const logger = createLogger(config.logLevel);
  installLastResort(logger);
  // grpc-js writes its own diagnostics with console.error; they go into the JSON log like everything else.
  setLogger({
    error: (...a: unknown[]) => logger.warn('grpc', { detail: format(...a) }),
    info: (...a: unknown[]) => logger.info('grpc', { detail: format(...a) }),
    debug: (...a: unknown[]) => logger.debug('grpc', { detail: format(...a) }),
  });
  let broker;
  try {
    broker = await startBroker(config, { logger });
  } catch (e) {
    logger.error('cannot start the broker', { error: e instanceof ConfigError ? e.message : (e as Error).message });
    return 1;
  }
  await new Promise<void>((resolve) => {
    const stop = (signal: string) => {
      logger.info('shutting down', { signal });
      resolve();
    };
    process.once('SIGINT', () => stop('SIGINT'));
    process.once('SIGTERM', () => stop('SIGTERM'));
  });
  await broker.close();
  return 0;
}

if ((typeof __KB_BUNDLE__ !== 'undefined' && __KB_BUNDLE__) || require.main === module) {
  main().then((code) => {
    process.exitCode = code;
  });
}
