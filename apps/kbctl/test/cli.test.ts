import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CliError, hoistGlobalFlags, runCli, type Command, type Group, type Io } from '../src/cli';
import { normalizeAddress } from '../src/connection-flags';
import { tree } from '../src/main';

/** The command tree, help and argument handling: nothing here talks to a broker. */

interface Result {
  code: number;
  out: string;
  err: string;
}

let work: string;
beforeAll(() => {
  work = mkdtempSync(join(tmpdir(), 'kbctl-cli-'));
});
afterAll(() => rmSync(work, { recursive: true, force: true }));

async function run(argv: string[], opts: { tree?: (Group | Command)[]; io?: Partial<Io> } = {}): Promise<Result> {
  const out: string[] = [];
  const err: string[] = [];
  const code = await runCli('kbctl', 'kbctl — test', opts.tree ?? tree, argv, {
    out: (s) => out.push(s),
    err: (s) => err.push(s),
    env: {},
    cwd: work,
    stdin: () => {
      throw new Error('this test has no stdin');
    },
    ...opts.io,
  });
  return { code, out: out.join('\n'), err: err.join('\n') };
}

const escapeRe = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

const groups = tree.filter((n): n is Group => 'commands' in n);
const commands: [string, Command][] = [
  ...groups.flatMap((g) => g.commands.map((c): [string, Command] => [`${g.name} ${c.name}`, c])),
  ...tree.filter((n): n is Command => !('commands' in n)).map((c): [string, Command] => [c.name, c]),
];

describe('the command tree', () => {
  it('has the admin groups and commands, with unique names', () => {
    expect(tree.map((n) => n.name)).toEqual([
      'policy',
      'secret',
      'keyset',
      'resource',
      'kbs-resource',
      'report-key',
      'connection',
      'audit',
      'owner',
      'measure',
      'measurement',
      'validate',
      'session',
      'igvm',
      'snp',
      'import',
      'vm',
      'firmware',
      'health',
    ]);
    expect(new Set(tree.map((n) => n.name)).size).toBe(tree.length);
    for (const g of groups) {
      expect(g.commands.length).toBeGreaterThan(0);
      expect(new Set(g.commands.map((c) => c.name)).size).toBe(g.commands.length);
    }
    expect(commands.map(([path]) => path)).toEqual(
      expect.arrayContaining([
        'policy put',
        'secret put',
        'keyset put',
        'resource put',
        'kbs-resource put',
        'report-key create',
        'connection revoke',
        'audit',
        'secret build',
        'policy from-configs',
      ]),
    );
  });

  it.each(commands)('%s: its usage line names the command and every flag it accepts is documented', (path, c) => {
    expect(c.usage).toMatch(new RegExp(`^Usage: kbctl ${path}( |$)`, 'm'));
    for (const flag of Object.keys(c.options)) expect(c.usage).toContain(`--${flag}`);
    expect(c.summary.length).toBeGreaterThan(0);
  });
});

