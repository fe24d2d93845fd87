// The log as `ftvm record` writes it (runtime/log/background.ts): writes in libuv's pool and
// snapshots whose bytes come later, in any order. The file must read back as the entries in
// the order they were appended, and nothing appended after a snapshot may reach the file
// before that snapshot does.
import { afterAll, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BackgroundLogWriter } from '../runtime/log/background.js';
import { readLogFile, scanLogFile } from '../runtime/log/file.js';
import type { LogEntry } from '../runtime/log/entry.js';
import { logPayloadArb, MAX } from './helpers/log-payloads.js';
import { boot } from './helpers/boot.js';
import { runMachine } from '../runtime/runner.js';
import { chainPolicy, SnapshotChain } from '../runtime/snapshot.js';

const dir = await mkdtemp(join(tmpdir(), 'ftvm-log-background-'));
afterAll(() => rm(dir, { recursive: true, force: true }));
const meta = { imageDigest: 'ab'.repeat(32), memorySize: 1 << 20 };

const payloadArb = logPayloadArb(fc.oneof(fc.nat(), fc.integer({ min: 0, max: MAX })));

/** A deferred promise: the test decides when a snapshot's bytes are "packed". */
function later<T>(): { promise: Promise<T>; resolve: (v: T) => void } {
  let resolve!: (v: T) => void;
  const promise = new Promise<T>((r) => { resolve = r; });
  return { promise, resolve };
}

const settle = (): Promise<void> => new Promise((r) => setTimeout(r, 5));

describe('BackgroundLogWriter', () => {
  it('reads back every entry in append order, whatever order the deferred snapshots are packed in', async () => {
    let n = 0;
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.record({ payload: payloadArb, deferred: fc.boolean(), flush: fc.boolean(), step: fc.nat(100_000) }), { minLength: 1, maxLength: 30 }),
        fc.func(fc.integer()),
        async (steps, order) => {
          const path = join(dir, `order-${n++}.log`);
          const w = await BackgroundLogWriter.create(path, meta);
          const expected: LogEntry[] = [];
          const pending: { resolve: () => void; key: number }[] = [];
          let icount = 0;
          steps.forEach((s, seq) => {
            icount += s.step;
            if (s.deferred) {
              const data = Uint8Array.from({ length: (seq * 37) % 300 }, (_, i) => (i * 7 + seq) & 0xff);
              const d = later<Uint8Array>();
              w.appendLater(seq, icount, d.promise);
              pending.push({ resolve: () => d.resolve(data), key: order(seq) });
              expected.push({ seq, icount, type: 'snapshot', data });
            } else {
              w.appendAt(s.payload, seq, icount);
              expected.push({ seq, icount, ...s.payload } as LogEntry);
            }
            if (s.flush) w.flush();
          });
          // Packed in an order of the property's choosing, with the pool's writes in between.
          pending.sort((a, b) => a.key - b.key);
          const closing = w.close();
          for (const p of pending) {
            p.resolve();
            await settle();
          }
          await closing;
          expect((await readLogFile(path)).entries).toEqual(expected);
          expect(w.bytesWritten).toBe((await scanLogFile(path)).size);
          expect(w.entriesWritten).toBe(steps.length);
        },
      ),
      { numRuns: 40 },
    );
  });

  it('writes nothing appended after a snapshot before the snapshot itself', async () => {
    const path = join(dir, 'hold.log');
    const w = await BackgroundLogWriter.create(path, meta);
    w.appendAt({ type: 'timer' }, 0, 10);
    const snap = later<Uint8Array>();
    w.appendLater(1, 20, snap.promise);
    w.appendAt({ type: 'timer' }, 2, 30);
    w.flush();
    await settle();
    // Only the block before the snapshot is in the file: a reader sees a log that ends at seq 0.
    expect((await scanLogFile(path)).entries.map((e) => e.seq)).toEqual([0]);
    snap.resolve(Uint8Array.of(1, 2, 3));
    await settle();
    expect((await scanLogFile(path)).entries.map((e) => e.seq)).toEqual([0, 1, 2]);
    await w.close();
    expect(w.blocksWritten).toBe(3);
  });

  it('a snapshot that cannot be packed ends the log with a LogWriteError, and close rejects with it', async () => {
    const path = join(dir, 'fail.log');
    const w = await BackgroundLogWriter.create(path, meta);
    w.appendAt({ type: 'timer' }, 0, 10);
    w.appendLater(1, 20, Promise.reject(new Error('deflate broke')));
    w.appendAt({ type: 'timer' }, 2, 30);
    await settle();
    expect(w.error?.message).toMatch(/fail\.log: cannot write the log: deflate broke/);
    await expect(w.close()).rejects.toMatchObject({ name: 'LogWriteError' });
    // Nothing after the lost snapshot was written: the file ends before it.
    expect((await scanLogFile(path)).entries.map((e) => e.seq)).toEqual([]);
  });
});

describe('SnapshotChain.pack (deflate in the pool)', () => {
  it('gives the bytes packSync gives, and the same chain decisions', async () => {
    const a = boot('timer', 7).m;
    const b = boot('timer', 7).m;
    // A full snapshot after each delta (any packed bytes of a delta reach the limit), so the sizes steer the policy.
    const policy = { ...chainPolicy(1), minChainBytes: 1, deltaBytesPerFull: 0 };
    const sync = new SnapshotChain(a, policy);
    const pooled = new SnapshotChain(b, policy);
    for (let i = 0; i < 8; i++) {
      await runMachine(a, { maxInstructions: 200_000 });
      await runMachine(b, { maxInstructions: 200_000 });
      const x = sync.take();
      const y = await pooled.pack(pooled.takeUnpacked());
      expect(Buffer.from(y).equals(Buffer.from(x))).toBe(true);
    }
    expect(pooled.stats).toEqual(sync.stats);
    expect(sync.stats.full).toBeGreaterThan(1);
  });
});
