import { describe, expect, it } from 'vitest';
import { createTestModel } from 'xstate/graph';
import { virtioBlkMachine, type VirtioBlkEvent } from '../../machines/virtio-blk.machine.js';
import { count, eventsCovered, eventsHandled, everyTransition, runPaths, type Rule } from './harness.js';

const EVENT_TYPES: Record<VirtioBlkEvent['type'], true> = {
  'blk.submitted': true, 'blk.released': true, 'blk.completed': true, 'blk.wentLive': true,
};
const ACTIONS = ['issueIo'];
const SUBMITS = [{ type: 'blk.submitted', write: true }, { type: 'blk.submitted', write: false }] as const;

const rulesFor = (mode: 'record' | 'replay'): Rule[] => [
  ({ prev, event, fired, all }) => {
    const e = event as VirtioBlkEvent;
    // Output rule: a write reaches the disk only after release; a read goes at once.
    if (mode === 'record' && e.type === 'blk.submitted') expect(count(fired, 'issueIo')).toBe(e.write ? 0 : 1);
    if (e.type === 'blk.released') expect(count(fired, 'issueIo')).toBe(prev.matches('held') ? 1 : 0);
    // Replay does no I/O of its own; only going live re-issues what is still pending.
    if (mode === 'replay') expect(count(fired, 'issueIo')).toBe(e.type === 'blk.wentLive' && prev.matches('awaitingLog') ? 1 : 0);
    // A request is issued at most once in one life (re-issue happens in the new primary's).
    expect(count(all, 'issueIo')).toBeLessThanOrEqual(1);
  },
];

describe('virtio-blk request chart', () => {
  for (const mode of ['record', 'replay'] as const) {
    const paths = createTestModel(virtioBlkMachine, {
      ...everyTransition, input: { mode }, events: [...SUBMITS], stopWhen: (s) => s.status === 'done',
    }).getShortestPaths();

    it(`drives every shortest path against the real actor (${mode})`, () => {
      const { steps } = runPaths({
        machine: virtioBlkMachine, input: { mode }, paths, actions: ACTIONS, eventTypes: Object.keys(EVENT_TYPES), rules: rulesFor(mode),
      });
      expect(steps).toBeGreaterThanOrEqual(mode === 'record' ? 4 : 3);
    });

    it(`exercises the events ${mode} can see`, () => {
      const expected = mode === 'record'
        ? ['blk.completed', 'blk.released', 'blk.submitted']
        : ['blk.completed', 'blk.submitted', 'blk.wentLive'];
      expect([...eventsCovered(paths)].sort()).toEqual(expected);
    });
  }

  it('handles no undeclared event', () => {
    expect([...eventsHandled(virtioBlkMachine)].sort()).toEqual(Object.keys(EVENT_TYPES).sort());
  });
});
