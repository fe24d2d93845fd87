import { createHash } from 'node:crypto';
import { accessSync, constants, readFileSync, realpathSync, statfsSync, statSync, writeSync } from 'node:fs';
import { dirname, resolve, sep } from 'node:path';
import type { Machine } from '../machine.js';
import { checkFitsRam, ElfError, parseElf } from '../elf.js';
import { PSEUDO_FS } from '../io/pseudo-fs.js';
import { DEFAULT_MEMORY_MIB, MAX_MEMORY_MIB, RAM_BASE } from '../platform.js';
export { packSnapshot, unpackSnapshot } from '../ft/snapshot-wire.js';
export { errorLine } from './error-line.js';

/** An expected, user-facing failure: printed as one `ftvm: ...` line, never a stack trace. */
export class CliError extends Error {
  constructor(message: string, readonly exitCode = 2) {
    super(message);
  }
}

const READ_ERRORS: Record<string, string> = { ENOENT: 'no such file', EISDIR: 'is a directory, not a file', EACCES: 'permission denied' };

/** Why a file named on the command line could not be read, in plain words where they exist. */
export const readErrorText = (e: unknown): string => READ_ERRORS[(e as NodeJS.ErrnoException).code ?? ''] ?? (e as Error).message;

export function readImage(file: string): Uint8Array {
  try {
    return readFileSync(file);
  } catch (e) {
    throw new CliError(`${file}: ${readErrorText(e)}`);
  }
}

/** The pseudo filesystem (proc, sysfs, ...) a resolved path is on, or undefined for a real one. */
function pseudoFsOf(real: string): string | undefined {
  const byPath = ([['/proc', 'proc'], ['/sys', 'sysfs']] as const).find(([p]) => real === p || real.startsWith(p + sep))?.[1];
  if (byPath !== undefined) return byPath;
  try {
    return PSEUDO_FS[statfsSync(real).type];
  } catch {
    return undefined; // No statfs here: the path test above is all we have.
  }
}

/**
 * Check, before anything is written, that `dir` is a directory this process can write into or
 * can create: an existing file, a pseudo filesystem (/proc, /sys: a write there may hang or
 * poke the kernel) or an unwritable parent is one line. `flag` names the option (`--out`).
 */
export function checkWritableDir(flag: string, dir: string): void {
  const full = resolve(dir);
  // The nearest part of the path that exists: the directory itself, or where it would be made.
  let existing = full;
  for (;;) {
    try {
      statSync(existing);
      break;
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code !== 'ENOENT' && code !== 'ENOTDIR') throw new CliError(`${flag} ${dir}: ${READ_ERRORS[code ?? ''] ?? (e as Error).message}`, 1);
      existing = dirname(existing);
    }
  }
  const real = realpathSync(existing);
  const fs = pseudoFsOf(real);
  if (fs !== undefined) throw new CliError(`${flag} ${dir}: ${real} is on the ${fs} pseudo filesystem, not a place for files`, 1);
  if (!statSync(real).isDirectory()) {
    throw new CliError(`${flag} ${dir}: ${existing === full ? 'exists and is not a directory' : `${existing} is not a directory`}`, 1);
  }
  try {
    accessSync(real, constants.W_OK | constants.X_OK);
  } catch {
    throw new CliError(`${flag} ${dir}: ${existing === full ? '' : `${existing}: `}permission denied`, 1);
  }
}

/**
 * The file arbiter's directory is the one both hosts share, so it is never made here: a host
 * whose shared mount is missing would otherwise get a directory of its own, and a claim there
 * would let both replicas win. A directory that is not there yet is said once at start (the
 * node runs; a claim waits until it appears, reported as an unreachable arbiter); a path that
 * can never be one (a file, /proc, no permission) is the flag's error. Returns the warning.
 */
export function checkArbiterDir(dir: string): string | undefined {
  const where = `--arbiter file:${dir}`;
  let real: string;
  try {
    real = realpathSync(dir);
    if (!statSync(real).isDirectory()) throw new CliError(`${where}: not a directory (the arbiter is a directory both hosts share)`);
  } catch (e) {
    if (e instanceof CliError) throw e;
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return `${where}: no such directory yet (never created here: it is the one both hosts share); failover waits until it is there`;
    throw new CliError(`${where}: ${READ_ERRORS[code ?? ''] ?? (e as Error).message}`);
  }
  const fs = pseudoFsOf(real);
  if (fs !== undefined) throw new CliError(`${where}: ${real} is on the ${fs} pseudo filesystem, not a shared directory`);
  try {
    accessSync(real, constants.W_OK | constants.X_OK);
  } catch {
    throw new CliError(`${where}: permission denied`);
  }
  return undefined;
}

