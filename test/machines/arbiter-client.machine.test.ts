import { describe, expect, it } from 'vitest';
import { createActor } from 'xstate';
import { createTestModel } from 'xstate/graph';
import { arbiterClientMachine, type ArbiterClientEvent } from '../../machines/arbiter-client.machine.js';
import { count, eventsCovered, eventsHandled, everyTransition, recording, runPaths, type Rule } from './harness.js';

const EVENT_TYPES: Record<ArbiterClientEvent['type'], true> = {
  'arbiter.claim': true, 'arbiter.won': true, 'arbiter.lost': true, 'arbiter.unreachable': true, 'arbiter.retry': true,
};
const ACTIONS = ['testAndSet', 'scheduleRetry'];

const model = createTestModel(arbiterClientMachine, {
  ...everyTransition,
  events: [{ type: 'arbiter.claim', generation: 4 }],
  stopWhen: (s) => s.status === 'done',
});

const rules: Rule[] = [
  // One test-and-set per attempt: on the claim and on each retry, never otherwise.
  ({ prev, event, fired }) => {
    const attempt = (prev.matches('idle') && event.type === 'arbiter.claim') ||
      (prev.matches('unreachable') && event.type === 'arbiter.retry');
    expect(count(fired, 'testAndSet')).toBe(attempt ? 1 : 0);
  },
  // An unreachable arbiter is retried, never taken as a verdict (DESIGN §3 Split brain).
  ({ prev, next, event, fired }) => {
    const unreachable = prev.matches('claiming') && event.type === 'arbiter.unreachable';
    expect(count(fired, 'scheduleRetry')).toBe(unreachable ? 1 : 0);
    if (unreachable) expect(next.status).toBe('active');
  },
  // The generation is fixed by the claim and never changes during retries.
  ({ prev, next, event }) => {
    if (event.type !== 'arbiter.claim') expect(next.context.generation).toBe(prev.context.generation);
  },
];

describe('arbiter-client chart', () => {
  const paths = model.getShortestPaths();

  it('drives every shortest path against the real actor', () => {
    const { steps } = runPaths({ machine: arbiterClientMachine, paths, actions: ACTIONS, eventTypes: Object.keys(EVENT_TYPES), rules });
    expect(steps).toBeGreaterThanOrEqual(7);
  });

  it('exercises every declared event, and handles no undeclared one', () => {
    expect([...eventsCovered(paths)].sort()).toEqual(Object.keys(EVENT_TYPES).sort());
    expect([...eventsHandled(arbiterClientMachine)].sort()).toEqual(Object.keys(EVENT_TYPES).sort());
  });

  it('retries the same generation until the arbiter answers', () => {
    const { machine, fired } = recording(arbiterClientMachine, ACTIONS);
    const a = createActor(machine).start();
    a.send({ type: 'arbiter.claim', generation: 9 });
    for (let i = 0; i < 3; i++) {
      a.send({ type: 'arbiter.unreachable' });
      a.send({ type: 'arbiter.retry' });
    }
    a.send({ type: 'arbiter.won' });
    expect(fired).toEqual(['testAndSet', ...Array(3).fill(['scheduleRetry', 'testAndSet']).flat()]);
    expect(a.getSnapshot().value).toBe('won');
    expect(a.getSnapshot().context.generation).toBe(9);
  });
});
