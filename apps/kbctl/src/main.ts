// kbctl's command line. Run from the build (apps/kbctl/dist/main.mjs: `npx kbctl`) or from source with tsx.
import { runCli, type Command, type Group } from './cli';
import { adminTree } from './admin/commands';
import { importGroup } from './import';
import { health } from './health';
import { firmwareGroup, vmGroup } from './service';
import { measure, measurementGroup, policyFromConfigs, secretBuild, session, validate } from './owner';
import { igvm, snpGroup } from './owner';

declare const __KB_BUNDLE__: boolean | undefined;

const ABOUT = "kbctl — the guest owner's tool for the SEV key broker";

/** Offline commands that join an admin group (`kbctl secret build`, `kbctl policy from-configs`). */
const extraGroupCommands: Record<string, { summary: string; commands: Command[] }> = {
  secret: { summary: 'store secrets (write-only: values are never read back); build LAUNCH_SECRET packets offline', commands: [secretBuild] },
  policy: { summary: 'create, show, list and delete release policies; derive one from launch configurations', commands: [policyFromConfigs] },
};

export const tree: (Group | Command)[] = [
  ...adminTree.map((n) => {
    const extra = 'commands' in n ? extraGroupCommands[n.name] : undefined;
    return extra && 'commands' in n ? { ...n, summary: extra.summary, commands: [...n.commands, ...extra.commands] } : n;
  }),
  measure,
  measurementGroup,
  validate,
  session,
  igvm,
  snpGroup,
  importGroup,
  vmGroup,
  firmwareGroup,
  health,
];

if ((typeof __KB_BUNDLE__ !== 'undefined' && __KB_BUNDLE__) || require.main === module) {
  runCli('kbctl', ABOUT, tree, process.argv.slice(2), {
    out: (s) => process.stdout.write(s.endsWith('\n') ? s : s + '\n'),
    err: (s) => process.stderr.write(s.endsWith('\n') ? s : s + '\n'),
    env: process.env,
    cwd: process.cwd(),
    errIsTTY: process.stderr.isTTY === true,
  }).then((code) => {
    process.exitCode = code;
  });
}
