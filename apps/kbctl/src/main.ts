#!/usr/bin/env tsx
import { runCli } from './cli';
import { adminTree } from './admin/commands';

const ABOUT = 'kbctl — the guest owner\'s tool for the SEV key broker';

export const tree = [...adminTree];

if (require.main === module) {
  runCli('kbctl', ABOUT, tree, process.argv.slice(2), {
    out: (s) => process.stdout.write(s.endsWith('\n') ? s : s + '\n'),
    err: (s) => process.stderr.write(s.endsWith('\n') ? s : s + '\n'),
    env: process.env,
    cwd: process.cwd(),
  }).then((code) => {
    process.exitCode = code;
  });
}
