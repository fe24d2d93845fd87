// `ftvm backup`: the backup of a pair across processes or hosts. It connects to its primary,
// replays the log in lockstep and prints nothing of the guest's; when the primary dies and
// this side wins the arbiter, it goes live in this process and prints the console output
// from then on (re-issuing what the primary may not have released, DESIGN §3).

import { parseArgs } from 'node:util';
import type { Command } from '../cli.js';
import { hostname } from 'node:os';
import { Machine } from '../machine.js';
import { LiveEnv } from '../env/live.js';
import { connectBackup, listenForBackups } from '../channel/tcp.js';
import { BackupNode } from '../ft/backup-node.js';
import { CliError, memoryFlag, positiveInt, readImage } from './common.js';
import {
  batchFlag, bootMachine, cliRun, commonOptions, defaultPairId, EXIT_DIVERGED, EXIT_HALTED, loadArbiter, loadKey, note,
  parseHostPort, reportEvents, serveReprotection, sinkOutputs, startInspect, takeInspectFlag, timingFlags,
} from './primary.js';
import type { Views } from '../dashboard/cli.js';

const USAGE = 'backup <elf> (--connect HOST:PORT | --join HOST:PORT) --key-file F --arbiter SPEC [--pair-id ID] [--mem MiB] [--outputs FILE] [--connect-timeout-ms N] [--listen HOST:PORT] [--name NAME] [--inspect [PORT]]';

async function backup(argv: string[]): Promise<number> {
  const { rest, inspect: inspectPort } = takeInspectFlag(argv);
  let views: Views | undefined;
  try {
    return await backupWith(rest, inspectPort, (v) => { views = v; });
  } finally {
    await views?.close();
  }
}

async function backupWith(argv: string[], inspectPort: number | undefined, started: (v: Views | undefined) => void): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      ...commonOptions, connect: { type: 'string' }, join: { type: 'string' }, listen: { type: 'string' }, name: { type: 'string' },
      'connect-timeout-ms': { type: 'string' },
    },
  });
  if (positionals.length !== 1) throw new CliError(positionals.length === 0 ? 'missing <elf>' : 'one <elf> only');
  if (values.join !== undefined && values.connect !== undefined) throw new CliError('--connect (boot with a new primary) or --join (join a running one), not both');
  const file = positionals[0]!;
  const joining = values.join !== undefined;
  const { host, port } = joining ? parseHostPort('join', values.join) : parseHostPort('connect', values.connect);
  // Where to take a backup of our own once live (re-protection); validated before anything runs.
  const listenAt = values.listen === undefined ? undefined : parseHostPort('listen', values.listen);
  const key = loadKey(values['key-file']);
  const arbiter = loadArbiter(values.arbiter);
  const pairId = values['pair-id'] ?? defaultPairId(key);
  const memoryMiB = memoryFlag(values.mem);
  const connectTimeoutMs = positiveInt('connect-timeout-ms', values['connect-timeout-ms'], 10_000);
  const timing = timingFlags(values);
  const image = readImage(file);
  // The arbiter knows a claimant by name and says 'won' again to the same name: every joiner
  // needs its own, or two of them could both win one generation.
  const name = values.name ?? (joining ? `backup-${hostname()}-${process.pid}` : 'backup');
  let machine = joining ? undefined : bootMachine(image, file, memoryMiB);
  const views = await startInspect(inspectPort);
  started(views);

  const end = connectBackup({ host, port, key, connectTimeoutMs, join: joining });
  end.events$.subscribe((e) => note(`backup channel ${e.type}${e.type === 'channel.failed' ? ` ${e.error.message}` : e.type === 'channel.closed' ? ` by ${e.by}` : ''}`));
  try {
    await end.opened;
  } catch (e) {
    await arbiter.close();
    throw new CliError(`no primary: ${(e as Error).message}`, 1);
  }
  // A joining backup claims the live primary's current generation, told in its hello: the
  // replica it replaced can only claim an older one, so it can never win again.
  const generation = joining ? end.hello!.generation : 1;
  if (joining) {
    const mem = end.hello!.memoryMiB;
    if (values.mem !== undefined && mem !== memoryMiB) note(`backup --mem ${memoryMiB} ignored: the primary runs ${mem} MiB`);
    // A blank machine: the first log entry is the primary's snapshot.
    machine = new Machine({ memoryMiB: mem, env: new LiveEnv() });
  }
  note(`backup ${joining ? 'joined' : 'connected to'} ${host}:${port} pair ${pairId}${joining ? ` as ${name}, generation ${generation}` : ''}`);

  const node = new BackupNode({ name, pairId, generation, machine: machine!, channel: end, arbiter, timing, joining, ...batchFlag(values), ...(views?.inspect ? { inspect: views.inspect } : {}) });
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
      let listener;
      if (listenAt) {
        try {
          listener = await listenForBackups({ ...listenAt, key });
          // The `pair` command and tests read this line to learn the port.
          note(`backup listening ${listenAt.host}:${listener.port} pair ${pairId}`);
          serveReprotection(live, listener, live.machine.memoryMiB);
        } catch (e) {
          note(`backup cannot listen on ${listenAt.host}:${listenAt.port}: ${(e as Error).message}; running unprotected`);
        }
      }
      const stop = (): void => live.crash();
      process.once('SIGTERM', stop);
      process.once('SIGINT', stop);
      const run = await live.run();
      await listener?.close().catch(() => undefined);
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
