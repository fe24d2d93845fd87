import { describe, expect, it } from 'vitest';
import { createActor } from 'xstate';
import { createTestModel } from 'xstate/graph';
import { channelMachine, type ChannelEvent } from '../../machines/channel.machine.js';
import { count, eventsCovered, eventsHandled, everyTransition, recording, runPaths, type Rule } from './harness.js';

const EVENT_TYPES: Record<ChannelEvent['type'], true> = {
  'channel.connected': true, 'channel.authenticated': true, 'channel.authFailed': true,
  'channel.highWater': true, 'channel.lowWater': true, 'peer.silent': true, 'peer.heard': true,
  'channel.failed': true, 'channel.close': true,
};
const ACTIONS = ['pauseVm', 'resumeVm', 'reportSuspect'];

const model = createTestModel(channelMachine, { ...everyTransition, stopWhen: (s) => s.status === 'done' });

const rules: Rule[] = [
  // Flow control never leaks a pause: the VM is paused exactly while backpressured
  // (DESIGN §3 Flow control), including when the channel closes under pressure.
  ({ next, all }) => {
    expect(count(all, 'pauseVm') - count(all, 'resumeVm')).toBe(next.matches({ open: { flow: 'backpressured' } }) ? 1 : 0);
  },
  // Suspicion is reported once per silence, and only on an open channel.
  ({ prev, next, fired }) => {
    const becameSuspect = next.matches({ open: { peer: 'suspect' } }) && !prev.matches({ open: { peer: 'suspect' } });
    expect(count(fired, 'reportSuspect')).toBe(becameSuspect ? 1 : 0);
  },
  // Nothing but an authenticated channel is ever open (pre-shared key, DESIGN §4).
  ({ prev, next, event }) => {
    if (next.matches('open') && !prev.matches('open')) expect(event.type).toBe('channel.authenticated');
  },
  ({ event, next }) => {
    if (event.type === 'channel.failed' || event.type === 'channel.close') expect(next.value).toBe('closed');
  },
];

describe('channel chart', () => {
  const paths = model.getShortestPaths();

  it('drives every shortest path against the real actor', () => {
    const { steps } = runPaths({ machine: channelMachine, paths, actions: ACTIONS, eventTypes: Object.keys(EVENT_TYPES), rules });
    expect(steps).toBeGreaterThan(20);
  });

  it('exercises every declared event, and handles no undeclared one', () => {
    expect([...eventsCovered(paths)].sort()).toEqual(Object.keys(EVENT_TYPES).sort());
    expect([...eventsHandled(channelMachine)].sort()).toEqual(Object.keys(EVENT_TYPES).sort());
  });

  it('closes on a failed authentication without ever opening', () => {
    const { machine, fired } = recording(channelMachine, ACTIONS);
    const c = createActor(machine).start();
    c.send({ type: 'channel.connected' });
    c.send({ type: 'channel.highWater' });
    c.send({ type: 'channel.authFailed' });
    expect(c.getSnapshot().value).toBe('closed');
    expect(fired).toEqual([]);
  });

  it('keeps back-pressure and suspicion independent', () => {
    const { machine, fired } = recording(channelMachine, ACTIONS);
    const c = createActor(machine).start();
    for (const type of ['channel.connected', 'channel.authenticated', 'channel.highWater', 'peer.silent', 'peer.heard'] as const) {
      c.send({ type });
    }
    expect(c.getSnapshot().value).toEqual({ open: { flow: 'backpressured', peer: 'responsive' } });
    c.send({ type: 'channel.failed' });
    expect(fired).toEqual(['pauseVm', 'reportSuspect', 'resumeVm']);
  });
});
