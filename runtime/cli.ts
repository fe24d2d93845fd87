// `ftvm <command> ...`: a small dispatcher. Each command is a module under runtime/commands/
// exporting `command: Command`; it is imported only when used, so startup stays cheap.

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

export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === '-h' || name === '--help' || name === 'help') {
    process.stdout.write(await usage());
    return 0;
  }
  const load = name === undefined ? undefined : commands[name];
  if (!load) {
    process.stderr.write((name === undefined ? '' : `ftvm: unknown command '${name}'\n`) + (await usage()));
    return 2;
  }
  const { command } = await load();
  return command.run(rest);
}
