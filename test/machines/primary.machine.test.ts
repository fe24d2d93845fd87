import { describe, expect, it } from 'vitest';
import { createActor, type AnyMachineSnapshot } from 'xstate';
import { primaryMachine, type PrimaryEvent } from '../../machines/primary.machine.js';
import { DEFAULT_CLAIM_RETRY } from '../../machines/arbiter-client.machine.js';
import {
  ARBITER_DONE, ARBITER_VERDICTS, arbiterWorld, chartPaths, count, eventsCovered, eventsHandled, recording, runPaths, type Rule,
} from './harness.js';

const EVENT_TYPES: Record<PrimaryEvent['type'], true> = {
  'backup.joined': true, 'backup.caughtUp': true, 'channel.acked': true, 'channel.highWater': true,
  'channel.lowWater': true, 'channel.failed': true, 'peer.silent': true, 'peer.heard': true,
  'peer.confirmedDead': true, 'suspect.expired': true, 'vm.halted': true, 'digest.mismatch': true,
};
/** Sent by no one: the invoked arbiter client's verdict (`onDone`). */
const EVENTS = [...Object.keys(EVENT_TYPES), ARBITER_DONE];
const ACTIONS = ['releaseOutputs', 'releaseAllOutputs', 'pauseVm', 'resumeVm', 'haltVm', 'reportDivergence'];
const INPUT = { generation: 0 };

const verdict = (e: { type: string }) => (e.type === ARBITER_DONE ? (e as unknown as { output: { result: string } }).output.result : undefined);

// Generation grows on every won claim, so the graph is infinite; two rounds of
// failover and re-protection are enough to see every transition from every state.
// A final state ends the actor, so traversal must not continue from it either.
// The chart invokes the arbiter client, which createTestModel refuses: plain paths, with the
// client's two verdicts as the `onDone` events, driven through the real client (harness).
const stopAt = (g: number) => (s: AnyMachineSnapshot) => s.status === 'done' || s.context.generation >= g;
let world: ReturnType<typeof arbiterWorld>;
/** Claims (first attempts) the arbiter saw so far on this path. */
let claimsSeen = 0;
const makeWorld = () => {
  claimsSeen = 0;
  return (world = arbiterWorld(DEFAULT_CLAIM_RETRY));
};

const rules: Rule[] = [
  // DESIGN §3 Split brain: the VM halts exactly when the arbiter was lost.
  ({ prev, event, fired }) => {
    expect(count(fired, 'haltVm')).toBe(prev.matches('claiming') && verdict(event) === 'lost' ? 1 : 0);
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
    const won = prev.matches('claiming') && verdict(event) === 'won';
    expect(count(fired, 'releaseAllOutputs')).toBe(won ? 1 : 0);
    expect(next.context.generation).toBe(prev.context.generation + (won ? 1 : 0));
  },
  // A claim starts exactly on entering `claiming`, for the generation the chart holds, and
  // one runs exactly while there: leaving stops it (nothing claims behind the chart's back).
  ({ prev, next }) => {
    const fresh = world.tas.calls.filter((c) => c.attempt === 1);
    const entered = next.matches('claiming') && !prev.matches('claiming');
    expect(fresh.length - claimsSeen).toBe(entered ? 1 : 0);
    claimsSeen = fresh.length;
    if (entered) expect(fresh.at(-1)?.generation).toBe(next.context.generation);
    expect(world.tas.pending).toBe(next.matches('claiming') ? 1 : 0);
    expect(Object.keys(next.children)).toEqual(next.matches('claiming') ? ['arbiter'] : []);
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
  const paths = chartPaths(primaryMachine, { input: INPUT, variants: ARBITER_VERDICTS, stopWhen: stopAt(2) });
  const run = { machine: primaryMachine, input: INPUT, actions: ACTIONS, eventTypes: EVENTS, rules, world: makeWorld };

  it('drives every shortest path against the real actor and its real arbiter client', () => {
    const { steps } = runPaths({ ...run, paths });
    expect(steps).toBeGreaterThan(50);
  });

  it('drives every simple path from boot to a won or lost claim', () => {
    // Simple paths over states (not transitions, which loop forever through self-loops
    // such as `channel.acked`): every loop-free route through the protocol.
    const simple = chartPaths(primaryMachine, { input: INPUT, variants: ARBITER_VERDICTS, stopWhen: stopAt(1), simple: true });
    expect(simple.length).toBeGreaterThan(40);
    runPaths({ ...run, paths: simple });
  });

  it('exercises every declared event, and handles no undeclared one', () => {
    expect([...eventsCovered(paths)].sort()).toEqual([...EVENTS].sort());
    expect([...eventsHandled(primaryMachine)].sort()).toEqual([...EVENTS].sort());
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

  it('keeps trying an unreachable arbiter with backoff and releases nothing meanwhile', () => {
    const { machine, fired } = recording(primaryMachine, ACTIONS);
    const w = arbiterWorld({ firstMs: 10, maxMs: 40 });
    const p = createActor(machine.provide({ actors: w.actors }), { input: { generation: 7, claimRetry: { firstMs: 10, maxMs: 40 } }, clock: w.clock }).start();
    p.send({ type: 'backup.joined' });
    p.send({ type: 'backup.caughtUp' });
    p.send({ type: 'peer.silent' });
    p.send({ type: 'suspect.expired' });
    const at: number[] = [];
    for (let i = 0; i < 5; i++) {
      at.push(w.clock.now());
      w.tas.answer(new Error('unreachable'));
      p.send({ type: 'channel.acked' });
      while (w.tas.pending === 0) w.clock.increment(1);
    }
    expect(at).toEqual([0, 10, 30, 70, 110]);
    expect(w.tas.calls.map((c) => c.generation)).toEqual(Array(6).fill(7));
    expect(fired).toEqual([]);
    expect(p.getSnapshot().value).toBe('claiming');
    w.tas.answer('won');
    expect(p.getSnapshot().value).toBe('alone');
    expect(p.getSnapshot().context.generation).toBe(8);
    expect(fired).toEqual(['releaseAllOutputs']);
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
