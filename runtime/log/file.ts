// The log file: a header naming what the log belongs to, then the frames of one stream.
//
//   "FTVMLOG" (7 bytes ASCII) [version u8 = 1] [metadata length u32 LE] [metadata JSON, UTF-8]
//   [crc32c u32 LE over everything before it] [frames...]
//
// A replay must run the same image with the same memory size, so both are recorded.

import { open, readFile, type FileHandle } from 'node:fs/promises';
import { crc32c } from './crc32c.js';
import { Decoder, Encoder, LogFrameError } from './codec.js';
import type { LogEntry } from './entry.js';

export const LOG_FILE_MAGIC = 'FTVMLOG';
export const LOG_FILE_VERSION = 1;

export interface LogFileMeta {
  /** Digest of the guest image the log was recorded from. */
  imageDigest: string;
  /** Guest RAM size in bytes. */
  memorySize: number;
}

export interface LogFileHeader extends LogFileMeta {
  version: number;
}

export function encodeLogFileHeader(meta: LogFileMeta): Uint8Array {
  const json = Buffer.from(JSON.stringify({ imageDigest: meta.imageDigest, memorySize: meta.memorySize }), 'utf8');
  const out = new Uint8Array(7 + 1 + 4 + json.length + 4);
  out.set(Buffer.from(LOG_FILE_MAGIC, 'ascii'), 0);
  out[7] = LOG_FILE_VERSION;
  const view = new DataView(out.buffer);
  view.setUint32(8, json.length, true);
  out.set(json, 12);
  view.setUint32(12 + json.length, crc32c(out, 0, 12 + json.length), true);
  return out;
}

/** Parses the header at the start of `bytes`; throws LogFrameError (offset 0) if it is bad. */
export function decodeLogFileHeader(bytes: Uint8Array): { header: LogFileHeader; size: number } {
  const fail = (code: 'magic' | 'version' | 'length' | 'crc' | 'payload', detail: string): never => {
    throw new LogFrameError(code, 0, `log file header: ${detail}`);
  };
  if (bytes.length < 16) fail('length', `expected >= 16 bytes, got ${bytes.length}`);
  const magic = Buffer.from(bytes.subarray(0, 7)).toString('latin1');
  if (magic !== LOG_FILE_MAGIC) fail('magic', `expected ${LOG_FILE_MAGIC}, got ${JSON.stringify(magic)}`);
  if (bytes[7] !== LOG_FILE_VERSION) fail('version', `expected ${LOG_FILE_VERSION}, got ${bytes[7]}`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const jsonLength = view.getUint32(8, true);
  const size = 12 + jsonLength + 4;
  if (size > bytes.length) fail('length', `expected ${size} header bytes, got ${bytes.length}`);
  const want = view.getUint32(12 + jsonLength, true);
  const got = crc32c(bytes, 0, 12 + jsonLength);
  if (want !== got) fail('crc', `expected 0x${want.toString(16)}, got 0x${got.toString(16)}`);
  let meta: unknown;
  try {
    meta = JSON.parse(Buffer.from(bytes.subarray(12, 12 + jsonLength)).toString('utf8'));
  } catch {
    return fail('payload', 'metadata is not JSON');
  }
  const m = meta as Partial<LogFileMeta> | null;
  if (typeof m?.imageDigest !== 'string' || !Number.isSafeInteger(m.memorySize)) {
    fail('payload', 'metadata lacks imageDigest or memorySize');
  }
  return { header: { version: LOG_FILE_VERSION, imageDigest: m!.imageDigest!, memorySize: m!.memorySize! }, size };
}

/** Appends entries to a new log file; `append` buffers, `flush` writes (and optionally fsyncs). */
export class LogFileWriter {
  private pending: Uint8Array[] = [];
  private readonly encoder = new Encoder();
  private chain: Promise<void> = Promise.resolve();
  private closed = false;
  private entryCount = 0;
  private byteCount = 0;

  private constructor(private readonly fh: FileHandle) {}

  /** Creates (or truncates) `path` and writes the header. */
  static async create(path: string, meta: LogFileMeta): Promise<LogFileWriter> {
    const fh = await open(path, 'w');
    const w = new LogFileWriter(fh);
    w.pending.push(encodeLogFileHeader(meta));
    await w.flush();
    return w;
  }

  get entriesWritten(): number {
    return this.entryCount;
  }

  /** Bytes appended so far, header included. */
  get bytesWritten(): number {
    return this.byteCount;
  }

  /** Encodes `e` into the buffer. Throws RangeError for an invalid or out-of-order entry. */
  append(e: LogEntry): void {
    if (this.closed) throw new Error('LogFileWriter: append after close');
    this.pending.push(this.encoder.encode(e));
    this.entryCount++;
  }

  /** Writes everything appended so far; with `sync`, also fsyncs. Writes happen in order. */
  flush(opts: { sync?: boolean } = {}): Promise<void> {
    const parts = this.pending;
    this.pending = [];
    this.chain = this.chain.then(async () => {
      if (parts.length > 0) {
        const buf = Buffer.concat(parts);
        await this.fh.write(buf, 0, buf.length);
        this.byteCount += buf.length;
      }
      if (opts.sync) await this.fh.sync();
    });
    return this.chain;
  }

  async close(): Promise<void> {
    if (this.closed) return this.chain;
    this.closed = true;
    await this.flush();
    await this.fh.close();
  }
}

export async function writeLogFile(path: string, meta: LogFileMeta, entries: Iterable<LogEntry>): Promise<void> {
  const w = await LogFileWriter.create(path, meta);
  try {
    for (const e of entries) w.append(e);
  } finally {
    await w.close();
  }
}

/** Reads a whole log file. Throws LogFrameError on a bad header or frame, or a frame cut short (frame offsets count from the end of the header). */
export async function readLogFile(path: string): Promise<{ header: LogFileHeader; entries: LogEntry[] }> {
  const bytes = new Uint8Array(await readFile(path));
  const { header, size } = decodeLogFileHeader(bytes);
  const decoder = new Decoder();
  const entries = decoder.push(bytes.subarray(size));
  decoder.finish();
  return { header, entries };
}
