// A worker backup's replay slices (issue 14, "Worker replay cost, fifth pass"): a slice's
// budget is soft (it may end at a translated block's boundary, short of it) while the env's
// inputs and `cpu.runUntil` stay exact, and the slices of one chain are one batch (one
// `cpu.batchEnded`) with the thread's pollers run between them.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { Machine } from '../runtime/machine.js';
import { DeterministicEnv } from '../runtime/env/deterministic.js';
import { ReplayEnv } from '../runtime/env/replay.js';
import { createCpuActor, pollBetweenBatches, runOnCpuActor } from '../runtime/cpu-actor.js';
import { BatchSlicer } from '../runtime/ft/batch-slice.js';
import { SeqLog } from '../runtime/ft/seq-log.js';
import { runMachine } from '../runtime/runner.js';
import { guestPath } from '../runtime/guests.js';
import type { LogEntry } from '../runtime/log/entry.js';
import { Exit, exitName } from '../runtime/types.js';
import { LoggedDeterministicEnv } from './helpers/logged-env.js';

const IRQSTRESS = readFileSync(guestPath('irqstress'));
/** A timer every ~50 000 instructions here: most slices end on their own budget. */
const BENCH_TIMER = readFileSync(guestPath('bench-timer'));
const TIMER_OPTS = { seed: 7, instructionsPerTick: 4 };

/** A log of bench-timer under the deterministic env (timer ticks, clock reads), to `limit` instructions. */
async function record(limit: number): Promise<{ entries: LogEntry[]; icount: number; digest: string; console: number[] }> {
  const entries: LogEntry[] = [];
  const log = new SeqLog((e) => entries.push(e));
  const out: number[] = [];
  const m = new Machine({ env: new LoggedDeterministicEnv((p, ic) => log.append(p, ic), TIMER_OPTS), onOutput: (o) => { if (o.kind === 'console') out.push(o.byte); } });
  m.loadElf(BENCH_TIMER);
  await runMachine(m, { batch: 50_000, maxInstructions: limit });
  // The end lets a replay run to this icount (the log vouches for it).
  log.append({ type: 'end', code: 0 }, m.icount);
  return { entries, icount: m.icount, digest: m.digest(), console: out };
}

function replayMachine(entries: LogEntry[]): { m: Machine; env: ReplayEnv; console: number[] } {
  const env = new ReplayEnv({ digest: (mm) => mm.digest() });
  const out: number[] = [];
  const m = new Machine({ env, onOutput: (o) => { if (o.kind === 'console') out.push(o.byte); } });
  m.loadElf(BENCH_TIMER);
  for (const e of entries) env.push(e);
  return { m, env, console: out };
}

