// The log file's blocks (file version 2, runtime/log/block.ts): round trips, cut and damaged
// blocks, and the size of the entries a recording is made of.
import { afterAll, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BlockEncoder, decodeBlocks } from '../runtime/log/block.js';
import { Encoder, LogFrameError } from '../runtime/log/codec.js';
import type { LogEntry } from '../runtime/log/entry.js';
import { logPayloadArb, MAX } from './helpers/log-payloads.js';
import { encodeLogFileHeader, LOG_FILE_VERSION, readLogFile, scanLogFile, writeLogFile } from '../runtime/log/file.js';

const dir = await mkdtemp(join(tmpdir(), 'ftvm-log-block-'));
afterAll(() => rm(dir, { recursive: true, force: true }));

const payloadArb = logPayloadArb(fc.oneof(fc.nat(), fc.integer({ min: 0, max: MAX })));

/**
 * A valid stream cut into blocks: consecutive seqs from a random start, non-decreasing icounts
 * (some steps of 2^48 and more, which take gaps), and a seal after the entries marked.
 */
const streamArb = fc
  .tuple(
    fc.nat(1_000_000),
    fc.oneof(fc.nat(1000), fc.integer({ min: 0, max: MAX - 2 ** 50 })),
    fc.array(fc.tuple(fc.oneof(fc.constant(0), fc.nat(200_000), fc.nat(2 ** 32), fc.integer({ min: 2 ** 48 - 2, max: 2 ** 49 })), payloadArb, fc.boolean()), { minLength: 1, maxLength: 40 }),
  )
  .map(([seq0, icount0, steps]) => {
    let icount = icount0;
    const entries = steps.map(([d, p], i) => {
      icount = Math.min(icount + d, MAX);
      return { seq: seq0 + i, icount, ...p } as LogEntry;
    });
    return { entries, sealAfter: steps.map(([, , s]) => s) };
  });

/** The blocks of `entries`, sealed after each entry whose flag is set and after the last. */
function encodeBlocks(entries: readonly LogEntry[], sealAfter: readonly boolean[]): { bytes: Uint8Array; blocks: { at: number; entries: number }[] } {
  const enc = new BlockEncoder();
  const parts: Uint8Array[] = [];
  const blocks: { at: number; entries: number }[] = [];
  let at = 0;
  entries.forEach((e, i) => {
    enc.append(e, e.seq, e.icount);
    if (sealAfter[i] || i === entries.length - 1) {
      const b = Uint8Array.from(enc.seal()!);
      blocks.push({ at, entries: i + 1 });
      parts.push(b);
      at += b.length;
    }
  });
  return { bytes: Uint8Array.from(Buffer.concat(parts)), blocks };
}

