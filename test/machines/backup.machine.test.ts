import { describe, expect, it } from 'vitest';
import { createActor } from 'xstate';
import { createTestModel, getSimplePaths } from 'xstate/graph';
import { backupMachine, type BackupEvent } from '../../machines/backup.machine.js';
import { alphabet, count, eventsCovered, eventsHandled, everyTransition, recording, runPaths, type Rule } from './harness.js';

const EVENT_TYPES: Record<BackupEvent['type'], true> = {
  'backup.start': true, 'primary.admitted': true, 'primary.refused': true, 'snapshot.loaded': true, 'channel.entries': true, 'channel.failed': true,
  'peer.silent': true, 'peer.heard': true, 'suspect.expired': true, 'arbiter.won': true,
  'arbiter.lost': true, 'arbiter.unreachable': true, 'replay.drained': true, 'primary.ended': true,
  'digest.mismatch': true,
};
const ACTIONS = ['applyEntries', 'sendAck', 'claimArbiter', 'retryClaim', 'haltVm', 'drainLog', 'goLive', 'reportDivergence', 'reportRefusal', 'watchPrimary'];
const INPUT = { generation: 0 };
/** The generation the primary's hello names (a joiner's is the live primary's current one). */
const GENERATION = 3;
const START_EVENTS = [
  { type: 'primary.admitted', joining: true, generation: GENERATION },
  { type: 'primary.admitted', joining: false, generation: GENERATION },
] as const;

const model = createTestModel(backupMachine, {
  ...everyTransition,
  input: INPUT,
  events: [...START_EVENTS],
  stopWhen: (s) => s.status === 'done',
});

const rules: Rule[] = [
  // DESIGN §3 Split brain: the VM halts exactly when the arbiter was lost.
  ({ prev, event, fired }) => {
    expect(count(fired, 'haltVm')).toBe(prev.matches('claiming') && event.type === 'arbiter.lost' ? 1 : 0);
  },
  // Suspicion alone never makes a second primary: a claim starts only when the
  // suspicion timeout expires, only from suspecting, and (DESIGN §3 Membership) only by a
  // backup the primary admitted that holds a synced state.
  ({ prev, event, fired }) => {
    const claims = prev.matches('suspecting') && event.type === 'suspect.expired' && prev.context.admitted && prev.context.synced;
    expect(count(fired, 'claimArbiter')).toBe(claims ? 1 : 0);
    if (count(fired, 'retryClaim')) expect(prev.matches('claiming') && event.type === 'arbiter.unreachable').toBe(true);
  },
  // Entries are replayed and acked while the primary may still be the primary — and
  // never once the arbiter is won (an ack then could release an output nobody replays).
  ({ prev, event, fired }) => {
    const accepting = ['receivingSnapshot', 'replaying', 'suspecting', 'claiming'].some((s) => prev.matches(s));
    const expected = event.type === 'channel.entries' && accepting ? ['applyEntries', 'sendAck'] : [];
    expect(fired.filter((f) => f === 'applyEntries' || f === 'sendAck')).toEqual(expected);
  },
  // Go-live: drain on winning, go live only after the drain, once, at the next generation.
  ({ prev, next, event, fired, all }) => {
    expect(count(fired, 'drainLog')).toBe(prev.matches('claiming') && event.type === 'arbiter.won' ? 1 : 0);
    const live = prev.matches('goingLive') && event.type === 'replay.drained';
    expect(count(fired, 'goLive')).toBe(live ? 1 : 0);
    if (live) expect(all.indexOf('drainLog')).toBeLessThan(all.indexOf('goLive'));
    expect(next.context.generation).toBe(next.context.admitted ? GENERATION + (next.matches('live') ? 1 : 0) : INPUT.generation);
    expect(count(all, 'goLive')).toBeLessThanOrEqual(1);
    if (count(all, 'haltVm')) expect(count(all, 'goLive')).toBe(0);
  },
  // DESIGN §3 Membership: a backup turned away says why, once, and never runs or claims;
  // the primary's watch starts exactly when it is admitted.
  ({ prev, next, event, fired, all }) => {
    expect(count(fired, 'reportRefusal')).toBe(next.matches('refused') && !prev.matches('refused') ? 1 : 0);
    if (count(all, 'reportRefusal')) expect(all.filter((a) => a !== 'reportRefusal')).toEqual([]);
    expect(count(fired, 'watchPrimary')).toBe(prev.matches('handshaking') && event.type === 'primary.admitted' ? 1 : 0);
    if (!next.context.admitted) expect(['idle', 'handshaking', 'refused', 'unattached'].some((s) => next.matches(s))).toBe(true);
  },
  // DESIGN §3 Divergence: reported at once, and a diverged backup never goes live.
  ({ prev, next, fired }) => {
    expect(count(fired, 'reportDivergence')).toBe(next.matches('diverged') && !prev.matches('diverged') ? 1 : 0);
  },
];

