import {
  ConfigError,
  HELP,
  MAX_AUDIT_RETENTION_DAYS,
  MAX_REQUEST_TIMEOUT_SECONDS,
  MIN_REQUEST_TIMEOUT_SECONDS,
  parseConfig,
  type BrokerConfig,
} from '../src/config';

function parse(argv: string[], env: NodeJS.ProcessEnv = {}): BrokerConfig {
  const cfg = parseConfig(argv, env);
  if (cfg === 'help') throw new Error('unexpected help');
  return cfg;
}

function refusal(argv: string[], env: NodeJS.ProcessEnv = {}): ConfigError {
  try {
    parseConfig(argv, env);
  } catch (e) {
    if (e instanceof ConfigError) return e;
    throw e;
  }
  throw new Error(`accepted ${JSON.stringify({ argv, env })}`);
}

describe('parseConfig: --audit-retention', () => {
  it('defaults to 365 days', () => {
    expect(parse([]).auditRetentionDays).toBe(365);
    expect(parse([], { KB_AUDIT_RETENTION: '' }).auditRetentionDays).toBe(365);
  });

  it('takes the flag or KB_AUDIT_RETENTION, the flag winning; fractions allowed', () => {
    expect(parse(['--audit-retention', '30']).auditRetentionDays).toBe(30);
    expect(parse(['--audit-retention=0.5']).auditRetentionDays).toBe(0.5);
    expect(parse([], { KB_AUDIT_RETENTION: '90' }).auditRetentionDays).toBe(90);
    expect(parse(['--audit-retention', '7'], { KB_AUDIT_RETENTION: '90' }).auditRetentionDays).toBe(7);
    expect(parse([], { KB_AUDIT_RETENTION: String(MAX_AUDIT_RETENTION_DAYS) }).auditRetentionDays).toBe(MAX_AUDIT_RETENTION_DAYS);
  });

  it('0 (keep forever) is allowed', () => {
    expect(parse(['--audit-retention', '0']).auditRetentionDays).toBe(0);
    expect(parse([], { KB_AUDIT_RETENTION: '0' }).auditRetentionDays).toBe(0);
  });

  it.each([['-1'], ['-0.5'], ['abc'], ['30d'], ['NaN'], ['Infinity'], [' '], [String(MAX_AUDIT_RETENTION_DAYS + 1)], ['1e9']])(
    'refuses %j with a ConfigError naming the option and the value',
    (value) => {
      // `=`: parseArgs itself refuses a separate argument starting with a dash
      for (const e of [refusal([`--audit-retention=${value}`]), refusal([], { KB_AUDIT_RETENTION: value })]) {
        expect(e.message).toContain('--audit-retention must be a number in [0, 36500]');
        expect(e.message).toContain(JSON.stringify(value));
      }
    },
  );

  it('is listed in --help next to the other durations', () => {
    expect(parseConfig(['--help'], {})).toBe('help');
    expect(HELP).toMatch(/--audit-retention DAYS .*KB_AUDIT_RETENTION, default 365/);
    expect(HELP).toMatch(/0 = forever/);
  });
});

describe('parseConfig: --request-timeout', () => {
  it('defaults to 10 seconds', () => {
    expect(parse([]).requestTimeoutSeconds).toBe(10);
  });

  it('takes the flag or KB_REQUEST_TIMEOUT, the flag winning; fractions allowed', () => {
    expect(parse(['--request-timeout', '2.5']).requestTimeoutSeconds).toBe(2.5);
    expect(parse([], { KB_REQUEST_TIMEOUT: '30' }).requestTimeoutSeconds).toBe(30);
    expect(parse(['--request-timeout', '5'], { KB_REQUEST_TIMEOUT: '30' }).requestTimeoutSeconds).toBe(5);
    expect(parse(['--request-timeout', String(MIN_REQUEST_TIMEOUT_SECONDS)]).requestTimeoutSeconds).toBe(MIN_REQUEST_TIMEOUT_SECONDS);
    expect(parse(['--request-timeout', String(MAX_REQUEST_TIMEOUT_SECONDS)]).requestTimeoutSeconds).toBe(MAX_REQUEST_TIMEOUT_SECONDS);
  });

  it.each([['0'], ['0.01'], ['-1'], ['601'], ['10s'], [' '], ['Infinity']])('refuses %j: a call must always have a deadline, and a bounded one', (value) => {
    for (const e of [refusal([`--request-timeout=${value}`]), refusal([], { KB_REQUEST_TIMEOUT: value })]) {
      expect(e.message).toContain('--request-timeout must be a number in [0.05, 600]');
      expect(e.message).toContain(JSON.stringify(value));
    }
  });

  it('is listed in --help', () => {
    expect(HELP).toMatch(/--request-timeout SECONDS .*DEADLINE_EXCEEDED/);
    expect(HELP).toMatch(/KB_REQUEST_TIMEOUT, default 10/);
  });
});

