#!/usr/bin/env tsx
import { ConfigError, HELP, parseConfig } from './config';
import { startBroker } from './broker';
import { installLastResort } from './last-resort';
import { createLogger } from './log';

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

main().then((code) => {
  process.exitCode = code;
});
