import { spawnSync } from 'node:child_process';
import { join } from 'node:path';

const ROOT = join(__dirname, '../../..');
const CHILD = join(__dirname, 'support/last-resort-child.ts');

/** The child's exit code, stdout and its JSON log lines. */
function run(throws: number) {
  const r = spawnSync(process.execPath, ['--import', 'tsx', CHILD, String(throws)], {
    cwd: ROOT,
    env: { ...process.env, NODE_OPTIONS: '' },
    encoding: 'utf8',
    timeout: 60_000,
  });
  const lines = r.stderr
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as { level: string; msg: string; error?: string; exitCode?: number });
  return { code: r.status, stdout: r.stdout, lines };
}

describe('the last-resort handler (kb-broker main)', () => {
  it('logs an unhandled rejection and an uncaught exception as bugs and keeps the process serving', () => {
    const { code, stdout, lines } = run(1);
    expect(code).toBe(0);
    expect(stdout).toBe('still serving\n');
    expect(lines).toEqual([
      expect.objectContaining({
        level: 'error',
        msg: 'unhandled promise rejection (a bug); the broker keeps serving',
        error: expect.stringContaining('a promise nobody awaits'),
      }),
      expect.objectContaining({
        level: 'error',
        msg: 'uncaught exception (a bug); the broker keeps serving',
        error: expect.stringContaining('thrown from timer 0'),
      }),
    ]);
  });

  it('exits with code 70 (for a supervisor to restart it) on the 11th uncaught exception within a minute', () => {
    const { code, stdout, lines } = run(11);
    expect(code).toBe(70);
    expect(stdout).toBe('');
    expect(lines.filter((l) => l.msg === 'uncaught exception (a bug); the broker keeps serving')).toHaveLength(10);
    expect(lines.at(-1)).toMatchObject({ msg: 'uncaught exception; too many within a minute, exiting for a restart', exitCode: 70 });
  });
});
