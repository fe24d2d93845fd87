// The device charts run in the Machine (issue 12): they move as the guest drives the devices,
// report to an inspector, cost no event per instruction, and survive a snapshot.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import type { InspectionEvent } from 'xstate';
import { Machine } from '../runtime/machine.js';
import { DeterministicEnv } from '../runtime/env/deterministic.js';
import { runMachine } from '../runtime/runner.js';
import { boot, text } from './helpers/boot.js';

/** Device chart states, as the charts hold them. */
const chartStates = (m: Machine) => ({
  timer: m.clint.timerActor.getSnapshot().value,
  uart: m.uart.chartActor.getSnapshot().value,
  uartIer: m.uart.chartActor.getSnapshot().context.ier,
  plic10: m.plic.gateway(10)?.getSnapshot().value,
});

describe('device charts in a running machine', () => {
  it('irqstress: every device chart reports to the inspector, with far fewer events than instructions', async () => {
    const { m, outputs } = boot('irqstress');
    const actors = new Set<string>();
    const events = new Map<string, number>();
    m.inspectCharts((e: InspectionEvent) => {
      if (e.type === '@xstate.actor') actors.add((e.actorRef as unknown as { id: string }).id);
      if (e.type === '@xstate.event' && !e.event.type.startsWith('xstate.')) {
        events.set(e.event.type, (events.get(e.event.type) ?? 0) + 1);
      }
    });
    const r = await runMachine(m, { maxInstructions: 200_000_000 });
    expect(r.reason).toBe('halt');
    expect(text(outputs)).toBe(readFileSync(new URL('../guests/irqstress/expected.txt', import.meta.url), 'utf8'));
    expect([...actors].sort()).toEqual(expect.arrayContaining(['timer', 'uart', 'plic-10']));
    // The timer fired and was re-armed: the chart saw both, and the guest ran on.
    expect(events.get('timer.fired') ?? 0).toBeGreaterThan(0);
    const total = [...events.values()].reduce((a, b) => a + b, 0);
    expect(total).toBeLessThan(r.icount / 100);
  }, 120_000);

  it('irqstress: the memoized charts and inspected actors end in the same machine', async () => {
    const plain = boot('irqstress');
    const inspected = boot('irqstress');
    inspected.m.inspectCharts(() => {});
    const a = await runMachine(plain.m, { maxInstructions: 200_000_000 });
    const b = await runMachine(inspected.m, { maxInstructions: 200_000_000 });
    expect(b.icount).toBe(a.icount);
    expect(inspected.m.digest()).toBe(plain.m.digest());
    expect(chartStates(inspected.m)).toEqual(chartStates(plain.m));
    expect(inspected.outputs).toEqual(plain.outputs);
  }, 120_000);

  it('irqstress: a snapshot restores the chart states, and the run goes on the same', async () => {
    const whole = boot('irqstress');
    const ref = await runMachine(whole.m, { maxInstructions: 200_000_000 });
    for (const fraction of [0.3, 0.7]) {
      const first = boot('irqstress');
      await runMachine(first.m, { untilIcount: Math.floor(ref.icount * fraction) });
      const env = new DeterministicEnv({ seed: 7 });
      env.load(first.env.save());
      const second = Machine.restore(first.m.snapshot(), { env, onOutput: (o) => first.outputs.push(o) });
      expect(chartStates(second)).toEqual(chartStates(first.m));
      expect(second.digest()).toBe(first.m.digest());
      const rest = await runMachine(second, { maxInstructions: 200_000_000 });
      expect(rest.icount).toBe(ref.icount);
      expect(text(first.outputs)).toBe(text(whole.outputs));
    }
  }, 120_000);
});
