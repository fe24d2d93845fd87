import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { Machine } from '../machine.js';
import { checkFitsRam, ElfError, parseElf } from '../elf.js';
import { DEFAULT_MEMORY_MIB, RAM_BASE } from '../platform.js';
export { packSnapshot, unpackSnapshot } from '../ft/snapshot-wire.js';

/** An expected, user-facing failure: printed as one `ftvm: ...` line, never a stack trace. */
export class CliError extends Error {
  constructor(message: string, readonly exitCode = 2) {
    super(message);
  }
}

const READ_ERRORS: Record<string, string> = { ENOENT: 'no such file', EISDIR: 'is a directory, not a file', EACCES: 'permission denied' };

export function readImage(file: string): Uint8Array {
  try {
    return readFileSync(file);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new CliError(`${file}: ${READ_ERRORS[code ?? ''] ?? (e as Error).message}`);
  }
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
