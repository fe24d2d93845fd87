import { describe, expect, it } from 'vitest';
import { createActor } from 'xstate';
import { backupMachine, type BackupEvent } from '../../machines/backup.machine.js';
import { DEFAULT_CLAIM_RETRY } from '../../machines/arbiter-client.machine.js';
import {
  ARBITER_DONE, ARBITER_VERDICTS, arbiterWorld, chartPaths, count, eventsCovered, eventsHandled, recording, runPaths, type Rule,
} from './harness.js';

const EVENT_TYPES: Record<BackupEvent['type'], true> = {
  'backup.start': true, 'primary.admitted': true, 'primary.refused': true, 'snapshot.loaded': true, 'channel.entries': true, 'replay.advanced': true,
  'channel.failed': true, 'peer.silent': true, 'peer.heard': true, 'suspect.expired': true, 'replay.drained': true, 'primary.ended': true,
  'digest.mismatch': true,
};
/** Sent by no one: the invoked arbiter client's verdict (`onDone`). */
const EVENTS = [...Object.keys(EVENT_TYPES), ARBITER_DONE];
const ACTIONS = ['applyEntries', 'sendAck', 'haltVm', 'drainLog', 'goLive', 'reportDivergence', 'reportRefusal', 'watchPrimary'];
const INPUT = { generation: 0 };
/** The generation the primary's hello names (a joiner's is the live primary's current one). */
const GENERATION = 3;
const START_EVENTS = [
  { type: 'primary.admitted', joining: true, generation: GENERATION },
  { type: 'primary.admitted', joining: false, generation: GENERATION },
] as const;

const verdict = (e: { type: string }) => (e.type === ARBITER_DONE ? (e as unknown as { output: { result: string } }).output.result : undefined);
const VARIANTS = [...START_EVENTS, ...ARBITER_VERDICTS];

// The chart invokes the arbiter client, which createTestModel refuses: plain paths, with the
// client's two verdicts as the `onDone` events, driven through the real client (harness).
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
  // Suspicion alone never makes a second primary: a claim starts only when the
  // suspicion timeout expires (from suspecting) or the channel to the primary broke (it never
  // comes back: a verdict, from any state that follows the primary), and (DESIGN §3
  // Membership) only by a backup the primary admitted that holds a synced state; for the
  // admitted generation. One runs exactly while claiming: leaving (ended, diverged) stops it.
  ({ prev, next, event }) => {
    const following = ['receivingSnapshot', 'replaying', 'suspecting'].some((s) => prev.matches(s));
    const verdict = (prev.matches('suspecting') && event.type === 'suspect.expired') || (following && event.type === 'channel.failed');
    const claims = verdict && prev.context.admitted && prev.context.synced;
    // A verdict without the primary's state gives up: no claim, no VM to halt.
    if (verdict && !claims) expect(next.matches('abandoned')).toBe(true);
    const fresh = world.tas.calls.filter((c) => c.attempt === 1);
    expect(fresh.length - claimsSeen).toBe(claims ? 1 : 0);
    claimsSeen = fresh.length;
    if (claims) expect(fresh.at(-1)?.generation).toBe(GENERATION);
    expect(world.tas.pending).toBe(next.matches('claiming') ? 1 : 0);
    expect(Object.keys(next.children)).toEqual(next.matches('claiming') ? ['arbiter'] : []);
  },
  // Entries are replayed and acked while the primary may still be the primary — and
  // never once the arbiter is won (an ack then could release an output nobody replays).
  ({ prev, event, fired }) => {
    const accepting = ['receivingSnapshot', 'replaying', 'suspecting', 'claiming'].some((s) => prev.matches(s));
    // The replay's progress while acks wait for it is acked by the same rule, applying nothing.
    const expected = !accepting ? [] : event.type === 'channel.entries' ? ['applyEntries', 'sendAck'] : event.type === 'replay.advanced' ? ['sendAck'] : [];
    expect(fired.filter((f) => f === 'applyEntries' || f === 'sendAck')).toEqual(expected);
  },
  // Go-live: drain on winning, go live only after the drain, once, at the next generation.
  ({ prev, next, event, fired, all }) => {
    expect(count(fired, 'drainLog')).toBe(prev.matches('claiming') && verdict(event) === 'won' ? 1 : 0);
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
  const stopWhen = (s: { status: string }) => s.status === 'done';
  const paths = chartPaths(backupMachine, { input: INPUT, variants: VARIANTS, stopWhen });
  const run = { machine: backupMachine, input: INPUT, actions: ACTIONS, eventTypes: EVENTS, rules, world: makeWorld };

  it('drives every shortest path against the real actor and its real arbiter client', () => {
    const { steps } = runPaths({ ...run, paths });
    expect(steps).toBeGreaterThan(40);
  });

  it('drives every simple path (each route to live, halted, finished, diverged)', () => {
    const simple = chartPaths(backupMachine, { input: INPUT, variants: VARIANTS, stopWhen, simple: true });
    const ends = new Set(simple.map((p) => String(p.state.value)));
    for (const end of ['live', 'halted', 'finished', 'diverged', 'abandoned', 'refused', 'unattached']) expect(ends.has(end), end).toBe(true);
    runPaths({ ...run, paths: simple });
  });

  it('exercises every declared event, and handles no undeclared one', () => {
    expect([...eventsCovered(paths)].sort()).toEqual([...EVENTS].sort());
    expect([...eventsHandled(backupMachine)].sort()).toEqual([...EVENTS].sort());
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
    expect(b.getSnapshot().children).toEqual({});
  });

  it('takes a broken channel as a verdict: a member claims at once, a joiner without its snapshot gives up', () => {
    const { machine, fired } = recording(backupMachine, ACTIONS);
    const w = makeWorld();
    const b = createActor(machine.provide({ actors: w.actors }), { input: INPUT, clock: w.clock }).start();
    b.send({ type: 'backup.start' });
    b.send({ type: 'primary.admitted', joining: false, generation: GENERATION });
    b.send({ type: 'channel.failed' });
    expect(b.getSnapshot().value).toBe('claiming');
    expect(w.tas.calls.map((c) => c.generation)).toEqual([GENERATION]);
    // Heard again (a beat that was on its way) changes nothing: the claim stands.
    b.send({ type: 'peer.heard' });
    expect(b.getSnapshot().value).toBe('claiming');
    expect(fired).toEqual(['watchPrimary']);
    // Silent first, then broken: the claim does not wait for the confirmation.
    const s = createActor(machine.provide({ actors: w.actors }), { input: INPUT, clock: w.clock }).start();
    s.send({ type: 'backup.start' });
    s.send({ type: 'primary.admitted', joining: false, generation: GENERATION });
    s.send({ type: 'peer.silent' });
    s.send({ type: 'channel.failed' });
    expect(s.getSnapshot().value).toBe('claiming');
    // A joiner whose channel breaks before the snapshot arrived has nothing to take over with.
    const j = createActor(machine.provide({ actors: w.actors }), { input: INPUT, clock: w.clock }).start();
    j.send({ type: 'backup.start' });
    j.send({ type: 'primary.admitted', joining: true, generation: GENERATION });
    j.send({ type: 'channel.failed' });
    expect(j.getSnapshot().value).toBe('abandoned');
    expect(w.tas.calls.length).toBe(2);
  });
});
