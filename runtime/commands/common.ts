import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { Machine } from '../machine.js';
export { packSnapshot, unpackSnapshot } from '../ft/snapshot-wire.js';

/** An expected, user-facing failure: printed as one `ftvm: ...` line, never a stack trace. */
export class CliError extends Error {
  constructor(message: string, readonly exitCode = 2) {
    super(message);
  }
}

export function readImage(file: string): Uint8Array {
  try {
    return readFileSync(file);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new CliError(`${file}: ${code === 'ENOENT' ? 'no such file' : (e as Error).message}`);
  }
}

export const imageDigest = (image: Uint8Array): string => createHash('sha256').update(image).digest('hex').slice(0, 32);

export function positiveInt(name: string, text: string | undefined, fallback: number): number {
  if (text === undefined) return fallback;
  const n = Number(text);
  if (!/^\d+$/.test(text) || !Number.isSafeInteger(n) || n <= 0) throw new CliError(`--${name} wants a positive integer, got '${text}'`);
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
