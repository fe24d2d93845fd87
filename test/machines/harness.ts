// Shared driver for the model-based chart tests (DESIGN §6): xstate/graph enumerates
// paths over a chart, and every path is replayed against a *real* actor of the same
// chart whose effects are recording fakes. After every step the actor's snapshot must
// equal the model's, and per-chart rules check which effects fired.
import {
  createActor,
  SimulatedClock,
  type ActorLogic,
  type ActorRef,
  type AnyActor,
  type AnyActorLogic,
  type AnyMachineSnapshot,
  type AnyStateMachine,
  type EventObject,
  type Snapshot,
} from 'xstate';
import { getShortestPaths, getSimplePaths, serializeSnapshot, type StatePath } from 'xstate/graph';
import { arbiterClientMachine, claimRetryDelayMs, type ClaimAttempt, type ClaimRetry, type ClaimVerdict } from '../../machines/arbiter-client.machine.js';
import { expect } from 'vitest';

/** What one step of a path did to the real actor. */
export interface StepFacts {
  prev: AnyMachineSnapshot;
  next: AnyMachineSnapshot;
  event: EventObject;
  /** Effects (action names) that fired during this step, in order. */
  fired: string[];
  /** Every effect fired since the actor started, including this step's. */
  all: string[];
}

export type Rule = (facts: StepFacts) => void;

/** Replace every named effect of `machine` by a fake that appends its name to `fired`. */
export function recording<M extends AnyStateMachine>(machine: M, actionNames: readonly string[]) {
  const fired: string[] = [];
  const actions = Object.fromEntries(actionNames.map((name) => [name, () => void fired.push(name)]));
  return { machine: machine.provide({ actions } as never) as M, fired };
}

export interface PathRun {
  machine: AnyStateMachine;
  paths: ReadonlyArray<StatePath<AnyMachineSnapshot, EventObject> & { test?: unknown }>;
  /** Every action the chart declares; each gets a recording fake. */
  actions: readonly string[];
  /** Every event type of the chart's event union (typed exhaustively by the caller). */
  eventTypes: readonly string[];
  rules?: Rule[];
  input?: unknown;
  /** Effects the chart must fire on start (entry actions of its initial state). */
  onStart?: string[];
  /**
   * The world around the chart, made fresh for each path: actors supplied to it (fakes at
   * the wire), the clock its delays run on, and executors for the events that are not sent
   * but happen (an invoked actor finishing, a delay passing). `exec` returns true when it
   * made the event happen; otherwise the event is sent to the actor.
   */
  world?: () => World;
}

export interface World {
  actors?: Record<string, AnyActorLogic>;
  clock?: SimulatedClock;
  exec?: (event: EventObject, prev: AnyMachineSnapshot, actor: AnyActor) => boolean;
}

/**
 * Drive every path against a fresh real actor. Every step is sent by hand (not through
 * an optional executor map) so an event can never be skipped silently — the hazard
 * STYLE §1 notes for `path.test`.
 */
export function runPaths(run: PathRun): { steps: number } {
  let steps = 0;
  expect(run.paths.length).toBeGreaterThan(0);
  for (const path of run.paths) {
    const world = run.world?.() ?? {};
    const rec = recording(run.machine, run.actions);
    const { fired } = rec;
    const machine = world.actors ? rec.machine.provide({ actors: world.actors } as never) : rec.machine;
    const actor = createActor(machine, { input: run.input, ...(world.clock ? { clock: world.clock } : {}) } as never);
    actor.start();
    const all: string[] = [...fired];
    expect(all, 'effects on start').toEqual(run.onStart ?? []);
    fired.length = 0;
    let prev = actor.getSnapshot() as AnyMachineSnapshot;
    const where = (i: number) =>
      `path ${path.steps.map((s) => s.event.type).join(' → ')} at step ${i}`;
    path.steps.forEach((step, i) => {
      if (step.event.type === 'xstate.init') {
        expect(prev.value, where(i)).toEqual(step.state.value);
        return;
      }
      expect(run.eventTypes, `${step.event.type} is a declared event`).toContain(step.event.type);
      if (!world.exec?.(step.event, prev, actor as AnyActor)) actor.send(step.event as never);
      const next = actor.getSnapshot() as AnyMachineSnapshot;
      expect(next.value, where(i)).toEqual(step.state.value);
      expect(next.context, where(i)).toEqual(step.state.context);
      all.push(...fired);
      const facts: StepFacts = { prev, next, event: step.event, fired: [...fired], all: [...all] };
      for (const rule of run.rules ?? []) rule(facts);
      fired.length = 0;
      prev = next;
      steps++;
    });
    actor.stop();
  }
  return { steps };
}

