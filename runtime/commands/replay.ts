import { parseArgs } from 'node:util';
import type { Command } from '../cli.js';
import { Machine } from '../machine.js';
import { ElfError } from '../elf.js';
import { DivergenceError, ReplayEnv } from '../env/replay.js';
import { readLogFile } from '../log/file.js';
import { LogFrameError } from '../log/codec.js';
import type { LogEntry } from '../log/entry.js';
import { runMachine } from '../runner.js';
import { ioShapeOf } from '../io/machine-io.js';
import { CliError, ConsoleWriter, digestLine, imageDigest, positiveInt, readImage, unpackSnapshot } from './common.js';

const USAGE = 'replay <elf> --log FILE [--until ICOUNT]';

/** Exit code of a replay that diverged from its log. */
export const EXIT_DIVERGED = 3;

/**
 * Where to start replaying toward `until`: the newest snapshot at or before it (time travel
 * without re-running from boot), or the beginning.
 */
function seekStart(entries: LogEntry[], until: number): number {
  let start = -1;
  for (let i = 0; i < entries.length; i++) {
    const e = entries[i]!;
    if (e.icount > until) break;
    if (e.type === 'snapshot') start = i;
  }
  return start;
}

async function replay(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: { log: { type: 'string' }, until: { type: 'string' } },
  });
  if (positionals.length !== 1) throw new CliError(positionals.length === 0 ? 'missing <elf>' : 'one <elf> only');
  if (!values.log) throw new CliError('missing --log FILE');
  const file = positionals[0]!;
  const until = values.until === undefined ? undefined : positiveInt('until', values.until, 1);
  const image = readImage(file);
  let log;
  try {
    log = await readLogFile(values.log);
  } catch (e) {
    if (e instanceof LogFrameError) throw new CliError(`${values.log}: ${e.message}`, 2);
    throw new CliError(`${values.log}: ${(e as Error).message}`);
  }
  if (log.header.imageDigest !== imageDigest(image)) throw new CliError(`${values.log}: recorded from another image than ${file}`);

  const out = new ConsoleWriter();
  let outputs = 0;
  const env = new ReplayEnv({ digest: (m) => m.digest(), outputCount: () => outputs });
  // A log recorded with a disk or NIC starts with a snapshot that names them (no backends needed).
  const first = log.entries[0];
  const shape = first?.type === 'snapshot' && first.icount === 0 ? ioShapeOf(unpackSnapshot(first.data)) : {};
  const machine = new Machine({
    ...shape,
    memoryMiB: log.header.memorySize / (1024 * 1024),
    env,
    onOutput: (o) => {
      outputs++;
      // While seeking, output before the target is not shown: it was shown when recorded.
      if (o.kind === 'console' && until === undefined) out.push(o.byte);
    },
  });
  try {
    machine.loadElf(image);
  } catch (e) {
    if (e instanceof ElfError || e instanceof RangeError) throw new CliError(`${file}: ${e.message}`);
    throw e;
  }
  const start = until === undefined ? -1 : seekStart(log.entries, until);
  if (start >= 0) {
    const snap = log.entries[start]!;
    if (snap.type === 'snapshot') machine.restore(unpackSnapshot(snap.data));
    // Output markers count from boot: continue the count the snapshot's past had reached.
    for (let i = start - 1; i >= 0; i--) {
      const e = log.entries[i]!;
      if (e.type === 'output') {
        outputs = e.count;
        break;
      }
    }
  }
  for (let i = start + 1; i < log.entries.length; i++) env.push(log.entries[i]!);

  // A log without its `end` entry (the recorder was killed) replays to its last entry.
  const stopAt = Math.min(until ?? Infinity, env.ended ? Infinity : env.horizon);
  try {
    const outcome = await runMachine(machine, { untilIcount: stopAt, onBatch: () => out.flush() });
    out.flush();
    process.stderr.write(digestLine(machine));
    if (outcome.reason === 'fault') {
      process.stderr.write(`ftvm: guest fault: ${outcome.fault?.message ?? 'unknown'}\n`);
      return 1;
    }
    if (until !== undefined && machine.icount < until) {
      process.stderr.write(`ftvm: the log ends at icount ${machine.icount}, before ${until}\n`);
    }
    return outcome.reason === 'halt' ? (outcome.code ?? 0) & 0xff : 0;
  } catch (e) {
    out.flush();
    if (e instanceof DivergenceError) {
      process.stderr.write(`ftvm: replay diverged: ${e.message}\n`);
      return EXIT_DIVERGED;
    }
    throw e;
  }
}

export const command: Command = {
  usage: USAGE,
  summary: 'replay a recorded log: same console output, same final digest; --until seeks via snapshots',
  run: async (argv) => {
    try {
      return await replay(argv);
    } catch (e) {
      if (e instanceof CliError || (e as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) {
        process.stderr.write(`ftvm: ${(e as Error).message}\nusage: ftvm ${USAGE}\n`);
        return (e as CliError).exitCode ?? 2;
      }
      throw e;
    }
  },
};
