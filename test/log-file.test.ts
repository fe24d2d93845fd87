import { afterAll, describe, expect, it } from 'vitest';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LogFrameError } from '../runtime/log/codec.js';
import type { LogEntry } from '../runtime/log/entry.js';
import { existsSync } from 'node:fs';
import { encodeLogFileHeader, LogFileWriter, LogWriteError, readLogFile, scanLogFile, writeLogFile } from '../runtime/log/file.js';

const dir = await mkdtemp(join(tmpdir(), 'ftvm-log-'));
afterAll(() => rm(dir, { recursive: true, force: true }));

const meta = { imageDigest: 'sha256:' + 'cd'.repeat(32), memorySize: 16 * 1024 * 1024 };
const entries: LogEntry[] = [
  { seq: 0, icount: 0, type: 'value', kind: 'rtc', value: 1_700_000_000_000_000 },
  { seq: 1, icount: 150_000, type: 'timer' },
  { seq: 2, icount: 150_010, type: 'value', kind: 'mtime', value: 10_000 },
  { seq: 3, icount: 200_000, type: 'snapshot', data: new Uint8Array([1, 2, 3]) },
  { seq: 4, icount: 250_000, type: 'end', code: 0 },
];

describe('log file', () => {
  it('writes a header and frames that read back', async () => {
    const path = join(dir, 'a.ftlog');
    await writeLogFile(path, meta, entries);
    const bytes = await readFile(path);
    expect(bytes.subarray(0, 7).toString('latin1')).toBe('FTVMLOG');
    expect(await readLogFile(path)).toEqual({ header: { version: 2, ...meta }, entries });
  });

  it('appends across flushes and counts bytes', async () => {
    const path = join(dir, 'b.ftlog');
    const w = await LogFileWriter.create(path, meta);
    w.append(entries[0]!);
    w.append(entries[1]!);
    await w.flush({ sync: true });
    expect((await readLogFile(path)).entries).toEqual(entries.slice(0, 2));
    for (const e of entries.slice(2)) w.append(e);
    await w.close();
    expect(w.entriesWritten).toBe(entries.length);
    expect(w.bytesWritten).toBe((await readFile(path)).length);
    expect((await readLogFile(path)).entries).toEqual(entries);
    expect(() => w.append({ seq: 5, icount: 250_000, type: 'progress', released: 0 })).toThrow(/after close/);
  });

  it('rejects a damaged header or a torn tail with LogFrameError', async () => {
    const path = join(dir, 'c.ftlog');
    await writeLogFile(path, meta, entries);
    const good = await readFile(path);
    const damaged = Buffer.from(good);
    damaged[20]! ^= 0xff;
    await writeFile(path, damaged);
    await expect(readLogFile(path)).rejects.toMatchObject({ name: 'LogFrameError', code: 'crc', offset: 0 });
    await writeFile(path, good.subarray(0, good.length - 3));
    await expect(readLogFile(path)).rejects.toBeInstanceOf(LogFrameError);
    await writeFile(path, Buffer.from('NOTALOGFILE.....'));
    await expect(readLogFile(path)).rejects.toMatchObject({ code: 'magic' });
  });

  /** Entries 0..2 in one block (one flush), 3..4 in the next; returns the file and where the second block starts. */
  const twoBlocks = async (path: string): Promise<{ good: Buffer; frame3: number }> => {
    const w = await LogFileWriter.create(path, meta);
    for (const e of entries.slice(0, 3)) w.append(e);
    w.flush();
    const frame3 = w.bytesWritten;
    for (const e of entries.slice(3)) w.append(e);
    w.close();
    return { good: await readFile(path), frame3 };
  };

  it('counts frame (block) offsets from the start of the file', async () => {
    const path = join(dir, 'd.ftlog');
    const { good, frame3 } = await twoBlocks(path);
    const headerSize = encodeLogFileHeader(meta).length;
    // The block of entries 0..2 is what a log of entries 0..2 holds after its header.
    await writeLogFile(path, meta, entries.slice(0, 3));
    expect(good.subarray(0, frame3)).toEqual(await readFile(path));
    expect(frame3).toBeGreaterThan(headerSize);
    const damaged = Buffer.from(good);
    damaged[frame3 + 5]! ^= 0x01;
    await writeFile(path, damaged);
    await expect(readLogFile(path)).rejects.toMatchObject({ code: 'crc', offset: frame3, message: expect.stringContaining(`at byte ${frame3}:`) });
    const scan = await scanLogFile(path);
    expect(scan).toMatchObject({ entries: entries.slice(0, 3), validBytes: frame3, size: good.length, headerSize, truncated: false });
    expect(scan.error).toMatchObject({ code: 'crc', offset: frame3 });
  });

  it('scans a log cut at a frame boundary or inside a frame as far as it is whole', async () => {
    const path = join(dir, 'e.ftlog');
    const { good: whole, frame3: boundary } = await twoBlocks(path);
    await writeFile(path, whole.subarray(0, boundary));
    expect(await scanLogFile(path)).toMatchObject({ entries: entries.slice(0, 3), validBytes: boundary, size: boundary, truncated: false });
    expect((await scanLogFile(path)).error).toBeUndefined();
    await writeFile(path, whole.subarray(0, boundary + 4));
    const torn = await scanLogFile(path);
    expect(torn).toMatchObject({ entries: entries.slice(0, 3), validBytes: boundary, size: boundary + 4, truncated: true });
    expect(torn.error).toMatchObject({ code: 'length', offset: boundary });
    await expect(readLogFile(path)).rejects.toMatchObject({ code: 'length', offset: boundary });
  });

  it.skipIf(!existsSync('/dev/full'))('reports a write error as LogWriteError naming the file and the error', async () => {
    await expect(LogFileWriter.create('/dev/full', meta)).rejects.toSatisfy(
      (e) => e instanceof LogWriteError && e.code === 'ENOSPC' && e.message.startsWith('/dev/full: cannot write the log: ENOSPC'),
    );
  });
});