describe('help', () => {
  it.each([['--help'], ['-h'], ['help']])('root: kbctl %s prints every command and exits 0', async (flag) => {
    const r = await run([flag]);
    expect(r.code).toBe(0);
    expect(r.err).toBe('');
    expect(r.out).toContain('Usage: kbctl <command> [options]');
    for (const n of tree) expect(r.out).toMatch(new RegExp(`^  ${escapeRe(n.name)} +${escapeRe(n.summary)}$`, 'm'));
  });

  it('root without a command: usage on stderr, exit 2', async () => {
    const r = await run([]);
    expect(r.code).toBe(2);
    expect(r.out).toBe('');
    expect(r.err).toContain('Usage: kbctl <command> [options]');
  });

  it.each(groups.map((g) => [g.name, g] as const))('group %s: --help, -h and help print its commands and exit 0', async (name, g) => {
    for (const flag of ['--help', '-h', 'help']) {
      const r = await run([name, flag]);
      expect(r.code).toBe(0);
      expect(r.err).toBe('');
      expect(r.out).toContain(`Usage: kbctl ${name} <command> [options]`);
      for (const c of g.commands) expect(r.out).toMatch(new RegExp(`^  ${c.name} +`, 'm'));
    }
    const bare = await run([name]);
    expect(bare.code).toBe(2);
    expect(bare.out).toBe('');
    expect(bare.err).toContain(`Usage: kbctl ${name} <command> [options]`);
  });

  // the guest-owner commands (measure, validate, session, secret build, ...) are offline: no connection flags
  const adminCommands = commands.filter(([, c]) => 'admin-url' in c.options);
  it('every admin command takes the connection flags; no offline command does', () => {
    expect(adminCommands.map(([p]) => p)).toEqual(expect.arrayContaining(['policy put', 'secret put', 'audit']));
    // the attestation service commands take --service instead (test/service)
    for (const [p] of commands.filter(([, c]) => !('admin-url' in c.options) && !('service' in c.options))) {
      expect([
        'measure',
        'measurement build',
        'validate',
        'session',
        'secret build',
        'policy from-configs',
        'igvm',
        'snp id-block',
        'snp id-block-verify',
        'snp verify-report',
        'import simple-kbs',
        'health',
      ]).toContain(p);
    }
  });

  it.each(adminCommands)('command %s: --help and -h print its usage and the connection flags, exit 0', async (path, c) => {
    for (const flag of ['--help', '-h']) {
      const r = await run([...path.split(' '), flag]);
      expect(r.code).toBe(0);
      expect(r.err).toBe('');
      expect(r.out.startsWith(`kbctl ${path} — ${c.summary}\n`)).toBe(true);
      expect(r.out).toContain(`Usage: kbctl ${path}`);
      expect(r.out).toContain('--admin-url HOST[:PORT]');
      expect(r.out).toContain('--token-file FILE');
    }
  });

  it('--help wins over other arguments and flags, even invalid ones', async () => {
    const r = await run(['secret', 'put', 'a', 'b', '--bogus', '--help']);
    expect(r.code).toBe(0);
    expect(r.out).toContain('Usage: kbctl secret put ID');
  });

  it('kbctl help GROUP [COMMAND] is GROUP [COMMAND] --help', async () => {
    expect(await run(['help', 'policy'])).toEqual(await run(['policy', '--help']));
    expect(await run(['help', 'report-key', 'create'])).toEqual(await run(['report-key', 'create', '--help']));
    expect(await run(['help', 'audit'])).toEqual(await run(['audit', '--help']));
    const unknown = await run(['help', 'nope']);
    expect(unknown.code).toBe(2);
    expect(unknown.err).toContain("unknown command 'nope'");
  });

  it("'--help' after '--' is an argument, not a request for help", async () => {
    // the argument goes on to the command, which then needs the (missing) token: no help printed
    const r = await run(['policy', 'get', '--', '--help']);
    expect(r.out).toBe('');
    expect(r.code).toBe(1);
    expect(r.err).toContain('cannot read the admin token');
  });
});

