import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { createActor } from 'xstate';
import { createTestModel } from 'xstate/graph';
import { Plic } from '../../devices/plic.js';
import { plicMachine, type PlicEvent } from '../../machines/plic.machine.js';
import { count, eventsCovered, eventsHandled, everyTransition, recording, runPaths, type Rule } from './harness.js';

const EVENT_TYPES: Record<PlicEvent['type'], true> = {
  'plic.raised': true, 'plic.lowered': true, 'plic.claimed': true, 'plic.completed': true,
};
const ACTIONS = ['updateMeip'];

const model = createTestModel(plicMachine, everyTransition);

const rules: Rule[] = [
  // MEIP is recomputed whenever this source's pending bit changes, and only then.
  ({ prev, next, fired }) => {
    const changed = prev.matches('pending') !== next.matches('pending');
    expect(count(fired, 'updateMeip')).toBe(changed ? 1 : 0);
  },
  // The gateway forwards one request at a time: nothing re-pends a claimed source
  // except its completion (PLIC spec §9).
  ({ prev, next, event }) => {
    if (prev.matches('claimed') && next.matches('pending')) expect(event.type).toBe('plic.completed');
    expect(next.context.lineHigh).toBe(
      event.type === 'plic.raised' ? true : event.type === 'plic.lowered' ? false : prev.context.lineHigh,
    );
  },
];

const SOURCE = 10; // the UART's source on QEMU virt
const CLAIM = 0x20_0004;

/** The register model with one enabled source, driven by the chart's events. */
function devicePlic() {
  const plic = new Plic({ set: () => {} });
  plic.write(SOURCE * 4, 4, 1); // priority 1 > threshold 0
  plic.write(0x2000, 4, 1 << SOURCE); // enable
  const line = plic.line(SOURCE);
  return {
    send(e: PlicEvent) {
      if (e.type === 'plic.raised') line.set(true);
      if (e.type === 'plic.lowered') line.set(false);
      if (e.type === 'plic.claimed') plic.read(CLAIM, 4);
      if (e.type === 'plic.completed') plic.write(CLAIM, 4, SOURCE);
    },
    state(): 'idle' | 'pending' | 'claimed' {
      const s = plic.save();
      const bit = (words: number[]) => (words[SOURCE >>> 5] >>> (SOURCE & 31)) & 1;
      return bit(s.claimed) ? 'claimed' : bit(s.pending) ? 'pending' : 'idle';
    },
  };
}

describe('plic chart', () => {
  const paths = model.getShortestPaths();

  it('drives every shortest path against the real actor', () => {
    const { steps } = runPaths({ machine: plicMachine, paths, actions: ACTIONS, eventTypes: Object.keys(EVENT_TYPES), rules });
    expect(steps).toBeGreaterThanOrEqual(12);
  });

  it('exercises every declared event, and handles no undeclared one', () => {
    expect([...eventsCovered(paths)].sort()).toEqual(Object.keys(EVENT_TYPES).sort());
    expect([...eventsHandled(plicMachine)].sort()).toEqual(Object.keys(EVENT_TYPES).sort());
  });

  it('agrees with the PLIC register model on every path', () => {
    for (const path of paths) {
      const dev = devicePlic();
      const chart = createActor(recording(plicMachine, ACTIONS).machine).start();
      for (const step of path.steps) {
        // The first step of a path is xstate.init, which is not a PLIC event.
        if ((step.event.type as string) === 'xstate.init') continue;
        dev.send(step.event);
        chart.send(step.event);
        expect(chart.getSnapshot().value).toBe(dev.state());
      }
    }
  });

  it('agrees with the PLIC register model on random event sequences', () => {
    const event = fc.constantFrom<PlicEvent>(
      { type: 'plic.raised' }, { type: 'plic.lowered' }, { type: 'plic.claimed' }, { type: 'plic.completed' },
    );
    fc.assert(fc.property(fc.array(event, { maxLength: 40 }), (events) => {
      const dev = devicePlic();
      const chart = createActor(recording(plicMachine, ACTIONS).machine).start();
      for (const e of events) {
        dev.send(e);
        chart.send(e);
        expect(chart.getSnapshot().value).toBe(dev.state());
      }
    }));
  });
});
