import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { from, lastValueFrom, toArray } from 'rxjs';
import { crc32c } from '../runtime/log/crc32c.js';
import { Decoder, Encoder, encodeEntry, LogFrameError } from '../runtime/log/codec.js';
import { decodeLog$ } from '../runtime/log/decode-log.js';
import type { LogEntry } from '../runtime/log/entry.js';
import { logPayloadArb, MAX } from './helpers/log-payloads.js';

const concat = (parts: readonly Uint8Array[]): Uint8Array => {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
};

const encodeAll = (entries: readonly LogEntry[]): Uint8Array => {
  const enc = new Encoder();
  return concat(entries.map((e) => enc.encode(e)));
};

const decodeAll = (bytes: Uint8Array): LogEntry[] => {
  const d = new Decoder();
  const out = d.push(bytes);
  d.finish();
  return out;
};

const payloadArb = logPayloadArb(fc.nat());

/** A valid stream: consecutive seqs from a random start, non-decreasing icounts. */
const streamArb: fc.Arbitrary<LogEntry[]> = fc
  .tuple(
    fc.nat(1_000_000),
    fc.integer({ min: 0, max: MAX - 2 ** 40 }),
    fc.array(fc.tuple(fc.oneof(fc.constant(0), fc.nat(200_000), fc.nat(2 ** 32)), payloadArb), { maxLength: 40 }),
  )
  .map(([seq0, icount0, steps]) => {
    let icount = icount0;
    return steps.map(([d, p], i) => {
      icount += d;
      return { seq: seq0 + i, icount, ...p } as LogEntry;
    });
  });

/** Random cut points splitting `bytes` into chunks. */
const split = (bytes: Uint8Array, cuts: number[]): Uint8Array[] => {
  const points = [...new Set(cuts.map((c) => c % (bytes.length + 1)))].sort((a, b) => a - b);
  const out: Uint8Array[] = [];
  let prev = 0;
  for (const p of [...points, bytes.length]) {
    out.push(bytes.subarray(prev, p));
    prev = p;
  }
  return out;
};

const oneOfEach: LogEntry[] = [
  { seq: 7, icount: 1000, type: 'timer' },
  { seq: 8, icount: 1000, type: 'value', kind: 'mtime', value: 2 ** 40 + 12345 },
  { seq: 9, icount: 1500, type: 'value', kind: 'mtime', value: 2 ** 40 + 22345 },
  { seq: 10, icount: 1500, type: 'value', kind: 'rtc', value: 1_700_000_000_000_000_000 / 1000 },
  { seq: 11, icount: 1600, type: 'value', kind: 'seed', value: 0xbeef },
  { seq: 12, icount: 1700, type: 'console', byte: 0x0a },
  { seq: 13, icount: 1800, type: 'net-rx', frame: new Uint8Array([1, 2, 3, 4, 5]) },
  { seq: 14, icount: 1900, type: 'disk-read', tag: 3, data: new Uint8Array(512).fill(0xaa) },
  { seq: 15, icount: 1900, type: 'disk-done', tag: 3, status: 0 },
  { seq: 16, icount: 2000, type: 'progress', released: 7 },
  { seq: 17, icount: 2100, type: 'output', kind: 'net', count: 2 },
  { seq: 18, icount: 2200, type: 'digest', digest: 'ab'.repeat(32) },
  { seq: 19, icount: 2300, type: 'snapshot', data: new Uint8Array([9, 8, 7]) },
  { seq: 20, icount: 2300, type: 'value', kind: 'mtime', value: 2 ** 40 + 32345 },
  { seq: 21, icount: 2400, type: 'end', code: 3 },
];

describe('crc32c', () => {
  it('matches the standard check value', () => {
    expect(crc32c(new TextEncoder().encode('123456789'))).toBe(0xe3069283);
  });
  it('agrees between the sliced and the bytewise path', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 100 }), (b) => {
        const whole = crc32c(b);
        const padded = new Uint8Array(b.length + 3);
        padded.set(b, 3);
        expect(crc32c(padded, 3)).toBe(whole);
      }),
    );
  });
});