/** Event types used by at least one path: each declared event must be exercised. */
export function eventsCovered(paths: ReadonlyArray<StatePath<AnyMachineSnapshot, EventObject>>): Set<string> {
  const seen = new Set<string>();
  for (const p of paths) for (const s of p.steps) if (s.event.type !== 'xstate.init') seen.add(s.event.type);
  return seen;
}

/** The event types the chart itself listens to anywhere (from its state nodes). */
export function eventsHandled(machine: AnyStateMachine): Set<string> {
  const seen = new Set<string>();
  const visit = (node: { ownEvents: string[]; states: Record<string, unknown> }) => {
    for (const e of node.ownEvents) seen.add(e);
    for (const child of Object.values(node.states)) visit(child as typeof node);
  };
  visit(machine.root as never);
  return seen;
}

/** Count occurrences of `name` in a list of fired effects. */
export const count = (fired: readonly string[], name: string) => fired.filter((f) => f === name).length;

/** True if the snapshot is in the (possibly nested) state `value`. */
export const isIn = (s: AnyMachineSnapshot, value: string | object) => s.matches(value as never);

/**
 * createTestModel option: key graph vertices by the transition taken, including
 * targetless ones. xstate/graph's default key drops a transition whose state value is
 * unchanged, so effect-only transitions (`channel.acked` → `releaseOutputs`) would get no
 * path at all and their effects would go untested.
 */
export const everyTransition = {
  serializeTransition: (_s: AnyMachineSnapshot, e: EventObject | undefined, prev?: AnyMachineSnapshot) =>
    e && prev ? ` via ${JSON.stringify(e)} from ${JSON.stringify(prev.value)}` : '',
};

/**
 * The full event list for plain `getSimplePaths`/`getShortestPaths`: unlike createTestModel
 * they take `events` as the whole alphabet, so every payload-free type is listed as
 * `{ type }` and types with payloads by their variants.
 */
export function alphabet(eventTypes: readonly string[], variants: readonly EventObject[]): EventObject[] {
  const withPayload = new Set(variants.map((v) => v.type));
  return [...eventTypes.filter((t) => !withPayload.has(t)).map((type) => ({ type })), ...variants];
}

/**
 * Paths over a chart that `invoke`s or has `after` delays, which createTestModel refuses
 * (STYLE §1): plain `getShortestPaths`/`getSimplePaths` with createTestModel's event choice
 * (each state's own event types, with `variants` standing in for types that carry a payload,
 * such as `xstate.done.actor.*` with its output) and `everyTransition`'s vertex key.
 */
export function chartPaths(
  machine: AnyStateMachine,
  opts: { input?: unknown; variants?: readonly EventObject[]; stopWhen?: (s: AnyMachineSnapshot) => boolean; simple?: boolean },
): StatePath<AnyMachineSnapshot, EventObject>[] {
  const variants = opts.variants ?? [];
  const traversal = {
    input: opts.input,
    events: (s: AnyMachineSnapshot) =>
      [...new Set(s._nodes.flatMap((n) => n.ownEvents))].flatMap((type) => {
        const v = variants.filter((e) => e.type === type);
        return v.length ? v : [{ type }];
      }),
    // Simple paths are loop-free over states: keyed by transition too, they would never end.
    serializeState: (s: AnyMachineSnapshot, e: EventObject | undefined, prev?: AnyMachineSnapshot) =>
      serializeSnapshot(s) + (opts.simple ? '' : everyTransition.serializeTransition(s, e, prev)),
    ...(opts.stopWhen ? { stopWhen: opts.stopWhen } : {}),
  };
  return (opts.simple ? getSimplePaths : getShortestPaths)(machine, traversal as never) as StatePath<AnyMachineSnapshot, EventObject>[];
}

