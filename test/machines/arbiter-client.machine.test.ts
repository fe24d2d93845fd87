// The arbiter client in virtual time: every path of its chart runs on a real actor whose
// test-and-set is a fake answered by hand and whose retry delays run on xstate's
// SimulatedClock, so a wait of a second costs nothing and is checked to the millisecond.
import { describe, expect, it } from 'vitest';
import { createActor, SimulatedClock, type AnyMachineSnapshot, type EventObject } from 'xstate';
import {
  arbiterClientMachine,
  type ArbiterClientInput,
  type ClaimAttempt,
  type ClaimVerdict,
} from '../../machines/arbiter-client.machine.js';
import { answerable, chartPaths, eventsCovered, eventsHandled, runPaths, type Rule, type World } from './harness.js';

const DONE = 'xstate.done.actor.testAndSet';
const ERROR = 'xstate.error.actor.testAndSet';
const AFTER = 'xstate.after.retryDelay.arbiterClient.unreachable';
const EVENT_TYPES = [DONE, ERROR, AFTER];

const INPUT: ArbiterClientInput = { generation: 4, retry: { firstMs: 50, maxMs: 300 } };
/** The waits after failed attempts 1, 2, 3, …: doubling from 50 ms, capped at 300 ms. */
const WAITS = [50, 100, 200, 300, 300, 300];
const waitAfter = (attempt: number) => WAITS[attempt - 1]!;

// An answer that is neither won nor lost decides nothing: the client treats it as no answer.
const VARIANTS: (EventObject & { output: unknown })[] = [
  { type: DONE, output: 'won' },
  { type: DONE, output: 'lost' },
  { type: DONE, output: 'maybe' },
];

/** Attempts grow without bound while the arbiter stays away; four show the cap. */
const stopWhen = (s: AnyMachineSnapshot) => s.status === 'done' || s.context.attempt >= 5;

/**
 * The product's side of each step: the fake arbiter answers, or the clock moves. A retry must
 * not start one millisecond before its delay, and must start exactly at it.
 */
function world(): World & { tas: ReturnType<typeof answerable<ClaimVerdict, ClaimAttempt>>; clock: SimulatedClock } {
  const tas = answerable<ClaimVerdict, ClaimAttempt>();
  const clock = new SimulatedClock();
  return {
    tas,
    clock,
    actors: { testAndSet: tas.logic },
    exec: (event, prev) => {
      if (event.type === DONE) tas.answer((event as EventObject & { output: ClaimVerdict }).output);
      else if (event.type === ERROR) tas.answer(new Error('arbiter: unavailable (fault injected)'));
      else if (event.type === AFTER) {
        const calls = tas.calls.length;
        clock.increment(waitAfter(prev.context.attempt) - 1);
        expect(tas.calls.length, `no retry before ${waitAfter(prev.context.attempt)} ms`).toBe(calls);
        clock.increment(1);
        expect(tas.calls.length, `a retry at ${waitAfter(prev.context.attempt)} ms`).toBe(calls + 1);
      } else return false;
      return true;
    },
  };
}

let current: ReturnType<typeof world>;
const makeWorld = () => (current = world());

const rules: Rule[] = [
  // One test-and-set per attempt, always for the same generation, told its wait if it fails;
  // exactly one call in flight while claiming, none otherwise.
  ({ next }) => {
    const calls = current.tas.calls;
    expect(calls.length).toBe(next.context.attempt);
    expect(calls.at(-1)).toEqual({ generation: 4, attempt: next.context.attempt, retryInMs: waitAfter(next.context.attempt) });
    expect(current.tas.pending).toBe(next.matches('claiming') ? 1 : 0);
  },
  // DESIGN §3: an unreachable arbiter (or an answer that decides nothing) is retried, never
  // taken as a verdict; the chart ends only on won or lost, with that as its output.
  ({ event, next }) => {
    const verdict = event.type === DONE ? (event as EventObject & { output?: string }).output : undefined;
    if (verdict === 'won' || verdict === 'lost') {
      expect(next.status).toBe('done');
      expect(next.output).toEqual({ result: verdict });
    } else {
      expect(next.status).toBe('active');
    }
  },
  // A retry timer runs exactly while unreachable: a verdict leaves nothing scheduled.
  ({ next }) => {
    expect(current.clock['timeouts'].size).toBe(next.matches('unreachable') ? 1 : 0);
  },
];

describe('arbiter-client chart (virtual time)', () => {
  const paths = chartPaths(arbiterClientMachine, { input: INPUT, variants: VARIANTS, stopWhen });

  it('drives every shortest path against a real actor, the arbiter faked at the wire', () => {
    const { steps } = runPaths({ machine: arbiterClientMachine, input: INPUT, paths, actions: [], eventTypes: EVENT_TYPES, rules, world: makeWorld });
    expect(steps).toBeGreaterThanOrEqual(20);
  });

  it('drives every simple path', () => {
    const simple = chartPaths(arbiterClientMachine, { input: INPUT, variants: VARIANTS, stopWhen, simple: true });
    expect(simple.length).toBeGreaterThan(paths.length);
    runPaths({ machine: arbiterClientMachine, input: INPUT, paths: simple, actions: [], eventTypes: EVENT_TYPES, rules, world: makeWorld });
  });

  it('exercises every event it handles', () => {
    expect([...eventsCovered(paths)].sort()).toEqual([...EVENT_TYPES].sort());
    expect([...eventsHandled(arbiterClientMachine)].sort()).toEqual([...EVENT_TYPES].sort());
  });

  it('backs off 50 ms doubling to 1 s by default, and claims the same generation throughout', () => {
    const w = world();
    const a = createActor(arbiterClientMachine.provide({ actors: { testAndSet: w.tas.logic as never } }), { input: { generation: 9 }, clock: w.clock }).start();
    const at: number[] = [];
    for (let i = 0; i < 8; i++) {
      at.push(w.clock.now());
      w.tas.answer(new Error('unreachable'));
      // Jump to the next attempt, whenever it is due.
      while (w.tas.pending === 0) w.clock.increment(1);
    }
    w.tas.answer('won');
    expect(at).toEqual([0, 50, 150, 350, 750, 1550, 2550, 3550]);
    expect(w.tas.calls.map((c) => c.generation)).toEqual(Array(9).fill(9));
    expect(w.tas.calls.map((c) => c.retryInMs)).toEqual([50, 100, 200, 400, 800, 1000, 1000, 1000, 1000]);
    expect(a.getSnapshot().status).toBe('done');
    expect(a.getSnapshot().output).toEqual({ result: 'won' });
  });

  it('stops trying when its parent leaves claiming: no timer, no call left behind', () => {
    const w = world();
    const a = createActor(arbiterClientMachine.provide({ actors: { testAndSet: w.tas.logic as never } }), { input: INPUT, clock: w.clock }).start();
    w.tas.answer(new Error('unreachable'));
    a.stop();
    w.clock.increment(10_000);
    expect(w.tas.calls).toHaveLength(1);
  });
});
