/**
 * The broker as a library, for tools (benchmarks, the demo) that run it in their own process: start it, parse its
 * configuration, give it a logger. `kb-broker` itself is main.ts.
 */
export { startBroker, KEYBROKER_SERVER_OPTIONS, type RunningBroker, type StartOptions } from './broker';
export { parseConfig, ConfigError, HELP, type BrokerConfig } from './config';
export { createLogger, silentLogger, type Logger, type LogLevel } from './log';
export { BrokerMetrics } from './metrics';
