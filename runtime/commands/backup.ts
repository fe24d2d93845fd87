// `ftvm backup`: the backup of a pair across processes or hosts. It connects to its primary,
// replays the log in lockstep and prints nothing of the guest's; when the primary dies and
// this side wins the arbiter, it goes live in this process and prints the console output
// from then on (re-issuing what the primary may not have released, DESIGN §3).

import { parseArgs } from 'node:util';
import type { Command } from '../cli.js';
import { DEFAULT_MEMORY_MIB } from '../platform.js';
import { connectBackup } from '../channel/tcp.js';
import { BackupNode } from '../ft/backup-node.js';
import { CliError, positiveInt, readImage } from './common.js';
import {
  batchFlag, bootMachine, cliRun, commonOptions, defaultPairId, EXIT_DIVERGED, EXIT_HALTED, loadArbiter, loadKey, note,
  parseHostPort, reportEvents, sinkOutputs, timingFlags,
} from './primary.js';

const USAGE = 'backup <elf> --connect HOST:PORT --key-file F --arbiter SPEC [--pair-id ID] [--mem MiB] [--outputs FILE] [--connect-timeout-ms N]';

async function backup(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: { ...commonOptions, connect: { type: 'string' }, 'connect-timeout-ms': { type: 'string' }, join: { type: 'boolean' } },
  });
  if (values.join) throw new CliError('--join: re-protection of a running primary is not yet available');
  if (positionals.length !== 1) throw new CliError(positionals.length === 0 ? 'missing <elf>' : 'one <elf> only');
  const file = positionals[0]!;
  const { host, port } = parseHostPort('connect', values.connect);
  const key = loadKey(values['key-file']);
  const arbiter = loadArbiter(values.arbiter);
  const pairId = values['pair-id'] ?? defaultPairId(key);
  const memoryMiB = positiveInt('mem', values.mem, DEFAULT_MEMORY_MIB);
  const connectTimeoutMs = positiveInt('connect-timeout-ms', values['connect-timeout-ms'], 10_000);
  const timing = timingFlags(values);
  const machine = bootMachine(readImage(file), file, memoryMiB);

  const end = connectBackup({ host, port, key, connectTimeoutMs });
  end.events$.subscribe((e) => note(`backup channel ${e.type}${e.type === 'channel.failed' ? ` ${e.error.message}` : e.type === 'channel.closed' ? ` by ${e.by}` : ''}`));
  try {
    await end.opened;
  } catch (e) {
    await arbiter.close();
    throw new CliError(`no primary: ${(e as Error).message}`, 1);
  }
  note(`backup connected to ${host}:${port} pair ${pairId}`);

  const node = new BackupNode({ name: 'backup', pairId, generation: 1, machine, channel: end, arbiter, timing, ...batchFlag(values) });
  reportEvents(node.events$);
  const stopBackup = (): void => node.crash();
  process.once('SIGTERM', stopBackup);
  process.once('SIGINT', stopBackup);
  const outcome = await node.run();
  process.off('SIGTERM', stopBackup);
  process.off('SIGINT', stopBackup);
  switch (outcome.reason) {
    case 'live': {
      const live = outcome.primary;
      reportEvents(live.events$);
      sinkOutputs(live.released$, values.outputs);
      const stop = (): void => live.crash();
      process.once('SIGTERM', stop);
      process.once('SIGINT', stop);
      const run = await live.run();
      await arbiter.close();
      const s = live.stats();
      note(`backup stats outputs ${s.outputs} released ${s.released} icount ${s.icount}`);
      if (run.reason === 'halt') return (run.code ?? 0) & 0xff;
      return run.reason === 'fault' ? 1 : EXIT_HALTED;
    }
    case 'finished':
      await arbiter.close();
      return outcome.code & 0xff;
    case 'diverged':
      await arbiter.close();
      note(`backup diverged: ${outcome.detail}`);
      return EXIT_DIVERGED;
    default:
      await arbiter.close();
      note(`backup ${outcome.reason}: ${outcome.detail}`);
      return EXIT_HALTED;
  }
}

export const command: Command = {
  usage: USAGE,
  summary: 'run the backup of a pair across processes: replay the primary\'s log, go live if it dies',
  run: cliRun(USAGE, backup),
};