describe('log blocks', () => {
  it('round-trip any valid stream, however it is cut into blocks', () => {
    fc.assert(
      fc.property(streamArb, ({ entries, sealAfter }) => {
        const { bytes } = encodeBlocks(entries, sealAfter);
        const scan = decodeBlocks(bytes, 0);
        expect(scan.error).toBeUndefined();
        expect(scan.entries).toEqual(entries);
        expect(scan.end).toBe(bytes.length);
      }),
      { numRuns: 300 },
    );
  });

  it('a log cut anywhere reads as its whole blocks, says it is cut, and never throws', () => {
    fc.assert(
      fc.property(streamArb, fc.nat(), ({ entries, sealAfter }, cutSeed) => {
        const { bytes, blocks } = encodeBlocks(entries, sealAfter);
        const cut = cutSeed % (bytes.length + 1);
        const scan = decodeBlocks(bytes.subarray(0, cut), 0);
        // The blocks that end at or before the cut are whole; the one the cut falls in is torn.
        const whole = blocks.filter((b, k) => (blocks[k + 1]?.at ?? bytes.length) <= cut);
        const wholeEnd = blocks[whole.length]?.at ?? bytes.length;
        expect(scan.entries).toEqual(entries.slice(0, whole.at(-1)?.entries ?? 0));
        expect(scan.end).toBe(wholeEnd);
        expect(scan.truncated).toBe(cut > wholeEnd);
        if (cut === wholeEnd) expect(scan.error).toBeUndefined();
        else expect(scan.error).toMatchObject({ code: 'length', offset: wholeEnd });
      }),
      { numRuns: 300 },
    );
  });

  it('a flipped bit anywhere stops the log before the block it is in, with a LogFrameError there', () => {
    fc.assert(
      fc.property(streamArb, fc.nat(), fc.nat(7), ({ entries, sealAfter }, posSeed, bit) => {
        const { bytes, blocks } = encodeBlocks(entries, sealAfter);
        const pos = posSeed % bytes.length;
        const damaged = Uint8Array.from(bytes);
        damaged[pos]! ^= 1 << bit;
        const k = blocks.filter((b) => b.at <= pos).length - 1;
        const scan = decodeBlocks(damaged, 0);
        // Every entry before the damaged block, none from it or after (a flip in a length field
        // can also make the block look cut).
        expect(scan.entries).toEqual(entries.slice(0, k === 0 ? 0 : blocks[k - 1]!.entries));
        expect(scan.end).toBe(blocks[k]!.at);
        expect(scan.error).toBeInstanceOf(LogFrameError);
        expect(scan.error!.offset).toBe(blocks[k]!.at);
      }),
      { numRuns: 400 },
    );
  });

  it('refuses blocks out of order or repeated (seq), even with good CRCs', () => {
    const entries: LogEntry[] = [0, 1, 2, 3].map((i) => ({ seq: i, icount: i * 10, type: 'timer' }));
    const { bytes, blocks } = encodeBlocks(entries, [true, true, true, true]);
    const b = (k: number): Uint8Array => bytes.subarray(blocks[k]!.at, blocks[k + 1]?.at ?? bytes.length);
    const swapped = Buffer.concat([b(0), b(2), b(1), b(3)]);
    expect(decodeBlocks(swapped, 0, 100)).toMatchObject({ entries: entries.slice(0, 1), end: 100 + b(0).length, error: { code: 'seq-gap', offset: 100 + b(0).length } });
    const repeated = Buffer.concat([b(0), b(1), b(1)]);
    expect(decodeBlocks(repeated, 0).error).toMatchObject({ code: 'seq-gap' });
  });

  it('rejects an invalid entry with RangeError and leaves the block as it was', () => {
    const enc = new BlockEncoder();
    enc.append({ type: 'timer' }, 5, 100);
    const before = enc.pendingBytes;
    expect(() => enc.append({ type: 'timer' }, 7, 200)).toThrow(RangeError);
    expect(() => enc.append({ type: 'timer' }, 6, 99)).toThrow(RangeError);
    expect(() => enc.append({ type: 'value', kind: 'mtime', value: -1 }, 6, 200)).toThrow(RangeError);
    expect(() => enc.append({ type: 'digest', digest: 'XY' }, 6, 200)).toThrow(RangeError);
    expect(enc.pendingBytes).toBe(before);
    enc.append({ type: 'value', kind: 'mtime', value: 7 }, 6, 200);
    expect(decodeBlocks(enc.seal()!, 0).entries).toEqual([
      { seq: 5, icount: 100, type: 'timer' },
      { seq: 6, icount: 200, type: 'value', kind: 'mtime', value: 7 },
    ]);
    expect(enc.seal()).toBeUndefined();
  });

  it('a 1 kHz timer tick and its clock read cost about 4 bytes each, where a frame each cost 12-14', () => {
    // 10 000 ticks 30 000-200 000 instructions apart (a loaded host to a quiet one), each
    // with the handler's mtime read, in blocks of 100 ticks (the recorder writes every 500 k
    // instructions or 64 KiB).
    const entries: LogEntry[] = [];
    let icount = 0;
    let mtime = 1_234_567_890;
    for (let t = 0; t < 10_000; t++) {
      icount += 30_000 + ((t * 7919) % 170_000);
      mtime += 10_000 + (t % 37);
      entries.push({ seq: entries.length, icount, type: 'timer' });
      entries.push({ seq: entries.length, icount: icount + 40, type: 'value', kind: 'mtime', value: mtime });
    }
    const { bytes } = encodeBlocks(entries, entries.map((_, i) => i % 200 === 199));
    const v1 = new Encoder();
    const v1Bytes = entries.reduce((n, e) => n + v1.encode(e).length, 0);
    expect(bytes.length / entries.length).toBeLessThan(4.5);
    expect(v1Bytes / entries.length).toBeGreaterThan(12);
    expect(decodeBlocks(bytes, 0).entries).toEqual(entries);
  });
});

describe('log file versions', () => {
  const meta = { imageDigest: 'sha256:' + 'ab'.repeat(32), memorySize: 16 * 1024 * 1024 };
  const entries: LogEntry[] = [
    { seq: 0, icount: 0, type: 'value', kind: 'rtc', value: 1_700_000_000_000_000 },
    { seq: 1, icount: 150_000, type: 'timer' },
    { seq: 2, icount: 150_010, type: 'output', kind: 'console', count: 3 },
    { seq: 3, icount: 200_000, type: 'snapshot', data: new Uint8Array([1, 2, 3]) },
    { seq: 4, icount: 250_000, type: 'end', code: 0 },
  ];

  it('writes version 2 and still reads version 1 (a frame per entry)', async () => {
    const path = join(dir, 'v2.log');
    await writeLogFile(path, meta, entries);
    expect((await readFile(path))[7]).toBe(2);
    expect(LOG_FILE_VERSION).toBe(2);
    expect(await readLogFile(path)).toEqual({ header: { version: 2, ...meta }, entries });

    const v1 = join(dir, 'v1.log');
    const enc = new Encoder();
    await writeFile(v1, Buffer.concat([encodeLogFileHeader(meta, 1), ...entries.map((e) => enc.encode(e))]));
    expect(await readLogFile(v1)).toEqual({ header: { version: 1, ...meta }, entries });
  });

  it('refuses another version in the header with a version error at byte 0', async () => {
    const path = join(dir, 'v3.log');
    await writeFile(path, encodeLogFileHeader(meta, 3));
    await expect(scanLogFile(path)).rejects.toMatchObject({
      name: 'LogFrameError', code: 'version', offset: 0,
      message: 'log frame version error at byte 0: log file header: version 3, this ftvm reads versions 1 and 2',
    });
  });
});