describe('soft slice budgets (Machine.step softMax, Hart.run soft)', () => {
  it('end short of the budget at block boundaries, never past an input: the run is the same', async () => {
    const whole = new Machine({ env: new DeterministicEnv(TIMER_OPTS), memoryMiB: 16 });
    whole.loadElf(IRQSTRESS);
    const cut = new Machine({ env: new DeterministicEnv(TIMER_OPTS), memoryMiB: 16 });
    cut.loadElf(IRQSTRESS);
    const writes = (m: Machine): string[] => {
      const w: string[] = [];
      const write = m.clint.write.bind(m.clint);
      m.clint.write = (off, size, v) => {
        w.push(`${m.icount}:${off.toString(16)}=${v.toString(16)}`);
        write(off, size, v);
      };
      return w;
    };
    const wWhole = writes(whole), wCut = writes(cut);
    const STOP = 1_500_000;
    const drive = async (m: Machine, budget: () => number, soft: boolean): Promise<number> => {
      let short = 0;
      while (m.icount < STOP) {
        const b = Math.min(budget(), STOP - m.icount);
        // Inputs due now first (as step() does), so that nextAt names the next one.
        m.env.deliverDue(m);
        const before = m.icount;
        const room = m.env.nextAt(before) - before;
        const exit = m.step(b, soft);
        // Short of a budget that was the limit, on a plain budget exit: a soft end.
        if (exit === Exit.Budget && m.icount - before < Math.min(b, room) && m.icount > before) short++;
        if (exit === Exit.Wfi) await m.env.idle(m);
        else if (exit !== Exit.Budget && exit !== Exit.Request) throw new Error(`stopped on ${exitName(exit)} at ${m.icount}`);
        // Never past the env's next input (the deterministic env's timer tick).
        expect(m.icount - before).toBeLessThanOrEqual(Math.min(b, room));
      }
      return short;
    };
    await drive(whole, () => Number.MAX_SAFE_INTEGER, false);
    let s = 0x1234567;
    const shortEnds = await drive(cut, () => {
      s ^= s << 13;
      s ^= s >>> 17;
      s ^= s << 5;
      return 100 + ((s >>> 0) % 3000);
    }, true);
    expect(shortEnds).toBeGreaterThan(50);
    expect(wWhole.length).toBeGreaterThan(100);
    expect(wCut).toEqual(wWhole);
    expect(cut.icount).toBe(whole.icount);
    expect(cut.digest()).toBe(whole.digest());
  });

  it('a hard budget (no soft flag) still retires exactly', () => {
    const m = new Machine({ env: new DeterministicEnv(TIMER_OPTS), memoryMiB: 16 });
    m.loadElf(IRQSTRESS);
    for (let i = 0; i < 300; i++) {
      m.env.deliverDue(m);
      const before = m.icount;
      const room = m.env.nextAt(before) - before;
      const exit = m.step(777);
      if (exit === Exit.Budget) expect(m.icount - before).toBe(Math.min(777, room));
    }
  });
});

describe('several slices in one batch (CpuActorOptions.moreSlices)', () => {
  it('replays a log exactly with one chart event per chain of slices, the pollers run between slices', async () => {
    const rec = await record(3_000_000);
    const { m, env, console: out } = replayMachine(rec.entries);
    let slices = 0, softEnds = 0, polls = 0, chartBatches = 0;
    const step = m.step.bind(m);
    m.step = (max: number, soft?: boolean) => {
      slices++;
      env.deliverDue(m);
      const before = m.icount;
      const room = env.nextAt(before) - before;
      const exit = step(max, soft);
      if (exit === Exit.Budget && m.icount > before && m.icount - before < Math.min(max, room)) softEnds++;
      return exit;
    };
    const unpoll = pollBetweenBatches(() => polls++);
    const slicer = new BatchSlicer(m, 1_000_000, 0.005, () => true);
    let perBatch = 0;
    try {
      const r = await runOnCpuActor(m, {
        mode: 'replay',
        batch: () => 2_000,
        softBatch: true,
        // Eight slices a batch: no chart event, no microtask hop in between.
        moreSlices: () => ++perBatch < 8,
        onBatch: () => {
          chartBatches++;
          perBatch = 0;
          slicer.ended();
        },
        until: rec.icount,
      }).done;
      expect(r.reason).toBe('until');
    } finally {
      unpoll();
    }
    // Exact: the replay stands where the recording ended, in the same state, every entry used.
    expect(m.icount).toBe(rec.icount);
    expect(m.digest()).toBe(rec.digest);
    expect(out).toEqual(rec.console);
    // What is left sits at this icount (the end record): applied now, nothing remains.
    env.deliverDue(m);
    expect(env.ended?.icount).toBe(rec.icount);
    expect(env.pending).toBe(0);
    // Most slices shared a batch with others, and ended at a block boundary.
    expect(slices).toBeGreaterThan(3 * chartBatches);
    expect(softEnds).toBeGreaterThan(slices / 10);
    // The pollers ran after every slice that another followed, and after every batch.
    expect(polls).toBeGreaterThanOrEqual(slices - 1);
  });

  it('a poller that pauses the CPU ends the batch at that slice', async () => {
    const rec = await record(1_000_000);
    const { m } = replayMachine(rec.entries);
    let slices = 0, batches = 0;
    const step = m.step.bind(m);
    m.step = (max: number, soft?: boolean) => {
      slices++;
      return step(max, soft);
    };
    const cpu = createCpuActor(m, {
      batch: 1_000,
      softBatch: true,
      moreSlices: () => true,
      schedule: (run) => queueMicrotask(run),
      onBatch: () => batches++,
    });
    let pausedAt = -1;
    const unpoll = pollBetweenBatches(() => {
      if (slices === 5 && pausedAt < 0) {
        pausedAt = slices;
        cpu.send({ type: 'cpu.pause' });
      }
    });
    try {
      cpu.start();
      cpu.send({ type: 'cpu.start', mode: 'replay' });
      await new Promise((r) => setTimeout(r, 50));
      expect(pausedAt).toBe(5);
      // The batch in flight ended right after the slice whose poll paused it, and no other ran.
      expect(slices).toBe(5);
      expect(batches).toBe(1);
      expect(cpu.getSnapshot().value).toBe('paused');
    } finally {
      unpoll();
      cpu.stop();
    }
  });

  it('stops exactly at a cpu.runUntil target however the soft slices fall', async () => {
    const rec = await record(1_000_000);
    const { m } = replayMachine(rec.entries);
    const target = 654_321;
    const r = await runOnCpuActor(m, { mode: 'replay', batch: 3_000, softBatch: true, moreSlices: () => true, until: target }).done;
    expect(r.reason).toBe('until');
    expect(m.icount).toBe(target);
  });
});

