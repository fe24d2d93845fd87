import { describe, expect, it } from 'vitest';
import { createActor } from 'xstate';
import { createTestModel, getSimplePaths } from 'xstate/graph';
import { primaryMachine, type PrimaryEvent } from '../../machines/primary.machine.js';
import { count, eventsCovered, eventsHandled, everyTransition, recording, runPaths, type Rule } from './harness.js';

const EVENT_TYPES: Record<PrimaryEvent['type'], true> = {
  'backup.joined': true, 'backup.caughtUp': true, 'channel.acked': true, 'channel.highWater': true,
  'channel.lowWater': true, 'channel.failed': true, 'peer.silent': true, 'peer.heard': true,
  'peer.confirmedDead': true, 'suspect.expired': true, 'arbiter.won': true, 'arbiter.lost': true,
  'arbiter.unreachable': true, 'vm.halted': true, 'digest.mismatch': true,
};
const ACTIONS = ['releaseOutputs', 'releaseAllOutputs', 'pauseVm', 'resumeVm', 'claimArbiter', 'retryClaim', 'haltVm', 'reportDivergence'];

// Generation grows on every won claim, so the graph is infinite; two rounds of
// failover and re-protection are enough to see every transition from every state.
// A final state ends the actor, so traversal must not continue from it either.
const model = createTestModel(primaryMachine, {
  ...everyTransition,
  input: { generation: 0 },
  stopWhen: (s) => s.status === 'done' || s.context.generation >= 2,
});

const rules: Rule[] = [
  // DESIGN §3 Split brain: the VM halts exactly when the arbiter was lost.
  ({ prev, event, fired }) => {
    expect(count(fired, 'haltVm')).toBe(prev.matches('claiming') && event.type === 'arbiter.lost' ? 1 : 0);
  },
  // Output rule: acknowledged outputs are released only while a live, trusted backup
  // acknowledges them — never while suspect, claiming, or before any backup joined.
  ({ prev, event, fired }) => {
    if (count(fired, 'releaseOutputs')) {
      expect(event.type).toBe('channel.acked');
      expect(prev.matches('protected') || prev.matches('protecting')).toBe(true);
    }
    if (event.type === 'channel.acked' && !(prev.matches('protected') || prev.matches('protecting'))) {
      expect(fired).toEqual([]);
    }
  },
  // Releasing everything (going alone) happens only on a won test-and-set.
  ({ prev, next, event, fired }) => {
    const won = prev.matches('claiming') && event.type === 'arbiter.won';
    expect(count(fired, 'releaseAllOutputs')).toBe(won ? 1 : 0);
    expect(next.context.generation).toBe(prev.context.generation + (won ? 1 : 0));
  },
  ({ prev, next, fired }) => {
    expect(count(fired, 'claimArbiter')).toBe(next.matches('claiming') && !prev.matches('claiming') ? 1 : 0);
    if (count(fired, 'retryClaim')) expect(next.matches('claiming')).toBe(true);
  },
  // Flow control pauses are always undone: the VM is paused exactly while throttled.
  ({ next, all }) => {
    expect(count(all, 'pauseVm') - count(all, 'resumeVm')).toBe(next.matches({ protected: 'throttled' }) ? 1 : 0);
  },
  // A cleared suspicion returns to where the backup was: protected if it had caught up
  // since joining (flow control applies again), protecting otherwise.
  ({ prev, next, event }) => {
    if (prev.matches('backupSuspect') && event.type === 'peer.heard') {
      expect(next.matches(prev.context.caughtUp ? 'protected' : 'protecting')).toBe(true);
    }
    if (next.matches('protected')) expect(next.context.caughtUp).toBe(true);
  },
  // DESIGN §3 Divergence: reported at once; the primary's own state is untouched.
  ({ prev, next, event, fired }) => {
    if (event.type === 'digest.mismatch') {
      expect(fired).toEqual(['reportDivergence']);
      expect(next.value).toEqual(prev.value);
    } else {
      expect(count(fired, 'reportDivergence')).toBe(0);
    }
  },
];

