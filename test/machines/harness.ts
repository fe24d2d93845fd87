// Shared driver for the model-based chart tests (DESIGN §6): xstate/graph enumerates
// paths over a chart, and every path is replayed against a *real* actor of the same
// chart whose effects are recording fakes. After every step the actor's snapshot must
// equal the model's, and per-chart rules check which effects fired.
import { createActor, type AnyMachineSnapshot, type AnyStateMachine, type EventObject } from 'xstate';
import type { StatePath } from 'xstate/graph';
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
    const { machine, fired } = recording(run.machine, run.actions);
    const actor = createActor(machine, { input: run.input } as never);
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
      actor.send(step.event as never);
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
