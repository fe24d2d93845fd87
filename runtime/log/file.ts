// The log file: a header naming what the log belongs to, then the entries of one stream.
//
//   "FTVMLOG" (7 bytes ASCII) [version u8] [metadata length u32 LE] [metadata JSON, UTF-8]
//   [crc32c u32 LE over everything before it] [frames...]
//
// Version 2 (written since issue 14's third pass): the frames are blocks (runtime/log/block.ts),
// one per write, each holding many entries under one CRC with seq implied. Version 1 (read
// still): one codec.ts frame per entry, as on the wire. Any other version is refused.
// A replay must run the same image with the same memory size, so both are recorded.

import { closeSync, fsyncSync, openSync, writeSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { crc32c } from './crc32c.js';
import { Decoder, LogFrameError } from './codec.js';
import { BlockEncoder, decodeBlocks } from './block.js';
import type { LogEntry, LogPayload } from './entry.js';

export const LOG_FILE_MAGIC = 'FTVMLOG';
/** The version this build writes. */
export const LOG_FILE_VERSION = 2;
/** Every version this build reads: 1 (a frame per entry) and 2 (blocks). */
export const LOG_FILE_VERSIONS: readonly number[] = [1, 2];

export interface LogFileMeta {
  /** Digest of the guest image the log was recorded from. */
  imageDigest: string;
  /** Guest RAM size in bytes. */
  memorySize: number;
}

export interface LogFileHeader extends LogFileMeta {
  version: number;
}

export function encodeLogFileHeader(meta: LogFileMeta, version = LOG_FILE_VERSION): Uint8Array {
  const json = Buffer.from(JSON.stringify({ imageDigest: meta.imageDigest, memorySize: meta.memorySize }), 'utf8');
  const out = new Uint8Array(7 + 1 + 4 + json.length + 4);
  out.set(Buffer.from(LOG_FILE_MAGIC, 'ascii'), 0);
  out[7] = version;
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
  const version = bytes[7]!;
  if (!LOG_FILE_VERSIONS.includes(version)) {
    fail('version', `version ${version}, this ftvm reads versions ${LOG_FILE_VERSIONS.join(' and ')}`);
  }
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
  return { header: { version, imageDigest: m!.imageDigest!, memorySize: m!.memorySize! }, size };
}

/** Writing the log failed (ENOSPC, EIO, EFBIG, ...): the file names itself, the cause says why. */
export class LogWriteError extends Error {
  override readonly name = 'LogWriteError';
  readonly code: string | undefined;
  constructor(
    readonly path: string,
    override readonly cause: Error,
  ) {
    super(`${path}: cannot write the log: ${cause.message}`);
    this.code = (cause as NodeJS.ErrnoException).code;
  }
}

/**
 * Appends entries to a new log file (version 2); `append` encodes into the block being built,
 * `flush` writes it as one block (and optionally fsyncs).
 *
 * NOTE: writes are synchronous, one block per flush (the recorder flushes every 500 k
 * instructions or 64 KiB, at a batch boundary). So a write error is known before the guest
 * runs much further, and whatever was flushed is in the file when a signal handler runs:
 * nothing is left in flight.
 */
export class LogFileWriter {
  /** The header, until the first flush writes it. */
  private header: Uint8Array | undefined;
  private readonly encoder = new BlockEncoder();
  private closed = false;
  private failed: LogWriteError | undefined;
  private entryCount = 0;
  private byteCount = 0;
  private blockCount = 0;

  private constructor(
    private readonly path: string,
    private readonly fd: number,
  ) {}

  /**
   * Creates (or truncates) `path` and writes the header. Rejects with the open error as Node
   * gives it (ENOENT, EACCES, ...) or with LogWriteError if the header cannot be written.
   */
  static async create(path: string, meta: LogFileMeta): Promise<LogFileWriter> {
    const w = new LogFileWriter(path, openSync(path, 'w'));
    w.header = encodeLogFileHeader(meta);
    try {
      w.flush();
    } catch (e) {
      w.abandon();
      throw e;
    }
    return w;
  }

  get entriesWritten(): number {
    return this.entryCount;
  }

  /** Blocks written so far: one per flush that had entries. */
  get blocksWritten(): number {
    return this.blockCount;
  }

  /** Bytes written so far, header included. */
  get bytesWritten(): number {
    return this.byteCount;
  }

  /** The write error that ended this log, if one did. */
  get error(): LogWriteError | undefined {
    return this.failed;
  }

  /** Encodes `e` into the buffer. Throws RangeError for an invalid or out-of-order entry. */
  append(e: LogEntry): void {
    this.appendAt(e, e.seq, e.icount);
  }

  /**
   * Encodes the entry `seq` at `icount` carrying `payload` (what `append` does without an entry
   * object): the recorder numbers its entries itself, once per input.
   */
  appendAt(payload: LogPayload, seq: number, icount: number): void {
    if (this.closed) throw new Error('LogFileWriter: append after close');
    this.encoder.append(payload, seq, icount);
    this.entryCount++;
  }

  /** Bytes appended and not yet written (the entries of the block being built). */
  get pendingBytes(): number {
    return this.encoder.pendingBytes;
  }

  /**
   * Writes everything appended so far; with `sync`, also fsyncs. Throws LogWriteError on a
   * write error, and again on every later flush: after a short write the file ends inside a
   * frame, and nothing written after that could be read back.
   */
  flush(opts: { sync?: boolean } = {}): void {
    if (this.failed) throw this.failed;
    const header = this.header;
    this.header = undefined;
    const block = this.encoder.seal();
    try {
      if (header) this.write(header);
      if (block) {
        this.write(block);
        this.blockCount++;
      }
      if (opts.sync) fsyncSync(this.fd);
    } catch (e) {
      this.failed = new LogWriteError(this.path, e as Error);
      throw this.failed;
    }
  }

  /** Writes all of `buf`: a write may be short (a disk filling up writes what fits, then fails). */
  private write(buf: Uint8Array): void {
    for (let at = 0; at < buf.length; ) {
      const n = writeSync(this.fd, buf, at, buf.length - at);
      at += n;
      this.byteCount += n;
    }
  }

  /** Flushes and closes. Throws LogWriteError if the last write fails (the file is closed anyway). */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    try {
      if (!this.failed) this.flush();
    } finally {
      closeSync(this.fd);
    }
  }

  /** Closes without writing what is still buffered (after a write error). */
  abandon(): void {
    if (this.closed) return;
    this.closed = true;
    this.header = undefined;
    this.encoder.seal();
    closeSync(this.fd);
  }
}