describe('usage errors exit 2 with a hint', () => {
  it('unknown command and unknown group command', async () => {
    const top = await run(['polcy', 'list']);
    expect(top).toEqual({ code: 2, out: '', err: "kbctl: unknown command 'polcy'. Run 'kbctl --help'." });
    const sub = await run(['policy', 'lst']);
    expect(sub).toEqual({ code: 2, out: '', err: "kbctl policy: unknown command 'lst'. Run 'kbctl policy --help'." });
  });

  it.each([
    [['policy', 'list', '--bogus'], "Unknown option '--bogus'", 'kbctl policy list'],
    [['policy', 'get'], 'expected 1 argument(s), got 0', 'kbctl policy get'],
    [['policy', 'get', 'a', 'b'], 'expected 1 argument(s), got 2', 'kbctl policy get'],
    [['policy', 'put', 'a'], 'expected 2 argument(s), got 1', 'kbctl policy put'],
    [['policy', 'list', 'extra'], 'expected 0 argument(s), got 1', 'kbctl policy list'],
    [['keyset', 'put', 'KS'], 'expected at least 2 argument(s), got 1', 'kbctl keyset put'],
    [['secret', 'put', 'id', '--value'], "Option '--value <value>' argument missing", 'kbctl secret put'],
    [['audit', '--json=yes'], "Option '--json' does not take an argument", 'kbctl audit'],
    [['connection', 'revoke'], 'expected 1 argument(s), got 0', 'kbctl connection revoke'],
  ])('%j', async (argv, message, prefix) => {
    const r = await run(argv);
    expect(r.code).toBe(2);
    expect(r.out).toBe('');
    expect(r.err).toContain(`${prefix}: ${message}`);
    expect(r.err).toContain(`Run '${prefix} --help'.`);
  });

  // No token file exists in `work`: these must be rejected before the connection is even prepared.
  it.each([
    [['secret', 'put', 'id'], 'give exactly one of --file, --value, --base64'],
    [['secret', 'put', 'id', '--value', 'v', '--base64', 'dg=='], 'give exactly one of --file, --value, --base64'],
    [['secret', 'put', 'id', '--value', 'v', '--file', 'f', '--base64', 'dg=='], 'give exactly one of --file, --value, --base64'],
    [['secret', 'put', 'id', '--base64', 'not base64!'], '--base64 is not valid base64'],
    [['secret', 'put', 'id', '--base64', 'abc'], '--base64 is not valid base64'],
    [['audit', '--limit', '0'], '--limit must be an integer in 1..10000'],
    [['audit', '--limit', '2.5'], '--limit must be an integer in 1..10000'],
    [['audit', '--limit', 'ten'], '--limit must be an integer in 1..10000'],
    [['audit', '--limit', '10001'], '--limit must be an integer in 1..10000'],
  ])('%j is a usage error before any connection', async (argv, message) => {
    const r = await run(argv);
    expect(r.code).toBe(2);
    expect(r.err).toContain(message);
    expect(r.err).not.toContain('admin token');
    expect(r.err).toMatch(/Run 'kbctl (secret put|audit) --help'\.$/);
  });

  it('never echoes a secret value in a usage error', async () => {
    const value = 'hunter2-very-secret-value';
    for (const argv of [
      ['secret', 'put', 'id', '--value', value, '--file', 'x'],
      ['secret', 'put', 'id', value, '--value', value],
      ['secret', 'put', '--value', value],
      ['secret', 'put', 'id', '--value', value, '--bogus'],
      ['secret', 'put', 'id', `--valu=${value}`],
      ['secret', 'put', 'id', '--base64', `${value}!`],
    ]) {
      const r = await run(argv);
      expect(r.code).toBe(2);
      expect(r.out + r.err).not.toContain(value);
    }
  });
});

