import { describe, expect, it } from 'vitest';
import { createActor } from 'xstate';
import { createTestModel } from 'xstate/graph';
import { virtioMachine, type VirtioEvent } from '../../machines/virtio.machine.js';
import { count, eventsCovered, eventsHandled, everyTransition, recording, runPaths, type Rule } from './harness.js';

const EVENT_TYPES: Record<VirtioEvent['type'], true> = { 'virtio.statusWritten': true, 'virtio.broken': true };
const ACTIONS = ['resetDevice', 'raiseConfigInterrupt'];
// The driver's initialisation steps (VIRTIO 1.1 §3.1.1), cumulative as drivers write them.
const STATUSES = [0, 1, 3, 11, 15, 0x80 | 3];

const model = createTestModel(virtioMachine, {
  ...everyTransition,
  events: STATUSES.map((status) => ({ type: 'virtio.statusWritten', status }) as const),
});

const rules: Rule[] = [
  ({ event, next, prev, fired }) => {
    const e = event as VirtioEvent;
    const status = e.type === 'virtio.statusWritten' ? e.status : undefined;
    // Writing 0 always resets; nothing else does.
    expect(count(fired, 'resetDevice')).toBe(status === 0 ? 1 : 0);
    if (status === 0) expect(next.value).toBe('reset');
    // Only a reset leaves needsReset (a FAILED write just records the driver gave up).
    if (prev.matches('needsReset') && status !== 0) expect(['needsReset', 'failed']).toContain(next.value);
    // Requests are served only after DRIVER_OK and before the device breaks.
    if (next.matches('ready')) expect(status === undefined ? prev.matches('ready') : (status & 4) !== 0).toBe(true);
    if (e.type === 'virtio.broken') expect(next.value).toBe(prev.matches('ready') ? 'needsReset' : prev.value);
    expect(count(fired, 'raiseConfigInterrupt')).toBe(next.matches('needsReset') && !prev.matches('needsReset') ? 1 : 0);
  },
];

describe('virtio transport chart', () => {
  const paths = model.getShortestPaths();

  it('drives every shortest path against the real actor', () => {
    const { steps } = runPaths({ machine: virtioMachine, paths, actions: ACTIONS, eventTypes: Object.keys(EVENT_TYPES), rules });
    expect(steps).toBeGreaterThan(30);
  });

  it('exercises every declared event, and handles no undeclared one', () => {
    expect([...eventsCovered(paths)].sort()).toEqual(Object.keys(EVENT_TYPES).sort());
    expect([...eventsHandled(virtioMachine)].sort()).toEqual(Object.keys(EVENT_TYPES).sort());
  });

  it('follows a driver through initialisation, a failure and a reset', () => {
    const { machine, fired } = recording(virtioMachine, ACTIONS);
    const v = createActor(machine).start();
    const seen: unknown[] = [];
    for (const status of [1, 3, 11, 15]) {
      v.send({ type: 'virtio.statusWritten', status });
      seen.push(v.getSnapshot().value);
    }
    expect(seen).toEqual(['acknowledged', 'driverFound', 'featuresOk', 'ready']);
    v.send({ type: 'virtio.broken' });
    v.send({ type: 'virtio.statusWritten', status: 15 });
    expect(v.getSnapshot().value).toBe('needsReset');
    v.send({ type: 'virtio.statusWritten', status: 0 });
    expect(v.getSnapshot().value).toBe('reset');
    expect(fired).toEqual(['raiseConfigInterrupt', 'resetDevice']);
  });
});
