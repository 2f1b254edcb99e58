import { parseArgs, type ParseArgsConfig } from 'node:util';
import { GLOBAL_FLAGS } from './connection-flags';

/**
 * A small command tree: `kbctl <group> <command> [options]`, each level answering --help. Commands return an exit
 * code; errors meant for the user are CliError (message + code) so nothing prints a stack trace at them.
 */
export type Options = NonNullable<ParseArgsConfig['options']>;

export interface Io {
  out: (s: string) => void;
  err: (s: string) => void;
  env: NodeJS.ProcessEnv;
  /** relative file names (token, policy, secret files...) are resolved against this directory */
  cwd: string;
  /** all of standard input, for FILE arguments given as '-' (default: read file descriptor 0) */
  stdin?: () => Buffer;
  /** whether `err` is a terminal (long offline computations then report progress there) */
  errIsTTY?: boolean;
}

export interface Command<O extends Options = Options> {
  name: string;
  summary: string;
  /** text after the synopsis: arguments and flags, one per line */
  usage: string;
  options: O;
  positionals?: { min: number; max: number };
  run(args: { values: Record<string, string | boolean | string[] | boolean[] | undefined>; positionals: string[] }, io: Io): Promise<number>;
}

export interface Group {
  name: string;
  summary: string;
  commands: Command[];
}

export class CliError extends Error {
  constructor(
    message: string,
    readonly exitCode = 1,
  ) {
    super(message);
  }
}

const isHelp = (a: string | undefined) => a === '--help' || a === '-h' || a === 'help';

/**
 * Runs one command line and returns the exit code: 0 success, 1 failure, 2 usage error (unknown command, bad flags,
 * missing arguments), or a command's own code (3: the broker refused the admin token). Help asked for goes to `out`
 * and exits 0; help shown because the command line was incomplete goes to `err` and exits 2.
 */
export async function runCli(prog: string, about: string, tree: (Group | Command)[], argvIn: string[], io: Io): Promise<number> {
  const argv = hoistGlobalFlags(argvIn);
  // `kbctl help [GROUP [COMMAND]]` is `kbctl [GROUP [COMMAND]] --help`
  if (argv[0] === 'help' && argv.length > 1) return runCli(prog, about, tree, [...argv.slice(1), '--help'], io);
  const top = argv[0];
  if (top === undefined || isHelp(top)) {
    (top === undefined ? io.err : io.out)(rootHelp(prog, about, tree));
    return top === undefined ? 2 : 0;
  }
  const node = tree.find((n) => n.name === top);
  if (!node) {
    io.err(`${prog}: unknown command '${top}'. Run '${prog} --help'.`);
    return 2;
  }
  if ('commands' in node) {
    const sub = argv[1];
    if (sub === undefined || isHelp(sub)) {
      (sub === undefined ? io.err : io.out)(groupHelp(prog, node));
      return sub === undefined ? 2 : 0;
    }
    const cmd = node.commands.find((c) => c.name === sub);
    if (!cmd) {
      io.err(`${prog} ${node.name}: unknown command '${sub}'. Run '${prog} ${node.name} --help'.`);
      return 2;
    }
    return runCommand(`${prog} ${node.name}`, cmd, argv.slice(2), io);
  }
  return runCommand(prog, node, argv.slice(1), io);
}

/**
 * The connection flags (GLOBAL_FLAGS, each with a value) may stand anywhere, as with git, kubectl or curl:
 * `kbctl --token-file F policy list` is `kbctl policy list --token-file F`. They are moved after the command words
 * (and before a `--`), where the command's own flag parsing takes them.
 */
export function hoistGlobalFlags(argv: readonly string[]): string[] {
  const end = argv.indexOf('--') === -1 ? argv.length : argv.indexOf('--');
  const rest: string[] = [];
  const moved: string[] = [];
  for (let i = 0; i < end; i++) {
    const a = argv[i]!;
    const name = a.startsWith('--') ? a.slice(2).split('=')[0]! : '';
    if (!GLOBAL_FLAGS.includes(name)) {
      rest.push(a);
    } else if (a.includes('=')) {
      moved.push(a);
    } else if (i + 1 < end) {
      moved.push(a, argv[++i]!);
    } else {
      moved.push(a); // no value: the command's parser says so
    }
  }
  return [...rest, ...moved, ...argv.slice(end)];
}

async function runCommand(prefix: string, cmd: Command, argv: string[], io: Io): Promise<number> {
  const name = `${prefix} ${cmd.name}`;
  const hint = `Run '${name} --help'.`;
  const dashDash = argv.indexOf('--');
  const flags = dashDash === -1 ? argv : argv.slice(0, dashDash);
  if (flags.includes('--help') || flags.includes('-h')) {
    io.out(commandHelp(prefix, cmd));
    return 0;
  }
  let parsed: ReturnType<typeof parseArgs>;
  try {
    parsed = parseArgs({ args: argv, options: cmd.options, allowPositionals: true, strict: true });
  } catch (e) {
    io.err(`${name}: ${(e as Error).message}\n${hint}`);
    return 2;
  }
  const pos = cmd.positionals ?? { min: 0, max: 0 };
  if (parsed.positionals.length < pos.min || parsed.positionals.length > pos.max) {
    const want = pos.min === pos.max ? `${pos.min}` : pos.max >= 1000 ? `at least ${pos.min}` : `${pos.min}–${pos.max}`;
    io.err(`${name}: expected ${want} argument(s), got ${parsed.positionals.length}.\n${hint}`);
    return 2;
  }
  try {
    return await cmd.run({ values: parsed.values as Record<string, string | boolean | undefined>, positionals: parsed.positionals }, io);
  } catch (e) {
    if (e instanceof CliError) {
      io.err(`${name}: ${e.message}${e.exitCode === 2 ? `\n${hint}` : ''}`);
      return e.exitCode;
    }
    const err = e as { code?: string; message?: string };
    const message = err.message ?? String(e);
    io.err(`${name}: ${err.code && !message.startsWith(err.code) ? `${err.code}: ` : ''}${message}`);
    return 1;
  }
}

function rootHelp(prog: string, about: string, tree: (Group | Command)[]): string {
  const w = Math.max(...tree.map((n) => n.name.length)) + 2;
  return `${about}\n\nUsage: ${prog} <command> [options]\n\nCommands:\n${tree
    .map((n) => `  ${n.name.padEnd(w)}${n.summary}`)
    .join(
      '\n',
    )}\n\nRun '${prog} <command> --help' for details. The admin commands' connection flags (${GLOBAL_FLAGS.map((f) => `--${f}`).join(', ')})\nmay also come before the command.\n`;
}

function groupHelp(prog: string, g: Group): string {
  const w = Math.max(...g.commands.map((c) => c.name.length)) + 2;
  return `${prog} ${g.name} — ${g.summary}\n\nUsage: ${prog} ${g.name} <command> [options]\n\nCommands:\n${g.commands
    .map((c) => `  ${c.name.padEnd(w)}${c.summary}`)
    .join('\n')}\n\nRun '${prog} ${g.name} <command> --help' for details.\n`;
}

function commandHelp(prefix: string, c: Command): string {
  return `${prefix} ${c.name} — ${c.summary}\n\n${c.usage.trimEnd()}\n`;
}