export async function writeLogFile(path: string, meta: LogFileMeta, entries: Iterable<LogEntry>): Promise<void> {
  const w = await LogFileWriter.create(path, meta);
  try {
    for (const e of entries) w.append(e);
  } finally {
    w.close();
  }
}

/** What a log file holds, read as far as its frames are whole and valid. */
export interface LogFileScan {
  header: LogFileHeader;
  /** Every valid entry, in order, up to the first bad or cut frame (version 2: block). */
  entries: LogEntry[];
  /** File size in bytes. */
  size: number;
  /** Header size in bytes: where the first frame starts. */
  headerSize: number;
  /** File offset just past the last valid frame. */
  validBytes: number;
  /**
   * Why the frames stop before `size`, with its offset counted from the file's start: a bad
   * frame, or (with `truncated`) the file ending inside a frame.
   */
  error?: LogFrameError;
  /** The file ends inside a frame (a torn tail, as a killed writer leaves), not a bad frame. */
  truncated: boolean;
}

/**
 * Reads a log file as far as it is good. Throws LogFrameError (offset 0) on a bad header and
 * the read error for an unreadable file; a bad or cut frame is reported in `error` instead.
 */
export async function scanLogFile(path: string): Promise<LogFileScan> {
  const bytes = new Uint8Array(await readFile(path));
  const { header, size: headerSize } = decodeLogFileHeader(bytes);
  if (header.version !== 1) {
    const scan = decodeBlocks(bytes, headerSize);
    return {
      header, entries: scan.entries, size: bytes.length, headerSize, validBytes: scan.end, truncated: scan.truncated,
      ...(scan.error ? { error: scan.error } : {}),
    };
  }
  const decoder = new Decoder();
  const atFile = (err: LogFrameError): LogFrameError =>
    new LogFrameError(err.code, err.offset + headerSize, err.detail, err.entries);
  let entries: LogEntry[];
  try {
    entries = decoder.push(bytes.subarray(headerSize));
  } catch (err) {
    if (!(err instanceof LogFrameError)) throw err;
    const error = atFile(err);
    return { header, entries: [...err.entries], size: bytes.length, headerSize, validBytes: error.offset, error, truncated: false };
  }
  const validBytes = headerSize + decoder.offset;
  try {
    decoder.finish();
  } catch (err) {
    if (!(err instanceof LogFrameError)) throw err;
    return { header, entries, size: bytes.length, headerSize, validBytes, error: atFile(err), truncated: true };
  }
  return { header, entries, size: bytes.length, headerSize, validBytes, truncated: false };
}

/**
 * Reads a whole log file. Throws LogFrameError on a bad header or frame, or a frame cut short;
 * its offset counts from the file's start.
 */
export async function readLogFile(path: string): Promise<{ header: LogFileHeader; entries: LogEntry[] }> {
  const scan = await scanLogFile(path);
  if (scan.error) throw scan.error;
  return { header: scan.header, entries: scan.entries };
}
