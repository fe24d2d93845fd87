import { constants as osConstants } from 'node:os';
import { parseArgs } from 'node:util';
import type { Command } from '../cli.js';
import { Machine } from '../machine.js';
import { ElfError } from '../elf.js';
import { RecordingEnv } from '../env/recording.js';
import { LogFileWriter, LogWriteError } from '../log/file.js';
import { runOnCpuActor } from '../cpu-actor.js';
import { chainPolicy, SnapshotChain } from '../snapshot.js';
import { Exit } from '../types.js';
import type { LogPayload } from '../log/entry.js';
import { IoOpenError, openIo } from '../io/open.js';
import { checkImage, CliError, errorLine, ConsoleWriter, digestLine, imageDigest, memoryFlag, positiveInt, readImage, elfCountProblem } from './common.js';

const USAGE = 'record <elf> --log FILE [--mem MiB] [--max-instructions N] [--snapshot-every N] [--digest-every N] [--stats]\n' +
  '      [--disk file:PATH|nbd://HOST:PORT/EXPORT] [--net udp:[ADDR:]HOSTPORT:GUESTPORT]...';

/**
 * Seeking (replay --until) starts from the newest snapshot before the target. Most snapshots
 * are deltas (pages written since the previous one), so they can come often; a guest that is
 * rewriting memory gets them later, up to 10 times this (runtime/snapshot.ts, chainPolicy).
 */
const DEFAULT_SNAPSHOT_EVERY = 10_000_000;
const DEFAULT_DIGEST_EVERY = 10_000_000;
/** Batches run back to back for this long before Node serves signals and stdout. */
const YIELD_MS = 4;
/**
 * The log is written at a batch boundary once this many instructions or bytes have gathered,
 * not after every batch: a guest that reads the clock in a loop (seq) ends tens of thousands
 * of batches a second, and a write(2) each cost `record` a third of its speed. Each write is
 * one block of the file (runtime/log/block.ts). A write error still stops the guest within
 * about this many instructions (and a batch) of the last entry written.
 */
const FLUSH_INSTRUCTIONS = 1_000_000;
const FLUSH_BYTES = 64 * 1024;

/** 128 + the signal's number, as a shell reports a command that signal ended (SIGINT 130, SIGTERM 143, SIGPIPE 141). */
const exitCodeForSignal = (signal: NodeJS.Signals): number => 128 + osConstants.signals[signal];

/** Signals that stop the recording cleanly: the log gets its end record and the digest line is printed. */
const STOP_SIGNALS: readonly NodeJS.Signals[] = ['SIGINT', 'SIGTERM'];

interface RecordOptions {
  file: string;
  logPath: string;
  memoryMiB: number;
  maxInstructions: number | undefined;
  snapshotEvery: number;
  digestEvery: number;
  disk: string | undefined;
  net: string[] | undefined;
  /** Print the guest's own run time as `ftvm run --stats` does (benchmarks compare the two). */
  stats: boolean;
}

/** Everything that is the caller's mistake: each error here is printed with the usage line. */
function parseRecordArgs(argv: string[]): RecordOptions {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      log: { type: 'string' },
      mem: { type: 'string' },
      'max-instructions': { type: 'string' },
      'snapshot-every': { type: 'string' },
      'digest-every': { type: 'string' },
      disk: { type: 'string' },
      net: { type: 'string', multiple: true },
      stats: { type: 'boolean', default: false },
    },
  });
  const elfProblem = elfCountProblem(positionals, argv);
  if (elfProblem !== undefined) throw new CliError(elfProblem);
  if (!values.log) throw new CliError('missing --log FILE');
  return {
    file: positionals[0]!,
    logPath: values.log,
    memoryMiB: memoryFlag(values.mem),
    maxInstructions: values['max-instructions'] === undefined ? undefined : positiveInt('max-instructions', values['max-instructions'], 1),
    snapshotEvery: positiveInt('snapshot-every', values['snapshot-every'], DEFAULT_SNAPSHOT_EVERY),
    digestEvery: positiveInt('digest-every', values['digest-every'], DEFAULT_DIGEST_EVERY),
    disk: values.disk,
    net: values.net,
    stats: values.stats === true,
  };
}

/** Why the recorder stopped the guest before it powered off. */
type Stop =
  | { kind: 'signal'; signal: NodeJS.Signals }
  /** Whoever read stdout went away (EPIPE), as `ftvm record ... | head` does. */
  | { kind: 'stdout'; error: NodeJS.ErrnoException }
  | { kind: 'log'; error: LogWriteError };