/**
 * A promise-like actor (the shape of `fromPromise`) that the test answers by hand, at once:
 * `answer('won')` finishes the oldest pending call with that output, `answer(new Error())`
 * fails it. Started calls and their inputs are kept in `calls`; `onCall` hears of each one
 * with a handle to answer that call alone.
 */
export interface Answerable<TOutput, TInput> {
  /** The actor logic to supply in place of the real call (cast at the `provide` site). */
  logic: AnyActorLogic;
  calls: TInput[];
  /** Calls started and not yet answered (nor stopped with their parent). */
  readonly pending: number;
  answer(value: TOutput | Error): void;
}

export function answerable<TOutput, TInput>(
  onCall?: (input: TInput, call: { answer: (value: TOutput | Error) => void; active: () => boolean }) => void,
): Answerable<TOutput, TInput> {
  type S = Snapshot<TOutput> & { input: TInput; output: TOutput | undefined; error: unknown };
  type E = { type: 'answer'; value: TOutput | Error };
  const pending: ActorRef<S, E>[] = [];
  const calls: TInput[] = [];
  const logic: ActorLogic<S, E, TInput> = {
    getInitialSnapshot: (_scope, input) => ({ status: 'active', output: undefined, error: undefined, input }),
    transition: (s, e) => {
      if (s.status !== 'active') return s;
      // Stopped with its parent (the parent left the state that invoked it), as fromPromise is.
      if ((e as EventObject).type === 'xstate.stop') return { ...s, status: 'stopped' };
      if (e.type !== 'answer') return s;
      return e.value instanceof Error ? { ...s, status: 'error', error: e.value } : { ...s, status: 'done', output: e.value };
    },
    start: (s, { self }) => {
      calls.push(s.input);
      pending.push(self);
      onCall?.(s.input, {
        answer: (value) => self.send({ type: 'answer', value }),
        active: () => self.getSnapshot().status === 'active',
      });
    },
    getPersistedSnapshot: (s) => s,
  };
  return {
    logic: logic as unknown as AnyActorLogic,
    calls,
    get pending(): number {
      return pending.filter((p) => p.getSnapshot().status === 'active').length;
    },
    answer(value: TOutput | Error): void {
      const p = pending.find((r) => r.getSnapshot().status === 'active');
      if (!p) throw new Error('no call waits for an answer');
      p.send({ type: 'answer', value });
    },
  };
}

/** The verdict event a parent chart gets when its invoked arbiter client (id `arbiter`) ends. */
export const ARBITER_DONE = 'xstate.done.actor.arbiter';
export const ARBITER_VERDICTS = [
  { type: ARBITER_DONE, output: { result: 'won' } },
  { type: ARBITER_DONE, output: { result: 'lost' } },
] as const;

/**
 * The world of a chart that claims through the real arbiter-client chart: its test-and-set
 * is faked at the wire and its delays run on a SimulatedClock. A path's verdict step is made
 * to happen the long way: the arbiter is first unreachable (the parent must stay where it is,
 * deciding nothing), the clock moves to the client's retry, and only then the arbiter answers.
 */
export interface ArbiterWorld extends World {
  tas: Answerable<ClaimVerdict, ClaimAttempt>;
  clock: SimulatedClock;
  actors: { arbiterClient: typeof arbiterClientMachine };
}

export function arbiterWorld(retry: ClaimRetry): ArbiterWorld {
  const tas = answerable<ClaimVerdict, ClaimAttempt>();
  const clock = new SimulatedClock();
  return {
    tas,
    clock,
    actors: { arbiterClient: arbiterClientMachine.provide({ actors: { testAndSet: tas.logic as never } }) },
    exec: (event: EventObject, prev: AnyMachineSnapshot, actor: AnyActor): boolean => {
      if (event.type !== ARBITER_DONE) return false;
      const verdict = (event as EventObject & { output: { result: ClaimVerdict } }).output.result;
      const before = tas.calls.length;
      expect(tas.pending, 'a claim is in flight').toBe(1);
      tas.answer(new Error('arbiter: unavailable (fault injected)'));
      expect((actor.getSnapshot() as AnyMachineSnapshot).value, 'unreachable decides nothing').toEqual(prev.value);
      clock.increment(claimRetryDelayMs(retry, 1));
      expect(tas.calls.length, 'the client retried').toBe(before + 1);
      tas.answer(verdict);
      return true;
    },
  };
}