describe('connection set-up errors (exit 1, before any network traffic)', () => {
  it('a missing token file names the file and the ways to give a token', async () => {
    const r = await run(['policy', 'list']);
    expect(r.code).toBe(1);
    expect(r.err).toBe(
      'kbctl policy list: cannot read the admin token from .kb-data/admin.token: no such file (the broker writes it there on its first start: run kbctl where you started it); pass --token-file or set KB_ADMIN_TOKEN',
    );
    const f = await run(['policy', 'list', '--token-file', 'nope.token'], { io: { env: { KB_ADMIN_TOKEN_FILE: 'ignored' } } });
    expect(f.err).toBe('kbctl policy list: cannot read the admin token from nope.token: no such file; pass --token-file or set KB_ADMIN_TOKEN');
  });

  it('an empty token file is reported as such', async () => {
    writeFileSync(join(work, 'empty.token'), '\n');
    const r = await run(['policy', 'list', '--token-file', 'empty.token']);
    expect(r.code).toBe(1);
    expect(r.err).toBe('kbctl policy list: the admin token in empty.token is empty');
  });

  it('KB_ADMIN_TOKEN: blank or non-ASCII values are refused locally, without echoing them', async () => {
    const blank = await run(['policy', 'list'], { io: { env: { KB_ADMIN_TOKEN: '   ' } } });
    expect(blank).toEqual({ code: 1, out: '', err: 'kbctl policy list: the admin token in KB_ADMIN_TOKEN is empty' });
    const odd = await run(['policy', 'list'], { io: { env: { KB_ADMIN_TOKEN: 'tökén-0123456789abcdef' } } });
    expect(odd).toEqual({ code: 1, out: '', err: 'kbctl policy list: the admin token in KB_ADMIN_TOKEN is not printable ASCII' });
  });

  it('an unreadable --tls-ca file is a one-line error', async () => {
    writeFileSync(join(work, 'ok.token'), 'a-token-of-sufficient-length\n');
    const r = await run(['policy', 'list', '--token-file', 'ok.token', '--tls-ca', 'missing-ca.pem']);
    expect(r.code).toBe(1);
    expect(r.err).toBe('kbctl policy list: cannot read the TLS CA certificate from missing-ca.pem (ENOENT)');
  });

  it('input files are resolved against io.cwd and reported by the name given', async () => {
    const r = await run(['policy', 'put', 'p', 'no-such-policy.json']);
    expect(r.code).toBe(1);
    expect(r.err).toBe('kbctl policy put: cannot read the policy from no-such-policy.json: ENOENT');
    mkdirSync(join(work, 'sub'), { recursive: true });
    const dir = await run(['resource', 'put', 'r', 'sub']);
    expect(dir.err).toBe('kbctl resource put: cannot read the resource from sub: EISDIR');
  });

  it('the default token file is looked up relative to io.cwd', async () => {
    mkdirSync(join(work, 'cwd-test', '.kb-data'), { recursive: true });
    writeFileSync(join(work, 'cwd-test', '.kb-data', 'admin.token'), 'a-token-of-sufficient-length\n');
    // the token is found, so the failure is the (closed) address, not the token
    const r = await run(['policy', 'list', '--admin-url', '127.0.0.1:1'], { io: { cwd: join(work, 'cwd-test') } });
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/^kbctl policy list: cannot reach the broker's admin API at 127\.0\.0\.1:1: connection refused/);
  });
});

describe('runCli error handling', () => {
  const fake = (run: Command['run']): Command => ({
    name: 'x',
    summary: 'test',
    usage: 'Usage: t x',
    options: { n: { type: 'string' } },
    positionals: { min: 0, max: 1 },
    run,
  });

  it('passes the parsed values and positionals and returns the exit code', async () => {
    const seen: unknown[] = [];
    const r = await run(['x', 'pos', '--n', '5'], {
      tree: [
        fake(async (a, io) => {
          seen.push(a);
          io.out('done');
          return 7;
        }),
      ],
    });
    expect(r).toEqual({ code: 7, out: 'done', err: '' });
    expect(seen).toEqual([{ values: { n: '5' }, positionals: ['pos'] }]);
  });

  it('CliError: its message and exit code; a usage CliError (2) gets the help hint', async () => {
    const one = await run(['x'], { tree: [fake(async () => Promise.reject(new CliError('nope', 4)))] });
    expect(one).toEqual({ code: 4, out: '', err: 'kbctl x: nope' });
    const two = await run(['x'], { tree: [fake(async () => Promise.reject(new CliError('bad flags', 2)))] });
    expect(two).toEqual({ code: 2, out: '', err: "kbctl x: bad flags\nRun 'kbctl x --help'." });
  });

  it('other errors: one line with their code, exit 1, no stack trace', async () => {
    const coded = await run(['x'], { tree: [fake(async () => Promise.reject(Object.assign(new Error('went wrong'), { code: 'EWRONG' })))] });
    expect(coded).toEqual({ code: 1, out: '', err: 'kbctl x: EWRONG: went wrong' });
    // Node's fs errors already start with their code: not repeated
    const fsErr = await run(['x'], {
      tree: [fake(async () => Promise.reject(Object.assign(new Error("ENOENT: no such file or directory, open 'f'"), { code: 'ENOENT' })))],
    });
    expect(fsErr.err).toBe("kbctl x: ENOENT: no such file or directory, open 'f'");
    const thrown = await run(['x'], { tree: [fake(async () => Promise.reject('a string'))] });
    expect(thrown).toEqual({ code: 1, out: '', err: 'kbctl x: a string' });
  });
});

