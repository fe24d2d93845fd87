// The log file as `ftvm record` writes it: the same file as LogFileWriter's (version 2, one
// block per flush), with a snapshot's deflate off the thread that runs the guest. A snapshot
// entry is numbered when its state is captured and its bytes come later (deflated in libuv's
// pool: SnapshotChain.pack); its block takes its place in the file, and the blocks sealed
// after it wait in memory until it is written. So the file holds the same entries in the same
// order as a synchronous writer's; only where blocks end differs (a deferred snapshot is a
// block of its own). Writes stay synchronous: a write(2) of a block costs this thread about
// 3 µs, a write handed to the pool 20 µs (bench/record-offload.mjs).
//
// What a crash loses: a killed recorder (kill -9) loses what it had not written yet, as a
// synchronous writer would: the block being gathered (at most 1 M instructions, 64 KiB), plus,
// while a snapshot is being deflated (a millisecond or so), the blocks waiting behind it. A
// torn tail is still one cut block that readers drop.

import { closeSync, openSync, writeSync } from 'node:fs';
import { BlockEncoder } from './block.js';
import { encodeLogFileHeader, LogWriteError, type LogFileMeta } from './file.js';
import type { LogPayload } from './entry.js';

/** A block in file order: its bytes, or undefined while its snapshot is being deflated. */
interface Item {
  bytes: Uint8Array | undefined;
}

export class BackgroundLogWriter {
  private readonly encoder = new BlockEncoder();
  private readonly queue: Item[] = [];
  private closed = false;
  private fdOpen = true;
  private failed: LogWriteError | undefined;
  private idleWaiters: (() => void)[] = [];
  private entryCount = 0;
  private byteCount = 0;
  private blockCount = 0;
  private writeCount = 0;

  private constructor(
    private readonly path: string,
    private readonly fd: number,
  ) {}

  /**
   * Creates (or truncates) `path` and writes the header before it returns (synchronously, so a
   * file that cannot be written, /dev/full, is known before the guest starts). Rejects with
   * the open error as Node gives it (ENOENT, EACCES, ...) or with LogWriteError.
   */
  static async create(path: string, meta: LogFileMeta): Promise<BackgroundLogWriter> {
    const w = new BackgroundLogWriter(path, openSync(path, 'w'));
    const header = encodeLogFileHeader(meta);
    try {
      for (let at = 0; at < header.length; ) {
        const n = writeSync(w.fd, header, at, header.length - at);
        at += n;
        w.byteCount += n;
      }
    } catch (e) {
      w.abandon();
      throw new LogWriteError(path, e as Error);
    }
    return w;
  }

  get entriesWritten(): number {
    return this.entryCount;
  }

  /** Blocks written so far. */
  get blocksWritten(): number {
    return this.blockCount;
  }

  /** write(2) calls made so far (a call writes every block ready at the time). */
  get writesMade(): number {
    return this.writeCount;
  }

  /** Bytes written so far, header included. */
  get bytesWritten(): number {
    return this.byteCount;
  }

  /** The write error that ended this log, if one did: the recorder checks it between batches. */
  get error(): LogWriteError | undefined {
    return this.failed;
  }

  /** Bytes appended and not yet sealed into a block. */
  get pendingBytes(): number {
    return this.encoder.pendingBytes;
  }

  /** Encodes the entry `seq` at `icount`. Throws RangeError for an invalid or out-of-order entry. */
  appendAt(payload: LogPayload, seq: number, icount: number): void {
    if (this.closed) throw new Error('BackgroundLogWriter: append after close');
    this.encoder.append(payload, seq, icount);
    this.entryCount++;
  }

  /**
   * The snapshot entry `seq` at `icount`, whose bytes `data` gives later: everything appended
   * before it is sealed into a block now, and its own block takes its place in the file.
   */
  appendLater(seq: number, icount: number, data: Promise<Uint8Array>): void {
    if (this.closed) throw new Error('BackgroundLogWriter: append after close');
    this.seal();
    const encode = this.encoder.deferSnapshot(seq, icount);
    this.entryCount++;
    const item: Item = { bytes: undefined };
    this.queue.push(item);
    data.then(
      (d) => {
        item.bytes = encode(d);
        this.drain();
      },
      (e: Error) => this.fail(e),
    );
  }

  /**
   * Seals what was appended into a block and writes every block that is ready (not those
   * behind a snapshot still being packed). Throws LogWriteError on a write error, and again
   * on every later flush.
   */
  flush(): void {
    this.seal();
    this.drain();
    if (this.failed) throw this.failed;
  }

  /** Flushes, waits until every block is written (or a write failed), closes. Rejects with the LogWriteError. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.seal();
    this.drain();
    this.closed = true;
    await new Promise<void>((resolve) => {
      this.idleWaiters.push(resolve);
      this.checkIdle();
    });
    this.closeFd();
    if (this.failed) throw this.failed;
  }

  /** Closes without writing what is still queued (after a write error). */
  abandon(): void {
    this.closed = true;
    this.queue.length = 0;
    this.encoder.seal();
    this.closeFd();
  }

  private seal(): void {
    const block = this.encoder.seal();
    // A copy: the encoder's buffer is reused by the next append.
    if (block) this.queue.push({ bytes: block.slice() });
  }

  /** Writes the blocks that are ready, in file order, up to the first snapshot still being packed. */
  private drain(): void {
    if (this.failed || !this.fdOpen) return;
    let n = 0;
    while (n < this.queue.length && this.queue[n]!.bytes !== undefined) n++;
    if (n > 0) {
      const parts = this.queue.splice(0, n).map((i) => i.bytes!);
      try {
        this.write(parts.length === 1 ? parts[0]! : Buffer.concat(parts));
        this.blockCount += n;
      } catch (e) {
        this.fail(e as Error);
      }
    }
    this.checkIdle();
  }

  /** Writes all of `buf`: a write may be short (a disk filling up writes what fits, then fails). */
  private write(buf: Uint8Array): void {
    for (let at = 0; at < buf.length; ) {
      this.writeCount++;
      const n = writeSync(this.fd, buf, at, buf.length - at);
      at += n;
      this.byteCount += n;
    }
  }

  private fail(e: Error): void {
    this.failed ??= e instanceof LogWriteError ? e : new LogWriteError(this.path, e);
    this.checkIdle();
  }

  /** Wakes close() once nothing is left to write, or nothing more can be. */
  private checkIdle(): void {
    if (!this.failed && this.queue.length > 0) return;
    const waiters = this.idleWaiters;
    this.idleWaiters = [];
    for (const w of waiters) w();
  }

  private closeFd(): void {
    if (!this.fdOpen) return;
    this.fdOpen = false;
    closeSync(this.fd);
  }
}
