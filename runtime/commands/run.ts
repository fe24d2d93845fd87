import { parseArgs } from 'node:util';
import type { Command } from '../cli.js';
import { Machine } from '../machine.js';
import { ElfError } from '../elf.js';
import { LiveEnv } from '../env/live.js';
import { DeterministicEnv, GuestDeadlock } from '../env/deterministic.js';
import { cpuModeOf, type RunOutcome } from '../runner.js';
import type { Output } from '../types.js';
import { IoOpenError, openIo, type OpenedIo } from '../io/open.js';
import { runOnCpuActor } from '../cpu-actor.js';
import { startViews, takeViewFlags, type ViewFlags } from '../dashboard/cli.js';
import { type CliError, errorLine, memoryFlag, nonNegativeInt, readImage, elfCountProblem } from './common.js';

const USAGE = 'run <elf> [--mem MiB] [--max-instructions N] [--stats] [--deterministic [--seed N]]\n' +
  '      [--disk file:PATH|nbd://HOST:PORT/EXPORT] [--net udp:[ADDR:]HOSTPORT:GUESTPORT]... [--inspect [PORT]]';

/** Exit code when --max-instructions stops the guest (as timeout(1) does). */
export const EXIT_LIMIT = 124;
export const EXIT_INTERRUPTED = 130;
/** Exit code after SIGTERM (128 + 15): the terminal is restored first, unlike a default kill. */
export const EXIT_TERMINATED = 143;
/** Exit code when whoever reads stdout went away (128 + SIGPIPE, as a shell reports it). */
export const EXIT_BROKEN_PIPE = 141;

const CTRL_A = 0x01;
/** Batches run back to back for this long before Node serves stdin and sockets. */
const YIELD_MS = 4;

class UsageError extends Error {}

function positiveInt(name: string, text: string | undefined, fallback: number): number {
  if (text === undefined) return fallback;
  const n = Number(text);
  if (!/^\d+$/.test(text) || !Number.isSafeInteger(n) || n <= 0) throw new UsageError(`--${name} wants a positive integer, got '${text}'`);
  return n;
}

/** Collects console bytes and writes them in chunks: one write per batch, not per byte. */
class ConsoleSink {
  private buf = Buffer.alloc(4096);
  private used = 0;
  push(byte: number): void {
    if (this.used === this.buf.length) this.flush();
    this.buf[this.used++] = byte;
  }
  /** Set once stdout failed (EPIPE): the reader is gone and further output is dropped. */
  broken = false;
  flush(): void {
    if (this.used === 0 || this.broken) return;
    process.stdout.write(Buffer.from(this.buf.subarray(0, this.used)));
    this.used = 0;
  }
}

/**
 * Wire stdin to the guest console. In raw mode (a TTY) every byte goes to the guest, Ctrl-C
 * included, and Ctrl-A x quits as in QEMU (Ctrl-A Ctrl-A sends one Ctrl-A). Returns a teardown
 * that restores the terminal.
 */
function attachConsole(env: LiveEnv | undefined, quit: (exitCode: number) => void): () => void {
  const stdin = process.stdin;
  const raw = stdin.isTTY === true;
  let escaped = false;
  const onData = (chunk: Buffer): void => {
    if (!raw) { env?.pushConsole(chunk); return; }
    const pass: number[] = [];
    for (const b of chunk) {
      if (escaped) {
        escaped = false;
        if (b === 0x78 /* x */) { quit(EXIT_INTERRUPTED); return; }
        if (b === CTRL_A) pass.push(CTRL_A);
      } else if (b === CTRL_A) escaped = true;
      else pass.push(b);
    }
    if (pass.length > 0) env?.pushConsole(Uint8Array.from(pass));
  };
  const onSigint = (): void => quit(EXIT_INTERRUPTED);
  const onSigterm = (): void => quit(EXIT_TERMINATED);
  process.on('SIGINT', onSigint);
  process.on('SIGTERM', onSigterm);
  if (env) {
    if (raw) stdin.setRawMode(true);
    stdin.on('data', onData);
    stdin.on('error', () => {});
  }
  return () => {
    process.off('SIGINT', onSigint);
    process.off('SIGTERM', onSigterm);
    if (!env) return;
    stdin.off('data', onData);
    if (raw) stdin.setRawMode(false);
    stdin.pause();
    stdin.unref?.();
  };
}

async function readAll(stream: NodeJS.ReadableStream): Promise<Uint8Array> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(Buffer.from(chunk as Buffer));
  return Buffer.concat(chunks);
}

function report(o: RunOutcome, file: string, stats: boolean, abortCode: number): number {
  if (stats) {
    const mips = o.seconds > 0 ? o.icount / o.seconds / 1e6 : 0;
    process.stderr.write(`instructions ${o.icount}, seconds ${o.seconds.toFixed(3)}, MIPS ${mips.toFixed(1)}\n`);
  }
  switch (o.reason) {
    case 'halt': return (o.code ?? 0) & 0xff;
    case 'fault':
      process.stderr.write(`ftvm: guest fault: ${o.fault?.message ?? 'unknown fault'}\n`);
      return 1;
    case 'limit':
      process.stderr.write(`ftvm: ${file}: stopped after ${o.icount} instructions (--max-instructions)\n`);
      return EXIT_LIMIT;
    case 'aborted':
    case 'until':
      return abortCode;
  }
}

