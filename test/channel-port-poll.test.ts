// The port channel polled between batches (pollBetweenBatches, port.ts): while a CPU runs
// batches chained by microtasks, with no event-loop turn, an owned MessagePort's entries and
// acks still cross at batch ends. This is what lets a worker backup chain its replay slices.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { MessageChannel } from 'node:worker_threads';
import { describe, expect, it } from 'vitest';
import { Machine } from '../runtime/machine.js';
import { LiveEnv } from '../runtime/env/live.js';
import { runOnCpuActor } from '../runtime/cpu-actor.js';
import { createPortBackup, createPortPrimary } from '../runtime/channel/port.js';
import type { LogEntry } from '../runtime/log/entry.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const image = readFileSync(join(root, 'guests/bench/bench.elf'));
const marker: LogEntry = { seq: 0, icount: 1000, type: 'output', kind: 'console', count: 1 };
const input: LogEntry = { seq: 0, icount: 1000, type: 'timer' };

/**
 * Both ends in this thread; a guest computes in batches of 2 000 instructions chained by
 * microtasks only. `first` is sent after the first batch; each later batch asks `done`.
 * Resolves with how many batches ran and whether an event-loop turn came first.
 */
async function chainedRun(ownsPort: boolean, first: LogEntry, done: (p: ReturnType<typeof createPortPrimary>, got: LogEntry[]) => boolean, maxBatches: number, primaryHoldMs = 60_000) {
  const { port1, port2 } = new MessageChannel();
  const p = createPortPrimary(port1, { ownsPort, holdMs: primaryHoldMs });
  const b = createPortBackup(port2, { ownsPort, holdMs: 60_000 });
  const got: LogEntry[] = [];
  b.backup.entries$.subscribe((e) => {
    got.push(e);
    b.backup.ack(e.seq);
  });
  const m = new Machine({ env: new LiveEnv() });
  m.loadElf(image);
  let turned = false;
  let turnedAt = -1;
  let batches = 0;
  let doneAt = -1;
  const stop = new AbortController();
  setImmediate(() => {
    turned = true;
    turnedAt = batches;
  });
  await runOnCpuActor(m, {
    mode: 'live',
    batch: 2000,
    schedule: (run) => queueMicrotask(run),
    signal: stop.signal,
    onBatch: () => {
      batches++;
      if (batches === 1) p.primary.send(first);
      else if (doneAt < 0 && done(p, got)) doneAt = batches;
      if (doneAt >= 0 || batches >= maxBatches || turned) stop.abort();
    },
  }).done;
  p.dispose();
  b.dispose();
  port1.close();
  port2.close();
  return { batches, doneAt, turned, turnedAt, got, ackedSeq: p.primary.ackedSeq };
}

describe('port channel polled between chained batches', () => {
  it('delivers an output marker to the backup end and its ack to the primary end with no event-loop turn', async () => {
    const r = await chainedRun(true, marker, (p) => p.primary.ackedSeq === 0, 10_000);
    expect(r.turned).toBe(false);
    expect(r.got).toEqual([marker]);
    // Out after batch 1 (a microtask), polled in by the backup at a batch end, its ack
    // flushed in a microtask and polled in by the primary at the next: a few batches.
    expect(r.doneAt).toBeGreaterThan(1);
    expect(r.doneAt).toBeLessThanOrEqual(6);
  });

  it('an entry nobody waits for is delivered at a batch end too, its ack held (holdMs) as before', async () => {
    // The primary end sends it in its tick (hold 0); the backup end holds its ack (60 s).
    const r = await chainedRun(true, { ...input }, (_p, got) => got.length === 1, 10_000, 0);
    expect(r.turned).toBe(false);
    expect(r.got).toEqual([input]);
    expect(r.doneAt).toBeLessThanOrEqual(4);
    expect(r.ackedSeq).toBe(-1);
  });

  it('a port the channel does not own is not polled: without a turn nothing crosses', async () => {
    const r = await chainedRun(false, marker, (p) => p.primary.ackedSeq === 0, 300);
    // Either 300 batches ran with nothing delivered, or a turn came first (then the listener
    // delivered it): in no case did the marker cross inside the chain.
    expect(r.doneAt).toBe(-1);
    if (!r.turned) expect(r.got).toEqual([]);
  });
});
