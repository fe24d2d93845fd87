// `ftvm <command> ...`: a small dispatcher. Each command is a module under runtime/commands/
// exporting `command: Command`; it is imported only when used, so startup stays cheap.

import { errorLine } from './commands/error-line.js';

export interface Command {
  /** One line: `run <elf> [--mem MiB] ...`. */
  usage: string;
  summary: string;
  /** Returns the process exit code. Expected errors are printed as one `ftvm: ...` line. */
  run(argv: string[]): Promise<number>;
}

const commands: Record<string, () => Promise<{ command: Command }>> = {
  run: () => import('./commands/run.js'),
  record: () => import('./commands/record.js'),
  replay: () => import('./commands/replay.js'),
  demo: () => import('./commands/demo.js'),
  diagram: () => import('./commands/diagram.js'),
  primary: () => import('./commands/primary.js'),
  backup: () => import('./commands/backup.js'),
  pair: () => import('./commands/pair.js'),
};

/** Register a command (the integrator adds record, replay, demo). */
export function registerCommand(name: string, load: () => Promise<{ command: Command }>): void {
  commands[name] = load;
}

async function usage(): Promise<string> {
  const lines = ['usage: ftvm <command> [options]', 'commands:'];
  for (const [name, load] of Object.entries(commands)) {
    // One broken command module must not take the usage text (or the other commands) down.
    const command = await load().then((mod) => mod.command, () => undefined);
    if (command) lines.push(`  ftvm ${command.usage}`, `      ${command.summary}`);
    else lines.push(`  ftvm ${name}  (unavailable in this build)`);
  }
  return lines.join('\n') + '\n';
}

/** `--help`/`-h` before a `--` asks for the command's usage, whatever else is on the line. */
export const asksHelp = (argv: readonly string[]): boolean => {
  for (const a of argv) {
    if (a === '--') return false;
    if (a === '--help' || a === '-h') return true;
  }
  return false;
};

/**
 * `--mem -5` becomes `--mem=-5`. node:util's parseArgs takes a word that starts with a dash for
 * the next option and calls the value "ambiguous"; joined, the command's own check sees the
 * number and names what it wants. Only a number is joined: `--stats -h` stays two words.
 */
export function joinNegativeValues(argv: readonly string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--') return out.concat(argv.slice(i));
    const next = argv[i + 1];
    if (/^--[^=-][^=]*$/.test(a) && next !== undefined && /^-\d/.test(next)) {
      out.push(`${a}=${next}`);
      i++;
    } else out.push(a);
  }
  return out;
}

/** Options that may be given more than once (each `--net` adds a forward). */
const REPEATABLE = new Set(['net']);

/**
 * The first long option given twice, if any: parseArgs would keep the last value silently, and
 * `--arbiter file:/a --arbiter etcd:…` would then run against an arbiter the operator may not
 * have meant. Words after `--` are the guest's.
 */
export function repeatedOption(argv: readonly string[]): string | undefined {
  const seen = new Set<string>();
  for (const a of argv) {
    if (a === '--') return undefined;
    const m = /^--([^=]+)/.exec(a);
    if (!m || REPEATABLE.has(m[1]!)) continue;
    if (seen.has(m[1]!)) return m[1];
    seen.add(m[1]!);
  }
  return undefined;
}

/** An error the operator caused (a bad flag, a missing file, a port in use) as one line, or undefined for a bug. */
function operatorError(e: unknown): { line: string; exitCode: number } | undefined {
  if (!(e instanceof Error)) return undefined;
  const code = (e as NodeJS.ErrnoException).code;
  const exitCode = (e as { exitCode?: unknown }).exitCode;
  if (typeof exitCode === 'number') return { line: e.message, exitCode };  // CliError
  if (e.name === 'ViewFlagError' || code?.startsWith('ERR_PARSE_ARGS')) return { line: errorLine(e), exitCode: 2 };
  // A system call refused (ENOENT, EACCES, EISDIR, EADDRINUSE ...): the host said why, in one line.
  if ((e as NodeJS.ErrnoException).syscall !== undefined && code !== undefined) return { line: e.message, exitCode: 1 };
  return undefined;
}

/** 128 + SIGPIPE, as a shell reports a writer whose reader went away (`ftvm demo | head`). */
const EXIT_BROKEN_PIPE = 141;

/**
 * Stdout failing (its reader gone: EPIPE) would otherwise be an unhandled 'error' event and a
 * stack trace. A command with cleanup to do (run closes its disk; pair stops its children)
 * listens itself and this one stands back; any other command ends as SIGPIPE would end it.
 */
function onStdoutError(e: NodeJS.ErrnoException): void {
  if (process.stdout.listenerCount('error') > 1) return;
  if (e.code !== 'EPIPE') process.stderr.write(`ftvm: stdout: ${e.message}\n`);
  process.exit(e.code === 'EPIPE' ? EXIT_BROKEN_PIPE : 1);
}

export async function main(argv: string[]): Promise<number> {
  process.stdout.on('error', onStdoutError);
  const [name, ...rest] = argv;
  if (name === '-h' || name === '--help' || name === 'help') {
    process.stdout.write(await usage());
    return 0;
  }
  const load = name === undefined ? undefined : commands[name];
  if (!load) {
    process.stderr.write((name === undefined ? 'ftvm: missing command\n' : `ftvm: unknown command '${name}'\n`) + (await usage()));
    return 2;
  }
  const { command } = await load();
  if (asksHelp(rest)) {
    process.stdout.write(`usage: ftvm ${command.usage}\n      ${command.summary}\n`);
    return 0;
  }
  const twice = repeatedOption(rest);
  if (twice !== undefined) {
    process.stderr.write(`ftvm: --${twice} given more than once: give it once\n`);
    return 2;
  }
  try {
    return await command.run(joinNegativeValues(rest));
  } catch (e) {
    // The commands print their own expected errors; this catches what one of them let through.
    const op = operatorError(e);
    if (!op) throw e;
    process.stderr.write(`ftvm: ${op.line}\n`);
    return op.exitCode;
  }
}