describe('backup chart', () => {
  const paths = model.getShortestPaths();

  it('drives every shortest path against the real actor', () => {
    const { steps } = runPaths({ machine: backupMachine, input: INPUT, paths, actions: ACTIONS, eventTypes: Object.keys(EVENT_TYPES), rules });
    expect(steps).toBeGreaterThan(40);
  });

  it('drives every simple path (each route to live, halted, finished, diverged)', () => {
    const simple = getSimplePaths(backupMachine, {
      input: INPUT,
      events: alphabet(Object.keys(EVENT_TYPES), START_EVENTS) as BackupEvent[],
    });
    const ends = new Set(simple.map((p) => String(p.state.value)));
    for (const end of ['live', 'halted', 'finished', 'diverged', 'abandoned', 'refused', 'unattached']) expect(ends.has(end), end).toBe(true);
    runPaths({ machine: backupMachine, input: INPUT, paths: simple, actions: ACTIONS, eventTypes: Object.keys(EVENT_TYPES), rules });
  });

  it('exercises every declared event, and handles no undeclared one', () => {
    expect([...eventsCovered(paths)].sort()).toEqual(Object.keys(EVENT_TYPES).sort());
    expect([...eventsHandled(backupMachine)].sort()).toEqual(Object.keys(EVENT_TYPES).sort());
  });

  it('starts from a snapshot when joining, and from boot otherwise', () => {
    for (const joining of [true, false]) {
      const b = createActor(recording(backupMachine, ACTIONS).machine, { input: INPUT }).start();
      b.send({ type: 'backup.start' });
      b.send({ type: 'primary.admitted', joining, generation: GENERATION });
      expect(b.getSnapshot().value).toBe(joining ? 'receivingSnapshot' : 'replaying');
    }
  });

  it('never claims unless admitted and synced', () => {
    // Refused (an extra backup, another image): it ends without running or claiming.
    const { machine, fired } = recording(backupMachine, ACTIONS);
    const r = createActor(machine, { input: INPUT }).start();
    r.send({ type: 'backup.start' });
    for (const type of ['peer.silent', 'suspect.expired'] as const) r.send({ type });
    expect(r.getSnapshot().value).toBe('handshaking');
    r.send({ type: 'primary.refused' });
    expect(r.getSnapshot().value).toBe('refused');
    expect(fired).toEqual(['reportRefusal']);
    // A joiner whose primary goes silent before the snapshot arrived suspects, but abandons.
    const j = recording(backupMachine, ACTIONS);
    const b = createActor(j.machine, { input: INPUT }).start();
    b.send({ type: 'backup.start' });
    b.send({ type: 'primary.admitted', joining: true, generation: GENERATION });
    b.send({ type: 'peer.silent' });
    expect(b.getSnapshot().value).toBe('suspecting');
    b.send({ type: 'suspect.expired' });
    expect(b.getSnapshot().value).toBe('abandoned');
    expect(j.fired).not.toContain('claimArbiter');
  });

  it('treats a broken channel while replaying as suspicion, not as a verdict', () => {
    const { machine, fired } = recording(backupMachine, ACTIONS);
    const b = createActor(machine, { input: INPUT }).start();
    b.send({ type: 'backup.start' });
    b.send({ type: 'primary.admitted', joining: false, generation: GENERATION });
    b.send({ type: 'channel.failed' });
    expect(b.getSnapshot().value).toBe('suspecting');
    expect(fired).toEqual(['watchPrimary']);
    b.send({ type: 'peer.heard' });
    expect(b.getSnapshot().value).toBe('replaying');
  });
});