async function run(argv: string[]): Promise<number> {
  let values, positionals;
  let flags: ViewFlags;
  try {
    let rest: string[];
    ({ rest, flags } = takeViewFlags(argv));
    if (flags.dashboard !== undefined || flags.pace !== undefined) throw new UsageError('--dashboard and --pace are for `ftvm demo`');
    ({ values, positionals } = parseArgs({
      args: rest,
      allowPositionals: true,
      options: {
        mem: { type: 'string' },
        'max-instructions': { type: 'string' },
        stats: { type: 'boolean', default: false },
        deterministic: { type: 'boolean', default: false },
        seed: { type: 'string' },
        disk: { type: 'string' },
        net: { type: 'string', multiple: true },
      },
    }));
    // Disk and network answers come from the host at host-chosen times: only a live env has them.
    if (values.deterministic && (values.disk !== undefined || values.net !== undefined)) throw new UsageError('--disk and --net need a live run (not --deterministic)');
    const elfProblem = elfCountProblem(positionals, argv);
    if (elfProblem !== undefined) throw new UsageError(elfProblem);
    if (values.seed !== undefined && !values.deterministic) throw new UsageError('--seed needs --deterministic');
  } catch (e) {
    process.stderr.write(`ftvm: ${errorLine(e)}\nusage: ftvm ${USAGE}\n`);
    return 2;
  }
  const file = positionals[0]!;
  let memoryMiB: number, maxInstructions: number | undefined, seed: number;
  try {
    memoryMiB = memoryFlag(values.mem);
    maxInstructions = values['max-instructions'] === undefined ? undefined : positiveInt('max-instructions', values['max-instructions'], 0);
    seed = nonNegativeInt('seed', values.seed, 1);
  } catch (e) {
    process.stderr.write(`ftvm: ${(e as Error).message}\nusage: ftvm ${USAGE}\n`);
    return 2;
  }

  let image: Uint8Array;
  try {
    image = readImage(file);
  } catch (e) {
    process.stderr.write(`ftvm: ${(e as Error).message}\n`);
    return 2;
  }

  let io: OpenedIo;
  try {
    io = await openIo({ disk: values.disk, net: values.net });
  } catch (e) {
    if (!(e instanceof IoOpenError)) throw e;
    process.stderr.write(`ftvm: ${e.message}\n`);
    return e.exitCode;
  }
  // Where clients reach the guest: a rule for port 0 gets its port from the host.
  for (const line of io.udp?.describe() ?? []) process.stderr.write(`ftvm: ${line}\n`);

  const live = values.deterministic ? undefined : new LiveEnv();
  // Deterministic runs are a function of image, seed and input, so the input must be known
  // up front: all of stdin when it is a pipe or file, nothing when it is a terminal.
  const env = live ?? new DeterministicEnv({ seed, console: process.stdin.isTTY ? undefined : await readAll(process.stdin) });
  const sink = new ConsoleSink();
  let machine: Machine;
  // No backup here: a disk write or a frame is released at once (the output rule holds trivially).
  const onOutput = (o: Output): void => { if (o.kind === 'console') sink.push(o.byte); else machine.io?.execute(o); };
  try {
    machine = new Machine({ memoryMiB, env, onOutput, ...(io.disk ? { disk: io.disk } : {}), ...(io.net ? { net: io.net } : {}) });
    machine.loadElf(image);
  } catch (e) {
    await io.close();
    if (e instanceof ElfError || e instanceof RangeError) {
      process.stderr.write(`ftvm: ${file}: ${e.message}\n`);
      return 2;
    }
    throw e;
  }

  // The guest runs under its CPU chart (actor id `cpu`); --inspect reports its every state
  // to the relay. Started before the console is attached, so a port in use leaves the
  // terminal as it was.
  let views;
  try {
    views = flags.inspect === undefined ? undefined : await startViews({ inspect: flags.inspect, dashboard: undefined });
  } catch (e) {
    await (machine.io?.close() ?? io.close());
    process.stderr.write(`ftvm: ${(e as Error).message}\n`);
    return (e as CliError).exitCode ?? 1;
  }
  // The device charts report to the same relay (actors `timer`, `uart`, `plic-N`, `virtio-*`).
  if (views?.inspect) machine.inspectCharts(views.inspect);
  const abort = new AbortController();
  let abortCode = EXIT_INTERRUPTED;
  const detach = attachConsole(live, (code) => {
    abortCode = code;
    abort.abort();
  });
  const onStdoutError = (): void => {
    sink.broken = true;
    abort.abort();
  };
  process.stdout.on('error', onStdoutError);
  try {
    // --max-instructions is a run-until: the chart pauses the CPU exactly there.
    const outcome = await runOnCpuActor(machine, {
      mode: cpuModeOf(machine.env),
      id: 'cpu',
      yieldMs: YIELD_MS,
      signal: abort.signal,
      onBatch: () => sink.flush(),
      ...(views?.inspect ? { inspect: views.inspect } : {}),
      ...(maxInstructions === undefined ? {} : { until: machine.icount + maxInstructions, untilReason: 'limit' as const }),
    }).done;
    sink.flush();
    if (sink.broken) return EXIT_BROKEN_PIPE;
    if (values.stats && machine.io) process.stderr.write(`io ${JSON.stringify(machine.io.stats)}${io.udp ? ` net ${JSON.stringify(io.udp.stats)}` : ''}\n`);
    return report(outcome, file, values.stats === true, abortCode);
  } catch (e) {
    sink.flush();
    if (e instanceof GuestDeadlock) {
      process.stderr.write(`ftvm: ${e.message}\n`);
      return 1;
    }
    throw e;
  } finally {
    // NOTE the stdout error listener stays: writes already queued may still fail after we return.
    detach();
    await (machine.io?.close() ?? io.close());
    await views?.close();
  }
}

export const command: Command = {
  usage: USAGE,
  summary: 'run a guest (console on stdin/stdout; exit code is the guest\'s; Ctrl-A x quits a TTY session;\n' +
    '      --deterministic: clock from the instruction count, entropy from --seed, input = all of piped stdin)',
  run,
};