describe('primary chart', () => {
  const paths = model.getShortestPaths();

  it('drives every shortest path against the real actor', () => {
    const { steps } = runPaths({ machine: primaryMachine, input: { generation: 0 }, paths, actions: ACTIONS, eventTypes: Object.keys(EVENT_TYPES), rules });
    expect(steps).toBeGreaterThan(50);
  });

  it('drives every simple path from boot to a won or lost claim', () => {
    // Simple paths over states (not transitions, which loop forever through self-loops
    // such as `channel.acked`): every loop-free route through the protocol.
    const simple = getSimplePaths(primaryMachine, {
      input: { generation: 0 },
      stopWhen: (s) => s.status === 'done' || s.context.generation >= 1,
    });
    expect(simple.length).toBeGreaterThan(paths.length);
    runPaths({ machine: primaryMachine, input: { generation: 0 }, paths: simple, actions: ACTIONS, eventTypes: Object.keys(EVENT_TYPES), rules });
  });

  it('exercises every declared event, and handles no undeclared one', () => {
    expect([...eventsCovered(paths)].sort()).toEqual(Object.keys(EVENT_TYPES).sort());
    expect([...eventsHandled(primaryMachine)].sort()).toEqual(Object.keys(EVENT_TYPES).sort());
  });

  it('reports divergence at once and stays protected', () => {
    const { machine, fired } = recording(primaryMachine, ACTIONS);
    const p = createActor(machine, { input: { generation: 0 } }).start();
    p.send({ type: 'backup.joined' });
    p.send({ type: 'backup.caughtUp' });
    p.send({ type: 'digest.mismatch' });
    expect(fired).toEqual(['reportDivergence']);
    expect(p.getSnapshot().value).toEqual({ protected: 'flowing' });
  });

  it('keeps trying an unreachable arbiter and releases nothing meanwhile', () => {
    const { machine, fired } = recording(primaryMachine, ACTIONS);
    const p = createActor(machine, { input: { generation: 7 } }).start();
    p.send({ type: 'backup.joined' });
    p.send({ type: 'backup.caughtUp' });
    p.send({ type: 'peer.silent' });
    p.send({ type: 'suspect.expired' });
    for (let i = 0; i < 3; i++) p.send({ type: 'arbiter.unreachable' });
    p.send({ type: 'channel.acked' });
    expect(fired).toEqual(['claimArbiter', 'retryClaim', 'retryClaim', 'retryClaim']);
    p.send({ type: 'arbiter.won' });
    expect(p.getSnapshot().value).toBe('alone');
    expect(p.getSnapshot().context.generation).toBe(8);
    expect(fired.at(-1)).toBe('releaseAllOutputs');
  });

  it('keeps flow control after a suspicion clears', () => {
    const { machine, fired } = recording(primaryMachine, ACTIONS);
    const p = createActor(machine, { input: { generation: 0 } }).start();
    for (const type of ['backup.joined', 'backup.caughtUp', 'peer.silent', 'peer.heard', 'channel.highWater'] as const) {
      p.send({ type });
    }
    expect(p.getSnapshot().value).toEqual({ protected: 'throttled' });
    expect(fired).toEqual(['pauseVm']);
  });

  it('resumes a throttled VM when the backup is lost', () => {
    const { machine, fired } = recording(primaryMachine, ACTIONS);
    const p = createActor(machine, { input: { generation: 0 } }).start();
    p.send({ type: 'backup.joined' });
    p.send({ type: 'backup.caughtUp' });
    p.send({ type: 'channel.highWater' });
    p.send({ type: 'channel.failed' });
    expect(fired).toEqual(['pauseVm', 'resumeVm']);
    expect(p.getSnapshot().value).toBe('backupSuspect');
  });
});
