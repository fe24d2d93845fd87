import { describe, expect, it } from 'vitest';
import { Machine } from '../runtime/machine.js';
import { DeterministicEnv } from '../runtime/env/deterministic.js';
import { runMachine } from '../runtime/runner.js';
import { runOnCpuActor } from '../runtime/cpu-actor.js';
import type { InspectionEvent } from 'xstate';
import type { Env } from '../runtime/env/env.js';
import { Exit, type ValueKind } from '../runtime/types.js';

const J_SELF = 0x0000_006f;

function spinner(env: Env) {
  const m = new Machine({ env, memoryMiB: 1 });
  m.bus.writeRam(0x8000_0000, new Uint8Array(Int32Array.of(J_SELF).buffer));
  m.hart.reset(0x8000_0000);
  return m;
}

/** An env whose horizon is set by the test, as a backup's is by the log it has received. */
class HorizonEnv implements Env {
  readonly mode = 'replay' as const;
  horizon = 0;
  idles = 0;
  private wake: (() => void) | undefined;
  value(_k: ValueKind, _i: number): number { return 0; }
  nextAt(_icount: number): number { return this.horizon; }
  deliverDue(): void {}
  idle(): Promise<void> {
    this.idles++;
    return new Promise((r) => { this.wake = r; });
  }
  extend(to: number): void {
    this.horizon = to;
    this.wake?.();
  }
}

/** Calls `onBatchStart` as each batch begins (step() delivers due inputs first). */
class BatchStartEnv extends DeterministicEnv {
  constructor(private readonly onBatchStart: () => void) {
    super();
  }
  override deliverDue(m: Machine): void {
    this.onBatchStart();
    super.deliverDue(m);
  }
}

describe('runMachine', () => {
  it('stops exactly at untilIcount and at maxInstructions, batch by batch', async () => {
    const m = spinner(new DeterministicEnv());
    const exits: Exit[] = [];
    const until = await runMachine(m, { untilIcount: 2_500_000, batch: 1_000_000, onBatch: (e) => { exits.push(e); } });
    expect(until).toMatchObject({ reason: 'until', icount: 2_500_000 });
    expect(exits).toEqual([Exit.Budget, Exit.Budget, Exit.Budget]);
    const limit = await runMachine(m, { maxInstructions: 1234 });
    expect(limit).toMatchObject({ reason: 'limit', icount: 2_500_000 + 1234 });
  });

  it('lets timers and I/O run while the guest computes, and stops on abort', async () => {
    const m = spinner(new DeterministicEnv());
    const abort = new AbortController();
    let ticks = 0;
    const timer = setInterval(() => { if (++ticks === 5) abort.abort(); }, 2);
    const r = await runMachine(m, { signal: abort.signal, batch: 100_000 });
    clearInterval(timer);
    expect(r.reason).toBe('aborted');
    expect(ticks).toBe(5);
    expect(r.icount).toBeGreaterThan(0);
  });

  it('sleeps at the env horizon instead of spinning, and continues when it moves', async () => {
    const env = new HorizonEnv();
    const m = spinner(env);
    const run = runMachine(m, { untilIcount: 3000 });
    await new Promise((r) => setTimeout(r, 20));
    expect(m.icount).toBe(0);
    expect(env.idles).toBe(1);
    env.extend(1000);
    await new Promise((r) => setTimeout(r, 20));
    expect(m.icount).toBe(1000);
    env.extend(5000);
    expect(await run).toMatchObject({ reason: 'until', icount: 3000 });
    expect(env.idles).toBe(2);
  });

  it('reports power-off with the guest\'s code', async () => {
    const m = new Machine({ env: new DeterministicEnv(), memoryMiB: 1 });
    // lui t0, 0x100; lui t1, 0x2a3; addi t1, t1, 0x333; sw t1, 0(t0)  →  exit code 42
    const prog = Int32Array.of(0x001002b7, 0x002a3337, 0x33330313, 0x0062a023, J_SELF);
    m.bus.writeRam(0x8000_0000, new Uint8Array(prog.buffer));
    m.hart.reset(0x8000_0000);
    expect(await runMachine(m, { maxInstructions: 1000 })).toMatchObject({ reason: 'halt', code: 42, icount: 4 });
  });

  it('runs under the CPU chart, which sees one event per batch and nothing per instruction', async () => {
    const m = spinner(new DeterministicEnv());
    const events: string[] = [];
    let batches = 0;
    const inspect = (e: InspectionEvent) => {
      if (e.type === '@xstate.event' && (e.actorRef as { id?: string }).id === 'cpu') events.push(e.event.type);
    };
    const { done } = runOnCpuActor(m, { mode: 'live', id: 'cpu', inspect, batch: 10_000, until: 1_000_000, onBatch: () => batches++ });
    expect(await done).toMatchObject({ reason: 'until', icount: 1_000_000 });
    expect(batches).toBe(100);
    // xstate.init, cpu.start, cpu.runUntil, then exactly one cpu.batchEnded per batch.
    expect(events.filter((t) => t === 'cpu.batchEnded')).toHaveLength(batches);
    expect(events).toHaveLength(batches + 3);
  });

  it('lets what a batch queued (a channel flush: a microtask) run before the next batch, one chart event each', async () => {
    const order: string[] = [];
    const m = spinner(new BatchStartEnv(() => {
      order.push('batch');
      queueMicrotask(() => order.push('flush'));
    }));
    const events: string[] = [];
    const inspect = (e: InspectionEvent) => {
      if (e.type === '@xstate.event' && (e.actorRef as { id?: string }).id === 'cpu') events.push(e.event.type);
    };
    let batches = 0;
    // A long yield window: the batches follow each other without an event-loop turn.
    const { actor, done } = runOnCpuActor(m, {
      mode: 'live', id: 'cpu', inspect, batch: 1000, yieldMs: 10_000, until: 50_000,
      onBatch: () => {
        // The chart's pause, sent between two batches, stops the run before the next one.
        if (++batches === 20) actor.send({ type: 'cpu.pause' });
      },
    });
    await new Promise((r) => setTimeout(r, 20));
    expect(batches).toBe(20);
    expect(m.icount).toBe(20_000);
    expect(order).toEqual(Array.from({ length: 20 }, () => ['batch', 'flush']).flat());
    // Paused, the run's target went with `running`: a new runUntil carries it on.
    actor.send({ type: 'cpu.runUntil', icount: 50_000 });
    expect(await done).toMatchObject({ reason: 'until', icount: 50_000 });
    expect(batches).toBe(50);
    expect(events.filter((t) => t === 'cpu.batchEnded')).toHaveLength(50);
  });

  it('with yieldMs 0 gives the event loop a turn before every batch (an ack due arrives first)', async () => {
    const order: string[] = [];
    const m = spinner(new BatchStartEnv(() => {
      order.push('batch');
      setImmediate(() => order.push('turn'));
    }));
    const { done } = runOnCpuActor(m, { mode: 'live', batch: 1000, until: 5000 });
    await done;
    await new Promise((r) => setImmediate(r));
    expect(order).toEqual(Array.from({ length: 5 }, () => ['batch', 'turn']).flat());
  });
});