/** Read and parse an image without running it: for a command that hands the file to its children. */
export function checkImage(file: string, memoryMiB = DEFAULT_MEMORY_MIB): void {
  try {
    checkFitsRam(parseElf(readImage(file)), RAM_BASE, memoryMiB * 1024 * 1024);
  } catch (e) {
    throw e instanceof ElfError ? new CliError(`${file}: ${e.message}`) : e;
  }
}

export const imageDigest = (image: Uint8Array): string => createHash('sha256').update(image).digest('hex').slice(0, 32);

export function positiveInt(name: string, text: string | undefined, fallback: number): number {
  if (text === undefined) return fallback;
  const n = Number(text);
  if (!/^\d+$/.test(text) || !Number.isSafeInteger(n) || n <= 0) throw new CliError(`--${name} wants a positive integer, got '${text}'`);
  return n;
}

/** `--mem MiB`: checked here, so that a size the machine cannot have is a flag error, not the image's. */
export function memoryFlag(text: string | undefined): number {
  const mib = positiveInt('mem', text, DEFAULT_MEMORY_MIB);
  if (mib > MAX_MEMORY_MIB) throw new CliError(`--mem wants 1 to ${MAX_MEMORY_MIB} MiB, got '${text}'`);
  return mib;
}

/** For a value where 0 means something (a seed): any integer from 0 up. */
export function nonNegativeInt(name: string, text: string | undefined, fallback: number): number {
  if (text === undefined) return fallback;
  const n = Number(text);
  if (!/^\d+$/.test(text) || !Number.isSafeInteger(n)) throw new CliError(`--${name} wants a non-negative integer, got '${text}'`);
  return n;
}


/** Console bytes are gathered and written once per batch, not once per byte. */
export class ConsoleWriter {
  private buf = Buffer.alloc(4096);
  private used = 0;
  constructor(private readonly write: (b: Buffer) => void = (b) => process.stdout.write(b)) {}
  push(byte: number): void {
    if (this.used === this.buf.length) this.flush();
    this.buf[this.used++] = byte;
  }
  flush(): void {
    if (this.used === 0) return;
    this.write(Buffer.from(this.buf.subarray(0, this.used)));
    this.used = 0;
  }
}

/** The line `record` and `replay` both end with, so two runs can be compared with diff. */
export const digestLine = (m: Machine): string => `digest ${m.digest()} icount ${m.icount}\n`;

const pauseCell = new Int32Array(new SharedArrayBuffer(4));
/**
 * Writes all of `buf` to `fd` before returning, as an output released to the world must be.
 * NOTE once process.stdout or stderr exists, libuv has set its pipe non-blocking, so a plain
 * writeSync to a full pipe fails with EAGAIN: wait a millisecond and go on.
 */
export function writeAllSync(fd: number, buf: Uint8Array): void {
  let off = 0;
  while (off < buf.length) {
    try {
      off += writeSync(fd, buf, off, buf.length - off);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EAGAIN') throw e;
      Atomics.wait(pauseCell, 0, 0, 1);
    }
  }
}

/**
 * What is wrong with the positionals when they are not exactly one <elf>, or undefined. A word
 * after `--inspect` that is not a port is a positional (the port is optional), so a mistyped
 * port shows up here: the line names every positional and says so.
 */
export function elfCountProblem(positionals: readonly string[], argv: readonly string[]): string | undefined {
  if (positionals.length === 1) return undefined;
  if (positionals.length === 0) return 'missing <elf>';
  const named = positionals.map((p) => `'${p}'`).join(', ');
  const i = argv.findIndex((a, j) => a === '--inspect' && positionals.includes(argv[j + 1]!));
  const hint = i < 0 ? '' : ` ('${argv[i + 1]}' follows --inspect, whose port is a number)`;
  return `one <elf> only, got ${positionals.length}: ${named}${hint}`;
}
