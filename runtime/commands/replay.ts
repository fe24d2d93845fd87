import { constants as osConstants } from 'node:os';
import { parseArgs } from 'node:util';
import type { Command } from '../cli.js';
import { Machine } from '../machine.js';
import { ElfError } from '../elf.js';
import { DivergenceError, ReplayEnv } from '../env/replay.js';
import { scanLogFile, type LogFileScan } from '../log/file.js';
import type { LogEntry, LogEntryOf } from '../log/entry.js';
import { runOnCpuActor } from '../cpu-actor.js';
import { ioShapeOf } from '../io/machine-io.js';
import { resolveSnapshotChain, snapshotChainAt } from '../snapshot.js';
import { CliError, errorLine, ConsoleWriter, digestLine, imageDigest, readErrorText, readImage, unpackSnapshot, elfCountProblem } from './common.js';

const USAGE = 'replay <elf> --log FILE [--until ICOUNT] [--partial]';

/** Exit code of a replay that diverged from its log. */
export const EXIT_DIVERGED = 3;
/** Exit code of a replay refused because its log lacks its end record (see --partial). */
export const EXIT_INCOMPLETE = 4;
/** 128 + SIGPIPE: whoever read stdout went away, as a shell reports `yes | head`. */
const EXIT_BROKEN_PIPE = 128 + osConstants.signals.SIGPIPE;
/** Batches run back to back for this long before Node serves stdout. */
const YIELD_MS = 4;

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

interface ReplayOptions {
  file: string;
  logPath: string;
  until: number | undefined;
  partial: boolean;
}

/** An icount: any integer >= 0 (0 is the state before the first instruction). */
function icountArg(name: string, text: string): number {
  const n = Number(text);
  if (!/^\d+$/.test(text) || !Number.isSafeInteger(n)) throw new CliError(`--${name} wants an instruction count (an integer >= 0), got '${text}'`);
  return n;
}

/** Everything that is the caller's mistake: each error here is printed with the usage line. */
function parseReplayArgs(argv: string[]): ReplayOptions {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: { log: { type: 'string' }, until: { type: 'string' }, partial: { type: 'boolean', default: false } },
  });
  const elfProblem = elfCountProblem(positionals, argv);
  if (elfProblem !== undefined) throw new CliError(elfProblem);
  if (!values.log) throw new CliError('missing --log FILE');
  return {
    file: positionals[0]!,
    logPath: values.log,
    until: values.until === undefined ? undefined : icountArg('until', values.until),
    partial: values.partial === true,
  };
}

/** "after seq 12, icount 345": how far the good part of a log reaches. */
const reach = (entries: readonly LogEntry[]): string => {
  const last = entries[entries.length - 1];
  return last ? `after seq ${last.seq}, icount ${last.icount}` : 'before its first entry';
};

/** Reads the log and refuses a corrupt one, or a cut one unless `partial`. Offsets count from the file's start. */
async function loadLog(logPath: string, partial: boolean): Promise<LogFileScan & { end: LogEntryOf<'end'> | undefined }> {
  let scan: LogFileScan;
  try {
    scan = await scanLogFile(logPath);
  } catch (e) {
    throw new CliError(`${logPath}: ${readErrorText(e)}`);
  }
  const last = scan.entries[scan.entries.length - 1];
  const end = last?.type === 'end' ? last : undefined;
  // A bad frame is corrupt, never a guess; so are bytes after the end record.
  if (scan.error && (!scan.truncated || end)) {
    throw new CliError(`${logPath}: ${scan.error.message} (the good frames end ${reach(scan.entries)})`, 2);
  }
  if (!end && !partial) {
    const where = scan.truncated
      ? `it is cut inside a frame at byte ${scan.validBytes} of ${scan.size}, ${reach(scan.entries)}`
      : `it stops at byte ${scan.size}, a frame boundary, ${reach(scan.entries)}`;
    throw new CliError(`${logPath}: the log has no end record (was the recorder killed?): ${where}; --partial replays what is there`, EXIT_INCOMPLETE);
  }
  return { ...scan, end };
}

async function replay(o: ReplayOptions): Promise<number> {
  const { file, logPath, until } = o;
  const image = readImage(file);
  const log = await loadLog(logPath, o.partial);
  if (log.header.imageDigest !== imageDigest(image)) throw new CliError(`${logPath}: recorded from another image than ${file}`);

  let stdoutBroken = false;
  const abort = new AbortController();
  // NOTE the listener stays after return: writes already made may still fail later.
  process.stdout.on('error', () => {
    stdoutBroken = true;
    abort.abort();
  });
  const out = new ConsoleWriter((b) => {
    if (!stdoutBroken) process.stdout.write(b);
  });
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
    // A delta snapshot needs the full one before it and every delta between.
    const chain = snapshotChainAt(log.entries, start);
    let snap;
    try {
      snap = resolveSnapshotChain(chain);
    } catch (e) {
      const at = log.entries[start]!;
      throw new CliError(`${logPath}: the snapshot at seq ${at.seq}, icount ${at.icount}: ${(e as Error).message}`, 2);
    }
    machine.restore(snap);
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

  // The log ends at its end record; a partial log (--partial) as far as its entries vouch.
  const { end } = log;
  const logEnd = end ? end.icount : env.horizon;
  const stopAt = Math.min(until ?? Infinity, logEnd);
  try {
    // The CPU chart replays to an icount: `cpu.runUntil` stops the batch exactly there.
    const outcome = await runOnCpuActor(machine, {
      mode: 'replay', id: 'cpu', yieldMs: YIELD_MS, until: stopAt, onBatch: () => out.flush(), signal: abort.signal,
    }).done;
    out.flush();
    const atEnd = end !== undefined && outcome.reason === 'until' && machine.icount === end.icount;
    // The recorder logged a digest (and output marker) at the icount it stopped at: check them.
    if (atEnd) env.deliverDue(machine);
    process.stderr.write(digestLine(machine));
    if (outcome.reason === 'aborted') return stdoutBroken ? EXIT_BROKEN_PIPE : 1;
    if (outcome.reason === 'fault') {
      process.stderr.write(`ftvm: guest fault: ${outcome.fault?.message ?? 'unknown'}\n`);
      return 1;
    }
    if (until !== undefined && machine.icount < until) {
      process.stderr.write(`ftvm: the log ends at icount ${machine.icount}, before ${until}\n`);
    }
    if (outcome.reason === 'halt') return (outcome.code ?? 0) & 0xff;
    if (!atEnd) return 0;
    switch (end.reason) {
      case 'stopped':
        process.stderr.write(`ftvm: the recording was stopped at icount ${end.icount}, before the guest powered off\n`);
        return 0;
      case 'fault':
        process.stderr.write(`ftvm: the recording ended in a guest fault at icount ${end.icount}\n`);
        return 1;
      default:
        throw new DivergenceError(end.seq, end.icount, `the guest powers off at icount ${end.icount}`, 'still running');
    }
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
    let opts: ReplayOptions;
    try {
      opts = parseReplayArgs(argv);
    } catch (e) {
      if (e instanceof CliError || (e as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) {
        process.stderr.write(`ftvm: ${errorLine(e)}\nusage: ftvm ${USAGE}\n`);
        return 2;
      }
      throw e;
    }
    try {
      return await replay(opts);
    } catch (e) {
      // Not the caller's syntax (a missing or corrupt log, another image): one line, no usage.
      if (e instanceof CliError) {
        process.stderr.write(`ftvm: ${e.message}\n`);
        return e.exitCode;
      }
      throw e;
    }
  },
};