describe('addresses and flags as users type them', () => {
  it('--admin-url HOST means port 44445; a scheme or trailing slash is dropped; a bare port is refused', () => {
    expect(normalizeAddress('localhost', 44445)).toEqual({ target: 'localhost:44445' });
    expect(normalizeAddress('10.0.0.7:9000', 44445)).toEqual({ target: '10.0.0.7:9000' });
    expect(normalizeAddress('[::1]', 44445)).toEqual({ target: '[::1]:44445' });
    expect(normalizeAddress('http://broker.example.com/', 44445)).toEqual({ target: 'broker.example.com:44445' });
    expect(normalizeAddress('44445', 44445)).toEqual({ problem: 'give HOST:PORT, for example 127.0.0.1:44445' });
    expect(normalizeAddress('h:70000', 44445)).toEqual({ problem: 'port 70000 is out of range (1–65535)' });
    expect(normalizeAddress('a b', 44445)).toHaveProperty('problem');
  });

  it('a bad --admin-url is a usage error (exit 2) before any token is read', async () => {
    const r = await run(['--admin-url', '44445', 'policy', 'list']);
    expect(r.code).toBe(2);
    expect(r.err).toBe("kbctl policy list: --admin-url 44445: give HOST:PORT, for example 127.0.0.1:44445\nRun 'kbctl policy list --help'.");
  });

  it('a bad KB_ADMIN_URL or KB_BROKER_URL is named as the variable, not as a flag', async () => {
    const admin = await run(['policy', 'list'], { io: { env: { KB_ADMIN_URL: 'a b' } } });
    expect(admin.code).toBe(2);
    expect(admin.err).toMatch(/^kbctl policy list: KB_ADMIN_URL a b: expected HOST\[:PORT\]/);
    const health = await run(['health'], { io: { env: { KB_BROKER_URL: '44444' } } });
    expect(health.code).toBe(2);
    expect(health.err).toMatch(/^kbctl health: KB_BROKER_URL 44444: give HOST:PORT, for example 127\.0\.0\.1:44444/);
  });

  it('connection flags anywhere move behind the command words, values kept with them; nothing after -- moves', () => {
    expect(hoistGlobalFlags(['--token-file', 'F', 'policy', 'list'])).toEqual(['policy', 'list', '--token-file', 'F']);
    expect(hoistGlobalFlags(['--admin-url=H', 'policy', '--tls-ca', 'C', 'get', 'x'])).toEqual(['policy', 'get', 'x', '--admin-url=H', '--tls-ca', 'C']);
    expect(hoistGlobalFlags(['policy', 'get', '--', '--token-file', 'F'])).toEqual(['policy', 'get', '--', '--token-file', 'F']);
    expect(hoistGlobalFlags(['measure', '--mode', 'sev'])).toEqual(['measure', '--mode', 'sev']);
  });

  it('kbctl --token-file F policy list reads F (the flag before the command is not an unknown command)', async () => {
    const r = await run(['--token-file', 'missing.token', 'policy', 'list']);
    expect(r.code).toBe(1);
    expect(r.err).toBe('kbctl policy list: cannot read the admin token from missing.token: no such file; pass --token-file or set KB_ADMIN_TOKEN');
  });

  it('an offline command given a connection flag says the flag does not apply to it', async () => {
    const r = await run(['--token-file', 'F', 'measure', '--mode', 'sev', '--ovmf', 'x']);
    expect(r.code).toBe(2);
    expect(r.err).toContain("Unknown option '--token-file'");
  });
});
