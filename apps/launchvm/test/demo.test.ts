import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { ROOT, TSX } from './support/broker';

/** `npm run demo` (tools/demo/demo.ts) as a user runs it: it must pass and say so. */
it('npm run demo passes: secret delivered, tampered firmware and debug policy refused, audit explains', () => {
  const r = spawnSync(TSX, [join(ROOT, 'tools/demo/demo.ts')], { cwd: ROOT, encoding: 'utf8', env: { ...process.env, NODE_OPTIONS: '' }, timeout: 90_000 });
  expect(r.stdout).toMatch(/demo passed in [\d.]+ s\n$/);
  expect(r.stdout).not.toMatch(/^\s+FAIL /m);
  expect(r.status).toBe(0);
}, 100_000);
