import { describe, expect, it } from 'vitest';
import { createActor } from 'xstate';
import { createTestModel } from 'xstate/graph';
import { cpuMachine, type BatchExit, type CpuEvent, type CpuMode } from '../../machines/cpu.machine.js';
import { count, eventsCovered, eventsHandled, everyTransition, recording, runPaths, type Rule } from './harness.js';

// Exhaustive by type: adding an event to CpuEvent without listing it here fails tsc.
const EVENT_TYPES: Record<CpuEvent['type'], true> = {
  'cpu.start': true, 'cpu.pause': true, 'cpu.resume': true, 'cpu.runUntil': true,
  'cpu.batchEnded': true, 'cpu.inputDelivered': true, 'cpu.envFailed': true, 'cpu.takeover': true, 'cpu.stop': true,
};
const ACTIONS = ['scheduleBatch', 'setRunTarget', 'awaitInput', 'swapToLiveEnv', 'reportHalt', 'reportFault'];
const MODES: CpuMode[] = ['live', 'record', 'replay'];
const EXITS: BatchExit[] = ['budget', 'request', 'wfi', 'halt', 'fault', 'target', 'horizon'];

const model = createTestModel(cpuMachine, {
  ...everyTransition,
  events: [
    ...MODES.map((mode) => ({ type: 'cpu.start', mode }) as const),
    ...EXITS.map((exit) => ({ type: 'cpu.batchEnded', exit }) as const),
    { type: 'cpu.runUntil', icount: 1_000 },
    { type: 'cpu.takeover', mode: 'live' },
    { type: 'cpu.takeover', mode: 'record' },
  ],
});

const rules: Rule[] = [
  // Batches start exactly when the CPU (re-)enters a running state: never two in flight,
  // never one while paused or waiting (DESIGN §4: batches, not events per insn).
  ({ next, fired }) => {
    const runs = next.matches('running') || next.matches('runningUntil');
    expect(count(fired, 'scheduleBatch')).toBeLessThanOrEqual(1);
    if (count(fired, 'scheduleBatch') === 1) expect(runs).toBe(true);
  },
  ({ prev, next, event, fired }) => {
    const ended = event.type === 'cpu.batchEnded' ? (event as unknown as { exit: BatchExit }).exit : undefined;
    const running = prev.matches('running') || prev.matches('runningUntil');
    // A batch that ran out or was cut short leaves the CPU where it was, with no effect: the
    // runner starts the next batch because the chart is still running (runtime/cpu-actor.ts).
    if (running && (ended === 'budget' || ended === 'request')) {
      expect(next.value).toBe(prev.value);
      expect(fired).toEqual([]);
    }
    // Under replay a wfi is a no-op on the way to a target; live it sleeps.
    if (prev.matches('runningUntil') && ended === 'wfi') expect(next.value).toBe(prev.context.mode === 'replay' ? 'runningUntil' : 'waitingUntil');
    // The halt and fault of a batch are never lost, even if a pause raced with them.
    const alive = running || prev.matches('paused');
    if (alive && ended === 'halt') expect(next.value).toBe('halted');
    if (alive && ended === 'fault') expect(next.value).toBe('faulted');
    expect(count(fired, 'reportHalt')).toBe(next.matches('halted') && !prev.matches('halted') ? 1 : 0);
    expect(count(fired, 'reportFault')).toBe(next.matches('faulted') && !prev.matches('faulted') ? 1 : 0);
  },
  // Go-live swaps the env only from replay, only when paused at a batch boundary, and the
  // mode becomes the takeover's (live, or record for a future backup) in the same step.
  ({ prev, next, event, fired }) => {
    const swapped = count(fired, 'swapToLiveEnv');
    if (swapped) {
      expect(prev.context.mode).toBe('replay');
      expect(prev.value).toBe('paused');
      expect(next.context.mode).toBe((event as unknown as { mode: string }).mode);
      expect(next.value).toBe('running');
    }
    if (next.context.mode !== prev.context.mode && prev.value !== 'stopped') {
      expect(swapped).toBe(1);
    }
  },
  ({ next, fired }) => {
    if (count(fired, 'awaitInput')) expect(['waitingForInterrupt', 'waitingUntil']).toContain(next.value);
  },
  // A replay at the end of its log waits; it never spins on empty batches.
  ({ event, next }) => {
    if (event.type === 'cpu.batchEnded' && (event as unknown as { exit: BatchExit }).exit === 'horizon') {
      expect(['waitingForInterrupt', 'waitingUntil', 'paused']).toContain(next.value);
    }
  },
  ({ event, fired }) => {
    if (count(fired, 'setRunTarget')) expect(event.type).toBe('cpu.runUntil');
  },
];

describe('cpu chart', () => {
  const paths = model.getShortestPaths();

  it('drives every shortest path against the real actor', () => {
    const { steps } = runPaths({
      machine: cpuMachine, paths, actions: ACTIONS, eventTypes: Object.keys(EVENT_TYPES), rules,
    });
    expect(steps).toBeGreaterThan(30);
  });

  it('exercises every declared event, and handles no undeclared one', () => {
    expect([...eventsCovered(paths)].sort()).toEqual(Object.keys(EVENT_TYPES).sort());
    expect([...eventsHandled(cpuMachine)].sort()).toEqual(Object.keys(EVENT_TYPES).sort());
  });

  it('reaches every state in every mode it can have', () => {
    const reached = new Set(paths.flatMap((p) => p.steps.map((s) => `${String(s.state.value)}/${s.state.context.mode}`)));
    for (const mode of MODES) {
      for (const s of ['running', 'paused', 'waitingForInterrupt', 'runningUntil', 'waitingUntil', 'halted', 'faulted']) {
        expect(reached.has(`${s}/${mode}`), `${s}/${mode}`).toBe(true);
      }
    }
  });

  it('takes over only in replay mode (go-live of a backup)', () => {
    for (const mode of MODES) {
      const { machine, fired } = recording(cpuMachine, ACTIONS);
      const cpu = createActor(machine).start();
      cpu.send({ type: 'cpu.start', mode });
      cpu.send({ type: 'cpu.runUntil', icount: 5_000 });
      cpu.send({ type: 'cpu.batchEnded', exit: 'target' });
      expect(cpu.getSnapshot().value).toBe('paused');
      cpu.send({ type: 'cpu.takeover', mode: 'record' });
      const s = cpu.getSnapshot();
      if (mode === 'replay') {
        expect(s.value).toBe('running');
        expect(s.context.mode).toBe('record');
        expect(count(fired, 'swapToLiveEnv')).toBe(1);
      } else {
        expect(s.value).toBe('paused');
        expect(s.context.mode).toBe(mode);
        expect(count(fired, 'swapToLiveEnv')).toBe(0);
      }
    }
  });

  it('throws on an unwired effect so forgotten wiring fails loudly', () => {
    const cpu = createActor(cpuMachine);
    const errors: unknown[] = [];
    cpu.subscribe({ error: (e) => errors.push(e) });
    cpu.start();
    cpu.send({ type: 'cpu.start', mode: 'live' });
    expect(String(errors[0])).toMatch(/scheduleBatch: not provided/);
  });
});
