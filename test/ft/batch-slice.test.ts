import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { BatchChain, BatchSlicer } from '../../runtime/ft/batch-slice.js';
import { LiveEnv } from '../../runtime/env/live.js';
import { Machine } from '../../runtime/machine.js';
import { guestPath } from '../../runtime/guests.js';
import { createPair } from '../../runtime/pair.js';
import type { ReleasedOutput } from '../../runtime/ft/output-gate.js';

const MAX = 50_000_000;

function benchMachine(): Machine {
  const m = new Machine({ memoryMiB: 16, env: new LiveEnv() });
  m.loadElf(readFileSync(guestPath('bench')));
  return m;
}

describe('BatchSlicer', () => {
  it('gives whole batches unless the node waits for its socket', () => {
    const m = benchMachine();
    let short = false;
    const slicer = new BatchSlicer(m, MAX, 0.05, () => short);
    expect(slicer.budget()).toBe(MAX);
    expect(slicer.sliced).toBe(false);
    short = true;
    // Nothing measured yet: a small probe, not a guess.
    expect(slicer.budget()).toBe(4096);
    expect(slicer.sliced).toBe(true);
  });

  it('sizes sliced batches from the rate the guest really ran at', () => {
    const m = benchMachine();
    // A 1 ms slice: well above the 4096-instruction floor at any speed this interpreter runs.
    const slicer = new BatchSlicer(m, MAX, 1, () => true);
    const budgets: number[] = [];
    const wallMs: number[] = [];
    for (let i = 0; i < 200; i++) {
      const budget = slicer.budget();
      budgets.push(budget);
      const t = performance.now();
      const before = m.icount;
      m.step(budget);
      wallMs.push(performance.now() - t);
      // The machine never runs past its budget (the env's next event may cut it shorter).
      expect(m.icount - before).toBeLessThanOrEqual(budget);
      expect(m.icount).toBeGreaterThan(before);
      slicer.ended();
    }
    const late = budgets.slice(100);
    // Learnt: far below the cap, above the floor, and proportional to the slice.
    for (const b of late) {
      expect(b).toBeGreaterThan(4096);
      expect(b).toBeLessThan(MAX / 10);
    }
    // A 1 ms slice lasts about that at the median (a loaded host stretches single batches,
    // not most of them); a whole batch of MAX would take a second or more.
    const sorted = wallMs.slice(100).sort((a, b) => a - b);
    expect(sorted[Math.floor(sorted.length / 2)]!).toBeLessThan(5);
  });
});

describe('BatchChain', () => {
  const turn = (): Promise<void> => new Promise((r) => setImmediate(r));

  /**
   * A CPU actor's runBatch as an FT node sees it: each batch schedules the next one (the
   * chart's step), then the node queues its log's flush (onBatch); meanwhile a datagram or an
   * ack arrives, whose callback needs an event-loop turn.
   */
  function batches(chain: BatchChain, n: number, log: string[]): () => void {
    let left = n;
    const runBatch = (): void => {
      log.push('batch');
      if (--left === 0) return;
      setImmediate(() => log.push('socket'));
      chain.schedule(runBatch);
      queueMicrotask(() => log.push('flush'));
    };
    return runBatch;
  }

  it('runs the batches scheduled soon after a turn back to back, each after its flush', async () => {
    const log: string[] = [];
    const chain = new BatchChain(1000);
    // No turn seen yet: the first batch waits for one; the next ones follow within the window.
    chain.schedule(batches(chain, 3, log));
    for (let i = 0; i < 4; i++) await turn();
    expect(log).toEqual(['batch', 'flush', 'batch', 'flush', 'batch', 'socket', 'socket']);
  });

  it('gives every batch a turn once the window since the last turn is spent', async () => {
    const log: string[] = [];
    const chain = new BatchChain(0);
    chain.schedule(batches(chain, 3, log));
    for (let i = 0; i < 6; i++) await turn();
    expect(log).toEqual(['batch', 'flush', 'socket', 'batch', 'flush', 'socket', 'batch']);
  });
});

describe('sliced FT batches in a worker pair', () => {
  it('releases every output in order, a burst sharing one marker, each only once acked', async () => {
    const pair = createPair({ image: readFileSync(guestPath('seq-short')), backupIn: 'worker', timing: { suspectMs: 400, confirmMs: 100 } });
    const outputs: ReleasedOutput[] = [];
    pair.outputs$.subscribe((o) => outputs.push(o));
    await pair.ready();
    const result = await pair.start();
    expect(result.code).toBe(0);
    const s = pair.stats();
    if (result.failovers === 0) {
      const p = s.primary!;
      expect(p.released).toBe(p.outputs);
      // Fewer entries than outputs (main logged 1854 for seq-short's 1013): a printed line no
      // longer ends a batch, and sends a marker, per byte.
      expect(s.logEntries).toBeLessThan(p.outputs);
      expect(p.outputDelay.samples).toBeGreaterThan(0);
    }
    const indices = outputs.map((o) => o.index);
    const unique = [...new Set(indices)];
    expect(unique).toEqual(unique.map((_, i) => i));
    const golden = readFileSync(new URL('../../guests/seq-short/expected.txt', import.meta.url), 'utf8');
    const seen = new Set<number>();
    let text = '';
    for (const o of outputs) {
      if (seen.has(o.index) || o.output.kind !== 'console') continue;
      seen.add(o.index);
      text += String.fromCharCode(o.output.byte);
    }
    expect(text).toBe(golden);
  }, 60_000);
});
