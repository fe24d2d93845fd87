// `ftvm pair`: a pair across two processes on this host, for trying the real thing in one
// command: a generated key, a file arbiter in a temp directory unless one is given, the
// primary and the backup as child processes on loopback. Their state changes are relayed
// to stderr with the child's name; the guest's console comes from whichever one is live.

import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import type { Command } from '../cli.js';
import { CliError } from './common.js';
import { cliRun } from './primary.js';

const USAGE = 'pair <elf> [--arbiter SPEC] [--pair-id ID] [--mem MiB] [--suspect-ms N]';

/**
 * The children report released outputs as JSON lines on fd 3 (their --outputs); this process
 * is their client: it prints each console byte once, dropping by output index the duplicates
 * a failover re-issues (DESIGN §3), as a TCP receiver drops segments by sequence number.
 */
class Client {
  private next = 0;
  take(line: string): void {
    let o: { i: number; k: string; v: number };
    try {
      o = JSON.parse(line) as typeof o;
    } catch {
      return;
    }
    if (o.i < this.next) return;
    this.next = o.i + 1;
    if (o.k === 'console') process.stdout.write(Buffer.of(o.v));
  }
}

function relay(child: ChildProcess, name: string, client: Client, onLine?: (line: string) => void): void {
  createInterface({ input: child.stdio[3] as NodeJS.ReadableStream }).on('line', (line) => client.take(line));
  createInterface({ input: child.stderr! }).on('line', (line) => {
    process.stderr.write(`${name}| ${line}\n`);
    onLine?.(line);
  });
}

const exited = (c: ChildProcess): Promise<number> =>
  new Promise((resolve) => {
    if (c.exitCode !== null || c.signalCode !== null) resolve(c.exitCode ?? 128);
    else c.once('exit', (code, sig) => resolve(code ?? (sig ? 128 : 1)));
  });

async function pair(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: { arbiter: { type: 'string' }, 'pair-id': { type: 'string' }, mem: { type: 'string' }, 'suspect-ms': { type: 'string' }, batch: { type: 'string' } },
  });
  if (positionals.length !== 1) throw new CliError(positionals.length === 0 ? 'missing <elf>' : 'one <elf> only');
  const dir = mkdtempSync(join(tmpdir(), 'ftvm-pair-'));
  try {
    const keyFile = join(dir, 'key');
    writeFileSync(keyFile, randomBytes(32).toString('hex') + '\n', { mode: 0o600 });
    const arbiter = values.arbiter ?? `file:${dir}`;
    const pairId = values['pair-id'] ?? `pair-${process.pid}-${Date.now().toString(36)}`;
    const extra = [
      ...(values.mem ? ['--mem', values.mem] : []),
      ...(values['suspect-ms'] ? ['--suspect-ms', values['suspect-ms']] : []),
      ...(values.batch ? ['--batch', values.batch] : []),
    ];
    const common = ['--key-file', keyFile, '--arbiter', arbiter, '--pair-id', pairId, '--outputs', 'fd:3', ...extra];
    const client = new Client();
    const stdio: ['ignore', 'ignore', 'pipe', 'pipe'] = ['ignore', 'ignore', 'pipe', 'pipe'];
    const cli = process.argv[1]!;
    const primary = spawn(process.execPath, [cli, 'primary', positionals[0]!, '--listen', '127.0.0.1:0', ...common], { stdio });
    const port = await new Promise<number | undefined>((resolve) => {
      relay(primary, 'primary', client, (line) => {
        const m = / primary listening [^ ]+:(\d+) /.exec(line);
        if (m) resolve(Number(m[1]));
      });
      primary.once('exit', () => resolve(undefined));
    });
    if (port === undefined) return (await exited(primary)) || 1;
    const backup = spawn(process.execPath, [cli, 'backup', positionals[0]!, '--connect', `127.0.0.1:${port}`, ...common], { stdio });
    relay(backup, 'backup', client);
    const stop = (): void => {
      primary.kill('SIGTERM');
      backup.kill('SIGTERM');
    };
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
    const [p, b] = await Promise.all([exited(primary), exited(backup)]);
    process.off('SIGINT', stop);
    process.off('SIGTERM', stop);
    // The guest's exit code is whichever replica finished it; a halted replica exits with 3.
    return p === 0 || b === 0 ? 0 : p !== 3 ? p : b;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

export const command: Command = {
  usage: USAGE,
  summary: 'run a pair as two processes on loopback (generated key, file arbiter), relaying their state changes',
  run: cliRun(USAGE, pair),
};