describe('parseConfig: blank numeric values', () => {
  it('a blank value is refused rather than read as 0 (which would mean "unlimited" for --bundle-rate)', () => {
    expect(refusal(['--bundle-rate', ' ']).message).toMatch(/--bundle-rate must be a number ≥ 0, got " "/);
    expect(parse(['--bundle-rate', '0']).bundleRatePerSecond).toBe(0);
  });
});

describe('parseConfig: bounded resources on the guest-facing listener', () => {
  it('defaults', () => {
    const c = parse([]);
    expect({
      maxConnections: c.maxConnections,
      maxConnectionsPerPeer: c.maxConnectionsPerPeer,
      maxStreamsPerConnection: c.maxStreamsPerConnection,
      idleTimeoutSeconds: c.idleTimeoutSeconds,
      maxConnectionAgeSeconds: c.maxConnectionAgeSeconds,
      keepaliveSeconds: c.keepaliveSeconds,
      requestArrivalTimeoutSeconds: c.requestArrivalTimeoutSeconds,
    }).toEqual({
      maxConnections: 1024,
      maxConnectionsPerPeer: 128,
      maxStreamsPerConnection: 100,
      idleTimeoutSeconds: 300,
      maxConnectionAgeSeconds: 3600,
      keepaliveSeconds: 60,
      requestArrivalTimeoutSeconds: 10,
    });
  });

  it('takes flags or KB_* variables, the flag winning; 0 turns the timers off', () => {
    const c = parse(['--max-connections', '50', '--max-connections-per-peer', '5', '--idle-timeout', '0', '--request-arrival-timeout', '2.5'], {
      KB_MAX_CONNECTIONS: '70',
      KB_MAX_STREAMS_PER_CONNECTION: '16',
      KB_MAX_CONNECTION_AGE: '0',
      KB_KEEPALIVE: '0',
    });
    expect([
      c.maxConnections,
      c.maxConnectionsPerPeer,
      c.maxStreamsPerConnection,
      c.idleTimeoutSeconds,
      c.maxConnectionAgeSeconds,
      c.keepaliveSeconds,
      c.requestArrivalTimeoutSeconds,
    ]).toEqual([50, 5, 16, 0, 0, 0, 2.5]);
  });

  it.each([
    [['--max-connections', '0'], '--max-connections must be a number ≥ 1'],
    [['--max-connections', '2.5'], '--max-connections must be a whole number'],
    [['--max-connections', '10', '--max-connections-per-peer', '20'], '--max-connections-per-peer cannot exceed --max-connections'],
    [['--max-streams-per-connection', '0'], '--max-streams-per-connection must be a number in [1, '],
    [['--idle-timeout=-1'], '--idle-timeout must be a number in [0, 2000000]'],
    [['--request-arrival-timeout', '0'], '--request-arrival-timeout must be a number in [0.05, 600]'],
  ])('refuses %j', (argv, message) => {
    expect(refusal(argv).message).toContain(message);
  });

  it('are listed in --help', () => {
    for (const flag of [
      '--max-connections N',
      '--max-connections-per-peer N',
      '--max-streams-per-connection N',
      '--idle-timeout SECONDS',
      '--max-connection-age SECONDS',
      '--keepalive SECONDS',
      '--request-arrival-timeout SECONDS',
    ]) {
      expect(HELP).toContain(flag);
    }
  });
});
