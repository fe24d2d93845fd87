import { describe, expect, it } from 'vitest';
import { createActor } from 'xstate';
import { createTestModel, getSimplePaths } from 'xstate/graph';
import { pairMachine, type PairEvent } from '../../machines/pair.machine.js';
import { count, eventsCovered, eventsHandled, everyTransition, recording, runPaths, type Rule } from './harness.js';

const EVENT_TYPES: Record<PairEvent['type'], true> = {
  'pair.started': true, 'pair.primaryDied': true, 'pair.backupDied': true, 'pair.backupDiverged': true,
  'fault.killPrimary': true, 'fault.killBackup': true, 'fault.cutChannel': true, 'fault.corruptBackup': true,
  'pair.backupLive': true, 'pair.primaryAlone': true, 'pair.addBackup': true, 'pair.backupCaughtUp': true,
  'pair.guestExited': true, 'pair.stop': true,
};
const ACTIONS = ['announceFailover', 'startBackup', 'reportSplitBrain', 'crashPrimary', 'crashBackup', 'cutChannel', 'corruptBackup', 'refuseRequest'];
const INPUT = { generation: 0 };
const WINNERS = new Set(['pair.backupLive', 'pair.primaryAlone']);

const model = createTestModel(pairMachine, {
  ...everyTransition,
  input: INPUT,
  stopWhen: (s) => s.status === 'done' || s.context.generation >= 2,
});

/** The effect each operator request has where the chart takes it. */
const TAKEN: Record<string, string> = {
  'fault.killPrimary': 'crashPrimary', 'fault.killBackup': 'crashBackup', 'fault.cutChannel': 'cutChannel',
  'fault.corruptBackup': 'corruptBackup', 'pair.addBackup': 'startBackup',
};

const rules: Rule[] = [
  // Every operator request is either carried out (its effect, once) or refused (said so, once).
  ({ event, fired }) => {
    const effect = TAKEN[event.type];
    if (!effect) return expect(count(fired, 'refuseRequest')).toBe(0);
    expect(count(fired, effect) + count(fired, 'refuseRequest')).toBe(1);
  },
  // Each failover has exactly one winner: announced once, and the generation advances
  // once, exactly when a claimant leaves failingOver as the live primary, or wins while the
  // pair looked protected (a starved replica declared dead by the other).
  ({ prev, next, event, fired }) => {
    const won = (prev.matches('failingOver') || prev.matches('protected') && WINNERS.has(event.type)) && (next.matches('unprotected') || next.matches('reprotecting'));
    if (won) expect(WINNERS.has(event.type)).toBe(true);
    expect(count(fired, 'announceFailover')).toBe(won ? 1 : 0);
    expect(next.context.generation).toBe(prev.context.generation + (won ? 1 : 0));
  },
  // A killed replica never wins: after the primary died only the backup can be live,
  // and after the backup died only the primary.
  ({ prev, event, next }) => {
    if (prev.matches({ failingOver: 'toBackup' }) && event.type === 'pair.primaryAlone') expect(next.value).toEqual(prev.value);
    if (prev.matches({ failingOver: 'toPrimary' }) && event.type === 'pair.backupLive') expect(next.value).toEqual(prev.value);
  },
  // A second live replica is reported at once (DESIGN §6: never two live primaries).
  ({ prev, event, fired }) => {
    expect(count(fired, 'reportSplitBrain')).toBe(prev.matches('unprotected') && WINNERS.has(event.type) ? 1 : 0);
  },
  ({ prev, next, event, fired }) => {
    expect(count(fired, 'startBackup')).toBe(prev.matches('unprotected') && event.type === 'pair.addBackup' || next.matches('reprotecting') && prev.context.rebuild ? 1 : 0);
  },
];

describe('pair chart', () => {
  const paths = model.getShortestPaths();

  it('drives every shortest path against the real actor', () => {
    const { steps } = runPaths({ machine: pairMachine, input: INPUT, paths, actions: ACTIONS, eventTypes: Object.keys(EVENT_TYPES), rules });
    expect(steps).toBeGreaterThan(40);
  });

  it('drives every simple path of one protect–fail–reprotect cycle', () => {
    const simple = getSimplePaths(pairMachine, { input: INPUT, stopWhen: (s) => s.status === 'done' || s.context.generation >= 1 });
    expect(simple.length).toBeGreaterThan(10);
    runPaths({ machine: pairMachine, input: INPUT, paths: simple, actions: ACTIONS, eventTypes: Object.keys(EVENT_TYPES), rules });
  });

  it('exercises every declared event, and handles no undeclared one', () => {
    expect([...eventsCovered(paths)].sort()).toEqual(Object.keys(EVENT_TYPES).sort());
    expect([...eventsHandled(pairMachine)].sort()).toEqual(Object.keys(EVENT_TYPES).sort());
  });

  it('accepts exactly one winner of a partition', () => {
    for (const [first, second] of [['pair.backupLive', 'pair.primaryAlone'], ['pair.primaryAlone', 'pair.backupLive']] as const) {
      const { machine, fired } = recording(pairMachine, ACTIONS);
      const p = createActor(machine, { input: INPUT }).start();
      p.send({ type: 'pair.started' });
      p.send({ type: 'fault.cutChannel' });
      p.send({ type: first });
      expect(p.getSnapshot().value).toBe('unprotected');
      expect(p.getSnapshot().context.generation).toBe(1);
      p.send({ type: second });
      expect(p.getSnapshot().value).toBe('splitBrain');
      expect(fired).toEqual(['cutChannel', 'announceFailover', 'reportSplitBrain']);
    }
  });

  it('re-protects under the advanced generation and can fail over again', () => {
    const { machine, fired } = recording(pairMachine, ACTIONS);
    const p = createActor(machine, { input: INPUT }).start();
    const script: PairEvent['type'][] = [
      'pair.started', 'pair.primaryDied', 'pair.backupLive', 'pair.addBackup', 'pair.backupCaughtUp',
      'pair.backupDied', 'pair.primaryAlone', 'pair.guestExited',
    ];
    for (const type of script) p.send({ type });
    expect(p.getSnapshot().value).toBe('finished');
    expect(p.getSnapshot().context.generation).toBe(2);
    expect(fired).toEqual(['announceFailover', 'startBackup', 'announceFailover']);
  });
});