describe('log codec', () => {
  it('round-trips every entry type in a stream', () => {
    expect(decodeAll(encodeAll(oneOfEach))).toEqual(oneOfEach);
  });

  it('writes an end reason as one byte after the code, only when the entry has one', () => {
    const plain = encodeEntry({ seq: 0, icount: 9, type: 'end', code: 130 });
    const stopped = encodeEntry({ seq: 0, icount: 9, type: 'end', code: 130, reason: 'stopped' });
    expect(stopped.length).toBe(plain.length + 1);
    expect(decodeAll(plain)).toEqual([{ seq: 0, icount: 9, type: 'end', code: 130 }]);
    expect(decodeAll(stopped)).toEqual([{ seq: 0, icount: 9, type: 'end', code: 130, reason: 'stopped' }]);
    // An unknown reason byte (with a valid CRC) is a payload error, never a guess.
    const unknown = Uint8Array.from(stopped);
    unknown[unknown.length - 5] = 7;
    const crc = crc32c(unknown, 0, unknown.length - 4);
    new DataView(unknown.buffer).setUint32(unknown.length - 4, crc, true);
    expect(() => decodeAll(unknown)).toThrow(expect.objectContaining({ code: 'payload', detail: 'unknown end reason' }));
    expect(() => new Encoder().encode({ seq: 0, icount: 0, type: 'end', code: 0, reason: 'gone' as 'halt' })).toThrow(RangeError);
  });

  it('round-trips every entry type as lone frames, which concatenate', () => {
    for (const e of oneOfEach) expect(decodeAll(encodeEntry(e))).toEqual([e]);
    expect(decodeAll(concat(oneOfEach.map(encodeEntry)))).toEqual(oneOfEach);
  });

  it('keeps timer and clock-read entries to a handful of bytes', () => {
    const enc = new Encoder();
    enc.encode({ seq: 0, icount: 0, type: 'value', kind: 'mtime', value: 2 ** 40 });
    // 1 kHz timer at ~150 MIPS: 150k instructions and 10k mtime ticks apart.
    expect(enc.encode({ seq: 1, icount: 150_000, type: 'timer' }).length).toBe(12);
    expect(enc.encode({ seq: 2, icount: 150_100, type: 'value', kind: 'mtime', value: 2 ** 40 + 10_000 }).length).toBe(13);
    expect(enc.encode({ seq: 3, icount: 160_000, type: 'progress', released: 0 }).length).toBe(12);
  });

  it('starts a decodable stream at every snapshot frame (seeking)', () => {
    const enc = new Encoder();
    const frames = oneOfEach.map((e) => enc.encode(e));
    const at = oneOfEach.findIndex((e) => e.type === 'snapshot');
    expect(decodeAll(concat(frames.slice(at)))).toEqual(oneOfEach.slice(at));
    // A delta frame cannot start a stream: its base is unknown.
    expect(() => decodeAll(concat(frames.slice(at + 1)))).toThrow(LogFrameError);
  });

  it('rejects invalid entries at the encoder', () => {
    const enc = new Encoder();
    expect(() => enc.encode({ seq: 0, icount: 0, type: 'value', kind: 'mtime', value: 2 ** 53 })).toThrow(RangeError);
    expect(() => enc.encode({ seq: 0, icount: 0, type: 'digest', digest: 'ABC' })).toThrow(RangeError);
    expect(() => enc.encode({ seq: 0, icount: 0, type: 'console', byte: 256 })).toThrow(RangeError);
    enc.encode({ seq: 0, icount: 10, type: 'timer' });
    expect(() => enc.encode({ seq: 2, icount: 10, type: 'timer' })).toThrow(/does not follow/);
    expect(() => enc.encode({ seq: 1, icount: 9, type: 'timer' })).toThrow(/icount/);
  });

  it('round-trips random streams under random chunk splits', () => {
    fc.assert(
      fc.property(streamArb, fc.array(fc.nat(), { maxLength: 30 }), (entries, cuts) => {
        const d = new Decoder();
        const got = split(encodeAll(entries), cuts).flatMap((c) => d.push(c));
        d.finish();
        expect(got).toEqual(entries);
      }),
      { numRuns: 300 },
    );
  });

  it('decodeLog$ decodes a chunked observable', async () => {
    const bytes = encodeAll(oneOfEach);
    const got = await lastValueFrom(decodeLog$(from(split(bytes, [1, 2, 3, 50, 51, 300]))).pipe(toArray()));
    expect(got).toEqual(oneOfEach);
  });

  it('decodeLog$ emits the good prefix, then errors with LogFrameError', async () => {
    const enc = new Encoder();
    const frames = oneOfEach.slice(0, 3).map((e) => enc.encode(e));
    frames[2]![frames[2]!.length - 1]! ^= 1;
    const seen: LogEntry[] = [];
    const err = await lastValueFrom(decodeLog$(from([concat(frames)]))).then(
      () => undefined,
      (e: unknown) => e,
    );
    decodeLog$(from([concat(frames)])).subscribe({ next: (e) => seen.push(e), error: () => undefined });
    expect(err).toBeInstanceOf(LogFrameError);
    expect((err as LogFrameError).code).toBe('crc');
    expect((err as LogFrameError).offset).toBe(frames[0]!.length + frames[1]!.length);
    expect(seen).toEqual(oneOfEach.slice(0, 2));
  });

  it('decodeLog$ errors when the source ends inside a frame', async () => {
    const bytes = encodeAll(oneOfEach.slice(0, 2));
    await expect(lastValueFrom(decodeLog$(from([bytes.subarray(0, bytes.length - 1)])))).rejects.toMatchObject({
      name: 'LogFrameError',
      code: 'length',
    });
  });

  it('names the failing check', () => {
    const good = encodeEntry({ seq: 1, icount: 5, type: 'timer' });
    const bad = (mutate: (b: Uint8Array) => void): string => {
      const b = good.slice();
      mutate(b);
      try {
        decodeAll(b);
        return 'none';
      } catch (e) {
        expect(e).toBeInstanceOf(LogFrameError);
        return (e as LogFrameError).code;
      }
    };
    expect(bad((b) => (b[0] = 0))).toBe('magic');
    expect(bad((b) => (b[1] = 9))).toBe('version');
    expect(bad((b) => (b[3] = 2))).toBe('length');
    expect(bad((b) => (b[b.length - 2]! ^= 0x10))).toBe('crc');
    // seq 1 then seq 3, both valid frames.
    expect(() => decodeAll(concat([good, encodeEntry({ seq: 3, icount: 5, type: 'timer' })]))).toThrow(
      expect.objectContaining({ code: 'seq-gap' }),
    );
  });

  it('never yields a wrong entry from corrupted or truncated bytes', () => {
    fc.assert(
      fc.property(
        streamArb.filter((s) => s.length > 0),
        fc.array(fc.tuple(fc.nat(), fc.integer({ min: 1, max: 255 })), { minLength: 1, maxLength: 4 }),
        fc.nat(),
        fc.boolean(),
        (entries, flips, cut, truncate) => {
          const bytes = encodeAll(entries).slice();
          for (const [pos, x] of flips) bytes[pos % bytes.length]! ^= x;
          const input = truncate ? bytes.subarray(0, cut % bytes.length) : bytes;
          let got: readonly LogEntry[];
          try {
            got = decodeAll(input);
          } catch (e) {
            if (!(e instanceof LogFrameError)) throw e;
            got = e.entries;
          }
          // Every entry decoded is exactly the one that was encoded there.
          expect(got.length).toBeLessThanOrEqual(entries.length);
          expect(got).toEqual(entries.slice(0, got.length));
        },
      ),
      { numRuns: 1000 },
    );
  });

  it('rejects garbage with LogFrameError only', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 1, maxLength: 200 }), fc.boolean(), (b, magic) => {
        if (magic) b[0] = 0xf7;
        try {
          decodeAll(b);
        } catch (e) {
          expect(e).toBeInstanceOf(LogFrameError);
        }
      }),
      { numRuns: 1000 },
    );
  });

  it('hands out byte payloads the caller owns, even from a Node Buffer chunk', () => {
    const e: LogEntry = { seq: 0, icount: 0, type: 'net-rx', frame: new Uint8Array([1, 2, 3]) };
    const chunk = Buffer.from(encodeEntry(e));
    const [got] = new Decoder().push(chunk);
    chunk.fill(0);
    expect(got).toEqual(e);
    expect(Object.getPrototypeOf((got as { frame: Uint8Array }).frame)).toBe(Uint8Array.prototype);
  });

  it('stays failed after an error', () => {
    const d = new Decoder();
    expect(() => d.push(new Uint8Array([0]))).toThrow(LogFrameError);
    expect(() => d.push(encodeEntry({ seq: 0, icount: 0, type: 'timer' }))).toThrow(LogFrameError);
  });
});
