import type { Command, Group } from '../../src/cli';
import { tree } from '../../src/main';
import { kbctl, tempDir } from './support/cli';

/** The offline commands document every flag (and every short alias) in --help, and need no broker. */
const find = (path: string): Command => {
  const [a, b] = path.split(' ');
  const node = tree.find((n) => n.name === a)!;
  return b === undefined ? (node as Command) : (node as Group).commands.find((c) => c.name === b)!;
};
const OFFLINE = ['measure', 'measurement build', 'validate', 'session', 'secret build', 'policy from-configs'];

describe.each(OFFLINE)('kbctl %s --help', (path) => {
  it('exits 0, prints the usage, every flag with its short alias, and the exit codes', async () => {
    const c = find(path);
    const r = await kbctl([...path.split(' '), '--help']);
    expect(r.code).toBe(0);
    expect(r.err).toBe('');
    expect(r.out.startsWith(`kbctl ${path} — ${c.summary}\n`)).toBe(true);
    expect(r.out).toContain(`Usage: kbctl ${path}`);
    for (const [name, o] of Object.entries(c.options)) {
      expect(r.out).toContain(`--${name}`);
      if (o.short) expect(r.out).toContain(`-${o.short}, --${name}`);
    }
    expect(r.out).toContain('Exit status: 0');
    expect(r.out).not.toContain('--admin-url');
    expect(c.options).not.toHaveProperty('token-file');
  });
});

it("the admin groups list their offline additions, and admin 'secret put' is unchanged", async () => {
  expect((await kbctl(['secret', '--help'])).out).toMatch(/^ {2}build +build a LAUNCH_SECRET packet offline/m);
  expect((await kbctl(['secret', '--help'])).out).toMatch(/^ {2}put +store a secret value/m);
  expect((await kbctl(['policy', '--help'])).out).toMatch(/^ {2}from-configs +write a policy document/m);
  expect((await kbctl(['--help'])).out).toMatch(/^ {2}validate +validate an SEV\/SEV-ES launch measurement/m);
  const empty = tempDir('help');
  const put = await kbctl(['secret', 'put', 'id', '--value', 'v'], { env: {}, cwd: empty.dir });
  empty.cleanup();
  expect(put.err).toContain('cannot read the admin token');
});

it("validate's options are virt-qemu-sev-validate's, with the same short aliases", () => {
  const shorts = Object.fromEntries(Object.entries(find('validate').options).flatMap(([k, o]) => (o.short ? [[o.short, k]] : [])));
  expect(shorts).toEqual({
    d: 'debug',
    q: 'quiet',
    m: 'measurement',
    f: 'firmware',
    k: 'kernel',
    r: 'initrd',
    e: 'cmdline',
    n: 'num-cpus',
    '0': 'vmsa-cpu0',
    '1': 'vmsa-cpu1',
    c: 'connect',
    o: 'domain',
    i: 'insecure',
    g: 'ignore-config',
    s: 'inject-secret',
  });
  expect(Object.keys(find('validate').options).sort()).toEqual(
    [
      'debug',
      'quiet',
      'measurement',
      'api-major',
      'api-minor',
      'build-id',
      'policy',
      'firmware',
      'kernel',
      'initrd',
      'cmdline',
      'num-cpus',
      'vmsa-cpu0',
      'vmsa-cpu1',
      'cpu-family',
      'cpu-model',
      'cpu-stepping',
      'tik',
      'tek',
      'tk',
      'connect',
      'domain',
      'insecure',
      'ignore-config',
      'inject-secret',
      'secret-payload',
      'secret-header',
    ].sort(),
  );
});
