import { parseArgs } from 'node:util';
import type { Command } from '../cli.js';
import { Machine } from '../machine.js';
import { ElfError } from '../elf.js';
import { RecordingEnv } from '../env/recording.js';
import { LogFileWriter } from '../log/file.js';
import { runMachine } from '../runner.js';
import { DEFAULT_MEMORY_MIB } from '../platform.js';
import { Exit } from '../types.js';
import { SeqLog } from '../ft/seq-log.js';
import { IoOpenError, openIo } from '../io/open.js';
import { CliError, ConsoleWriter, digestLine, imageDigest, packSnapshot, positiveInt, readImage } from './common.js';

const USAGE = 'record <elf> --log FILE [--mem MiB] [--max-instructions N] [--snapshot-every N] [--digest-every N]\n' +
  '      [--disk file:PATH|nbd://HOST:PORT/EXPORT] [--net udp:[ADDR:]HOSTPORT:GUESTPORT]...';

/** Seeking (replay --until) starts from the newest snapshot before the target. */
const DEFAULT_SNAPSHOT_EVERY = 50_000_000;
const DEFAULT_DIGEST_EVERY = 10_000_000;

async function record(argv: string[]): Promise<number> {
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
    },
  });
  if (positionals.length !== 1) throw new CliError(positionals.length === 0 ? 'missing <elf>' : 'one <elf> only');
  if (!values.log) throw new CliError('missing --log FILE');
  const file = positionals[0]!;
  const memoryMiB = positiveInt('mem', values.mem, DEFAULT_MEMORY_MIB);
  const maxInstructions = values['max-instructions'] === undefined ? undefined : positiveInt('max-instructions', values['max-instructions'], 1);
  const snapshotEvery = positiveInt('snapshot-every', values['snapshot-every'], DEFAULT_SNAPSHOT_EVERY);
  const digestEvery = positiveInt('digest-every', values['digest-every'], DEFAULT_DIGEST_EVERY);
  const image = readImage(file);
  const io = await openIo({ disk: values.disk, net: values.net }).catch((e: Error) => {
    throw e instanceof IoOpenError ? new CliError(e.message, e.exitCode) : e;
  });

  const writer = await LogFileWriter.create(values.log, { imageDigest: imageDigest(image), memorySize: memoryMiB * 1024 * 1024 })
    .catch(async (e: Error) => { await io.close(); throw new CliError(`${values.log}: ${e.message}`); });
  const log = new SeqLog((e) => writer.append(e));
  const env = new RecordingEnv((payload, icount) => log.append(payload, icount));
  const out = new ConsoleWriter();
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
  try {
    machine.loadElf(image);
    // The machine's shape (disk capacity, NIC) travels in the log: replay needs no disk or network.
    if (machine.io) log.append({ type: 'snapshot', data: packSnapshot(machine) }, machine.icount);
  } catch (e) {
    await writer.close();
    await io.close();
    if (e instanceof ElfError || e instanceof RangeError) throw new CliError(`${file}: ${e.message}`);
    throw e;
  }

  let nextSnapshot = 0;
  let nextDigest = digestEvery;
  const onBatch = (exit: Exit): void => {
    out.flush();
    const ic = machine.icount;
    // Output markers let replay check that it produces the same outputs at the same icount.
    if (outputs !== outputsMarked) {
      log.append({ type: 'output', kind: 'console', count: outputs }, ic);
      outputsMarked = outputs;
    }
    if (exit === Exit.Halt || exit === Exit.Fault) return;
    if (ic >= nextSnapshot) {
      log.append({ type: 'snapshot', data: packSnapshot(machine) }, ic);
      nextSnapshot = ic + snapshotEvery;
    }
    if (ic >= nextDigest) {
      log.append({ type: 'digest', digest: machine.digest() }, ic);
      nextDigest = ic + digestEvery;
    }
    void writer.flush();
  };

  const outcome = await runMachine(machine, { ...(maxInstructions === undefined ? {} : { maxInstructions }), onBatch });
  out.flush();
  if (outcome.reason === 'halt') log.append({ type: 'end', code: outcome.code ?? 0 }, machine.icount);
  else log.append({ type: 'digest', digest: machine.digest() }, machine.icount);
  await writer.close();
  await (machine.io?.close() ?? io.close());
  process.stderr.write(digestLine(machine));
  process.stderr.write(`log ${writer.entriesWritten} entries, ${writer.bytesWritten} bytes, ${((writer.bytesWritten * 1000) / Math.max(1, machine.icount)).toFixed(3)} bytes per 1000 instructions\n`);
  if (outcome.reason === 'fault') {
    process.stderr.write(`ftvm: guest fault: ${outcome.fault?.message ?? 'unknown'}\n`);
    return 1;
  }
  return outcome.reason === 'halt' ? (outcome.code ?? 0) & 0xff : 0;
}

export const command: Command = {
  usage: USAGE,
  summary: 'run a guest live and write every non-deterministic input to a log file',
  run: async (argv) => {
    try {
      return await record(argv);
    } catch (e) {
      if (e instanceof CliError || (e as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) {
        process.stderr.write(`ftvm: ${(e as Error).message}\nusage: ftvm ${USAGE}\n`);
        return (e as CliError).exitCode ?? 2;
      }
      throw e;
    }
  },
};
