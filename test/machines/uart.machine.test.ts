import { describe, expect, it } from 'vitest';
import { createActor } from 'xstate';
import { createTestModel } from 'xstate/graph';
import { uartMachine, type UartEvent } from '../../machines/uart.machine.js';
import { count, eventsCovered, eventsHandled, everyTransition, recording, runPaths, type Rule } from './harness.js';

const EVENT_TYPES: Record<UartEvent['type'], true> = {
  'uart.received': true, 'uart.read': true, 'uart.wrote': true, 'uart.released': true,
};
const ACTIONS = ['emitOutput'];

const model = createTestModel(uartMachine, {
  ...everyTransition,
  events: [
    { type: 'uart.read', remaining: 0 }, { type: 'uart.read', remaining: 1 },
    { type: 'uart.released', remaining: 0 }, { type: 'uart.released', remaining: 1 },
  ],
});

const rules: Rule[] = [
  // Output rule (DESIGN §3): bytes reach the console only when released, and only if
  // something was written and held.
  ({ prev, event, fired }) => {
    const releases = event.type === 'uart.released' && prev.matches({ tx: 'holding' });
    expect(count(fired, 'emitOutput')).toBe(releases ? 1 : 0);
  },
  ({ prev, next, event }) => {
    const e = event as UartEvent;
    if (e.type === 'uart.wrote') expect(next.matches({ tx: 'holding' })).toBe(true);
    if (e.type === 'uart.released' && prev.matches({ tx: 'holding' })) {
      expect(next.matches({ tx: e.remaining === 0 ? 'idle' : 'holding' })).toBe(true);
    }
    if (e.type === 'uart.received') expect(next.matches({ rx: 'dataReady' })).toBe(true);
    if (e.type === 'uart.read' && prev.matches({ rx: 'dataReady' })) {
      expect(next.matches({ rx: e.remaining === 0 ? 'empty' : 'dataReady' })).toBe(true);
    }
    // The two directions never affect each other.
    if (e.type === 'uart.received' || e.type === 'uart.read') expect(next.value.tx).toBe(prev.value.tx);
    if (e.type === 'uart.wrote' || e.type === 'uart.released') expect(next.value.rx).toBe(prev.value.rx);
  },
];

describe('uart chart', () => {
  const paths = model.getShortestPaths();

  it('drives every shortest path against the real actor', () => {
    const { steps } = runPaths({ machine: uartMachine, paths, actions: ACTIONS, eventTypes: Object.keys(EVENT_TYPES), rules });
    expect(steps).toBeGreaterThanOrEqual(12);
  });

  it('exercises every declared event, and handles no undeclared one', () => {
    expect([...eventsCovered(paths)].sort()).toEqual(Object.keys(EVENT_TYPES).sort());
    expect([...eventsHandled(uartMachine)].sort()).toEqual(Object.keys(EVENT_TYPES).sort());
  });

  it('holds written bytes until every one is released', () => {
    const { machine, fired } = recording(uartMachine, ACTIONS);
    const u = createActor(machine).start();
    u.send({ type: 'uart.wrote' });
    u.send({ type: 'uart.wrote' });
    expect(fired).toEqual([]);
    u.send({ type: 'uart.released', remaining: 1 });
    expect(u.getSnapshot().value).toEqual({ rx: 'empty', tx: 'holding' });
    u.send({ type: 'uart.released', remaining: 0 });
    expect(u.getSnapshot().value).toEqual({ rx: 'empty', tx: 'idle' });
    expect(fired).toEqual(['emitOutput', 'emitOutput']);
  });
});
