import { describe, expect, it } from 'vitest';
import { createActor } from 'xstate';
import { createTestModel } from 'xstate/graph';
import { timerMachine, type TimerEvent } from '../../machines/timer.machine.js';
import { count, eventsCovered, eventsHandled, everyTransition, recording, runPaths, type Rule } from './harness.js';

const EVENT_TYPES: Record<TimerEvent['type'], true> = { 'timer.compareWritten': true, 'timer.fired': true };
const ACTIONS = ['armDeadline', 'raiseMtip', 'lowerMtip'];

const model = createTestModel(timerMachine, {
  ...everyTransition,
  events: [{ type: 'timer.compareWritten', far: true }, { type: 'timer.compareWritten', far: false }],
});

const rules: Rule[] = [
  // MTIP is level (privileged spec, mip.MTIP): raised exactly while the chart is pending.
  ({ next, all }) => {
    expect(count(all, 'raiseMtip') - count(all, 'lowerMtip')).toBe(next.matches('pending') ? 1 : 0);
  },
  // Every compare write moves the deadline: a near one is watched, a far one disarms.
  ({ event, next, fired }) => {
    if (event.type === 'timer.compareWritten') {
      const far = (event as TimerEvent & { far: boolean }).far;
      expect(next.value).toBe(far ? 'disarmed' : 'armed');
      expect(count(fired, 'armDeadline')).toBe(far ? 0 : 1);
    }
  },
  // Only an armed timer fires: a stale fire after disarming must not raise MTIP.
  ({ prev, event, fired }) => {
    if (event.type === 'timer.fired') expect(count(fired, 'raiseMtip')).toBe(prev.matches('armed') ? 1 : 0);
  },
];

describe('timer chart', () => {
  const paths = model.getShortestPaths();

  it('drives every shortest path against the real actor', () => {
    const { steps } = runPaths({ machine: timerMachine, paths, actions: ACTIONS, eventTypes: Object.keys(EVENT_TYPES), rules });
    expect(steps).toBeGreaterThanOrEqual(8);
  });

  it('exercises every declared event, and handles no undeclared one', () => {
    expect([...eventsCovered(paths)].sort()).toEqual(Object.keys(EVENT_TYPES).sort());
    expect([...eventsHandled(timerMachine)].sort()).toEqual(Object.keys(EVENT_TYPES).sort());
  });

  it('lowers MTIP when a pending timer is re-armed (the usual tick handler)', () => {
    const { machine, fired } = recording(timerMachine, ACTIONS);
    const t = createActor(machine).start();
    t.send({ type: 'timer.compareWritten', far: false });
    t.send({ type: 'timer.fired' });
    t.send({ type: 'timer.compareWritten', far: false });
    expect(fired).toEqual(['armDeadline', 'raiseMtip', 'lowerMtip', 'armDeadline']);
    expect(t.getSnapshot().value).toBe('armed');
  });
});
