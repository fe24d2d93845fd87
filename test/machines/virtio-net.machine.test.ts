import { describe, expect, it } from 'vitest';
import { createActor } from 'xstate';
import { createTestModel } from 'xstate/graph';
import { virtioNetMachine, type VirtioNetEvent } from '../../machines/virtio-net.machine.js';
import { count, eventsCovered, eventsHandled, everyTransition, recording, runPaths, type Rule } from './harness.js';

const EVENT_TYPES: Record<VirtioNetEvent['type'], true> = {
  'net.buffersPosted': true, 'net.arrived': true, 'net.sent': true, 'net.released': true,
};
const ACTIONS = ['deliverPacket', 'dropPacket', 'transmit'];

const model = createTestModel(virtioNetMachine, {
  ...everyTransition,
  events: [
    { type: 'net.arrived', lastBuffer: true }, { type: 'net.arrived', lastBuffer: false },
    { type: 'net.released', remaining: 0 }, { type: 'net.released', remaining: 1 },
  ],
});

const rules: Rule[] = [
  // Every arriving packet is either delivered into a posted buffer or dropped, never both.
  ({ prev, event, fired }) => {
    if (event.type === 'net.arrived') {
      expect(fired).toEqual([prev.matches({ rx: 'receiving' }) ? 'deliverPacket' : 'dropPacket']);
    }
  },
  // Output rule: a packet leaves only when released, and only if one was held.
  ({ prev, event, fired }) => {
    expect(count(fired, 'transmit')).toBe(event.type === 'net.released' && prev.matches({ tx: 'holding' }) ? 1 : 0);
  },
];

describe('virtio-net chart', () => {
  const paths = model.getShortestPaths();

  it('drives every shortest path against the real actor', () => {
    const { steps } = runPaths({ machine: virtioNetMachine, paths, actions: ACTIONS, eventTypes: Object.keys(EVENT_TYPES), rules });
    expect(steps).toBeGreaterThanOrEqual(12);
  });

  it('exercises every declared event, and handles no undeclared one', () => {
    expect([...eventsCovered(paths)].sort()).toEqual(Object.keys(EVENT_TYPES).sort());
    expect([...eventsHandled(virtioNetMachine)].sort()).toEqual(Object.keys(EVENT_TYPES).sort());
  });

  it('drops packets once the posted buffers are used up', () => {
    const { machine, fired } = recording(virtioNetMachine, ACTIONS);
    const n = createActor(machine).start();
    n.send({ type: 'net.buffersPosted' });
    n.send({ type: 'net.arrived', lastBuffer: false });
    n.send({ type: 'net.arrived', lastBuffer: true });
    n.send({ type: 'net.arrived', lastBuffer: false });
    expect(fired).toEqual(['deliverPacket', 'deliverPacket', 'dropPacket']);
  });
});