describe('ReplayEnv.nextAt behind value entries', () => {
  it('stops at the first entry that is not a value, before and after the reads consume theirs', () => {
    const env = new ReplayEnv();
    let seq = 0;
    for (let k = 0; k < 50; k++) env.push({ seq: seq++, icount: 100 + k, type: 'value', kind: 'mtime', value: k });
    env.push({ seq: seq++, icount: 400, type: 'timer' });
    env.push({ seq: seq++, icount: 500, type: 'progress', released: 0 });
    env.push({ seq: seq++, icount: 600, type: 'timer' });
    expect(env.nextAt(0)).toBe(400);
    // The reads consume their entries; the stop stays where it was.
    for (let k = 0; k < 30; k++) expect(env.value('mtime', 100 + k)).toBe(k);
    expect(env.nextAt(130)).toBe(400);
    for (let k = 30; k < 50; k++) env.value('mtime', 100 + k);
    expect(env.nextAt(150)).toBe(400);
    // A machine at the timer: the stop is now (deliverDue applies it), then the next timer.
    expect(env.nextAt(400)).toBe(400);
    const m = new Machine({ env, memoryMiB: 1 });
    m.hart.icount = 400;
    env.deliverDue(m);
    expect(env.nextAt(400)).toBe(600);
    // Nothing but values after the horizon's last stop: the horizon.
    m.hart.icount = 600;
    env.deliverDue(m);
    env.push({ seq: seq++, icount: 700, type: 'value', kind: 'rtc', value: 1 });
    expect(env.nextAt(600)).toBe(701);
  });
});

describe('BatchSlicer with soft slices', () => {
  it('learns the rate from probes that end a block short of their budget', () => {
    const m = new Machine({ env: new DeterministicEnv(TIMER_OPTS), memoryMiB: 16 });
    m.loadElf(BENCH_TIMER);
    // 0.2 ms slices: tens of thousands of instructions at any speed this host runs.
    const slicer = new BatchSlicer(m, 50_000_000, 0.2, () => true);
    const budgets: number[] = [];
    let short = 0;
    for (let i = 0; i < 100; i++) {
      const b = slicer.budget();
      budgets.push(b);
      const before = m.icount;
      m.step(b, true);
      if (m.icount - before < b) short++;
      slicer.ended();
    }
    expect(budgets[0]).toBe(4096);
    // The probes ended short (soft), and still the slices grew past the probe.
    expect(short).toBeGreaterThan(10);
    expect(Math.min(...budgets.slice(50))).toBeGreaterThan(4096);
  });
});