async function record(o: RecordOptions): Promise<number> {
  const { file, logPath, memoryMiB, maxInstructions, snapshotEvery, digestEvery } = o;
  const image = readImage(file);
  // Checked before the log file is opened: opening truncates it, and a bad image (or one too
  // big for --mem) must not cost the operator the log an earlier run left there.
  checkImage(file, memoryMiB);
  const io = await openIo({ disk: o.disk, net: o.net }).catch((e: Error) => {
    throw e instanceof IoOpenError ? new CliError(e.message, e.exitCode) : e;
  });

  const writer = await LogFileWriter.create(logPath, { imageDigest: imageDigest(image), memorySize: memoryMiB * 1024 * 1024 })
    .catch(async (e: Error) => {
      await io.close();
      if (e instanceof LogWriteError) throw new CliError(e.message, 1);
      const code = (e as NodeJS.ErrnoException).code;
      const why = code === 'ENOENT' ? 'no such directory' : code === 'EISDIR' ? 'is a directory, not a file' : code === 'EACCES' ? 'permission denied' : e.message;
      throw new CliError(`${logPath}: ${why}`);
    });
  // Entries are numbered here and encoded straight from their payloads: no entry object per input.
  let nextSeq = 0;
  const log = { append: (payload: LogPayload, icount: number): void => writer.appendAt(payload, nextSeq++, icount) };
  const env = new RecordingEnv(log.append);

  // The guest stops at the next batch boundary (an instruction boundary) for any of these;
  // the first one decides how the recording ends.
  const abort = new AbortController();
  let stop: Stop | undefined;
  const stopWith = (s: Stop): void => {
    stop ??= s;
    abort.abort();
  };
  let stdoutBroken = false;
  const onStdoutError = (error: NodeJS.ErrnoException): void => {
    stdoutBroken = true;
    stopWith({ kind: 'stdout', error });
  };
  // NOTE `once`: a second Ctrl-C while the log is being closed gets the default action (exit at once).
  const onSignal = (signal: NodeJS.Signals): void => stopWith({ kind: 'signal', signal });
  for (const s of STOP_SIGNALS) process.once(s, onSignal);
  // NOTE the stdout error listener stays after return: writes already made may still fail later.
  process.stdout.on('error', onStdoutError);
  const detach = (): void => {
    for (const s of STOP_SIGNALS) process.off(s, onSignal);
  };

  const out = new ConsoleWriter((b) => {
    if (!stdoutBroken) process.stdout.write(b);
  });
  let outputs = 0;
  let outputsMarked = 0;
  const machine: Machine = new Machine({
    memoryMiB,
    env,
    onOutput: (o) => {
      outputs++;
      // Recording alone, nothing waits for a backup: disk writes and frames go out at once.
      if (o.kind === 'console') out.push(o.byte);
      else machine.io?.execute(o);
    },
    ...(io.disk ? { disk: io.disk } : {}),
    ...(io.net ? { net: io.net } : {}),
  });
  // Full snapshots now and then, deltas (pages written since the previous one) between them.
  let snapshots: SnapshotChain;
  try {
    machine.loadElf(image);
    snapshots = new SnapshotChain(machine, chainPolicy(snapshotEvery));
    // The machine's shape (disk capacity, NIC) travels in the log: replay needs no disk or network.
    if (machine.io) log.append({ type: 'snapshot', data: snapshots.take() }, machine.icount);
  } catch (e) {
    detach();
    writer.abandon();
    await io.close();
    if (e instanceof ElfError || e instanceof RangeError) throw new CliError(`${file}: ${e.message}`);
    throw e;
  }

  let nextDigest = digestEvery;
  let flushedAt = 0;
  const onBatch = (exit: Exit): void => {
    out.flush();
    const ic = machine.icount;
    // Output markers let replay check that it produces the same outputs at the same icount.
    if (outputs !== outputsMarked) {
      log.append({ type: 'output', kind: 'console', count: outputs }, ic);
      outputsMarked = outputs;
    }
    if (exit === Exit.Halt || exit === Exit.Fault) return;
    const snapshot = snapshots.poll();
    if (snapshot) log.append({ type: 'snapshot', data: snapshot }, ic);
    if (ic >= nextDigest) {
      log.append({ type: 'digest', digest: machine.digest() }, ic);
      nextDigest = ic + digestEvery;
    }
    if (ic - flushedAt < FLUSH_INSTRUCTIONS && writer.pendingBytes < FLUSH_BYTES) return;
    flushedAt = ic;
    try {
      writer.flush();
    } catch (e) {
      // The log can no longer hold what the guest does next: stop it before its next batch.
      if (!(e instanceof LogWriteError)) throw e;
      stopWith({ kind: 'log', error: e });
    }
  };

  let outcome;
  try {
    // The guest runs under its CPU chart in record mode; --max-instructions is its run-until.
    outcome = await runOnCpuActor(machine, {
      mode: 'record',
      id: 'cpu',
      yieldMs: YIELD_MS,
      onBatch,
      signal: abort.signal,
      ...(maxInstructions === undefined ? {} : { until: machine.icount + maxInstructions, untilReason: 'limit' as const }),
    }).done;
  } catch (e) {
    detach();
    writer.abandon();
    await (machine.io?.close() ?? io.close());
    throw e;
  }
  out.flush();
  const closeIo = (): Promise<void> => machine.io?.close() ?? io.close();
  const writeFailed = (error: LogWriteError): Promise<number> => {
    detach();
    writer.abandon();
    process.stderr.write(`ftvm: ${error.message}; stopped the guest at icount ${machine.icount}\n`);
    return closeIo().then(() => 1);
  };
  if (stop?.kind === 'log') return writeFailed(stop.error);

  // Every recording ends with an end record, so replay can tell a whole log from a cut one.
  // When the guest did not power off, a digest at the same icount lets replay check the state.
  let exitCode: number;
  if (outcome.reason === 'halt') {
    exitCode = (outcome.code ?? 0) & 0xff;
    log.append({ type: 'end', code: outcome.code ?? 0 }, machine.icount);
  } else {
    exitCode = outcome.reason === 'fault' ? 1
      : stop?.kind === 'signal' ? exitCodeForSignal(stop.signal)
        : stop?.kind === 'stdout' ? exitCodeForSignal('SIGPIPE')
          : 0;
    log.append({ type: 'digest', digest: machine.digest() }, machine.icount);
    log.append({ type: 'end', code: exitCode, reason: outcome.reason === 'fault' ? 'fault' : 'stopped' }, machine.icount);
  }
  try {
    writer.close();
  } catch (e) {
    if (e instanceof LogWriteError) return writeFailed(e);
    throw e;
  }
  detach();
  await closeIo();
  process.stderr.write(digestLine(machine));
  if (o.stats) {
    const mips = outcome.seconds > 0 ? outcome.icount / outcome.seconds / 1e6 : 0;
    process.stderr.write(`instructions ${outcome.icount}, seconds ${outcome.seconds.toFixed(3)}, MIPS ${mips.toFixed(1)}\n`);
  }
  process.stderr.write(`log ${writer.entriesWritten} entries, ${writer.bytesWritten} bytes, ${((writer.bytesWritten * 1000) / Math.max(1, machine.icount)).toFixed(3)} bytes per 1000 instructions, ${writer.blocksWritten} writes\n`);
  if (outcome.reason === 'fault') {
    process.stderr.write(`ftvm: guest fault: ${outcome.fault?.message ?? 'unknown'}\n`);
  } else if (outcome.reason !== 'halt' && stop?.kind === 'signal') {
    process.stderr.write(`ftvm: ${stop.signal}: stopped the guest at icount ${machine.icount}; the log ends there with its end record\n`);
  } else if (outcome.reason !== 'halt' && stop?.kind === 'stdout' && stop.error.code !== 'EPIPE') {
    // EPIPE is the reader's normal way of saying "enough" (`| head`): quiet, as `yes | head` is.
    process.stderr.write(`ftvm: stdout: ${stop.error.message}; stopped the guest at icount ${machine.icount}\n`);
  }
  return exitCode;
}

export const command: Command = {
  usage: USAGE,
  summary: 'run a guest live and write every non-deterministic input to a log file',
  run: async (argv) => {
    let opts: RecordOptions;
    try {
      opts = parseRecordArgs(argv);
    } catch (e) {
      if (e instanceof CliError || (e as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) {
        process.stderr.write(`ftvm: ${errorLine(e)}\nusage: ftvm ${USAGE}\n`);
        return 2;
      }
      throw e;
    }
    try {
      return await record(opts);
    } catch (e) {
      // Not the caller's syntax: one line, no usage.
      if (e instanceof CliError) {
        process.stderr.write(`ftvm: ${e.message}\n`);
        return e.exitCode;
      }
      throw e;
    }
  },
};
