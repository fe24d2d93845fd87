// The primary chart's paths, each driven on a real PrimaryNode: a real machine running the seq
// guest under its CPU chart, the node's real output gate, log and arbiter client. Only the wire
// is faked: the backup's end of the logging channel (acks, pressure, failure, silence, played
// by the test) and the arbiter's store. Each step makes its event happen the way the product
// would meet it (an ack arrives, the backup goes quiet, the arbiter answers) and then checks
// what the product shows: outputs released or held, the CPU paused or running, the claim on
// record, the node's exit. The chart's own value is compared too, but only as a guide.
import { describe, expect, it } from 'vitest';
import { createActor, type AnyMachineSnapshot, type EventObject } from 'xstate';
import { primaryMachine, type PrimaryEvent, type PrimaryStart } from '../../machines/primary.machine.js';
import { DEFAULT_CLAIM_RETRY } from '../../machines/arbiter-client.machine.js';
import { PrimaryNode } from '../../runtime/ft/primary-node.js';
import { Machine } from '../../runtime/machine.js';
import { LiveEnv } from '../../runtime/env/live.js';
import type { ReleasedOutput } from '../../runtime/ft/output-gate.js';
import type { RunOutcome } from '../../runtime/runner.js';
import { ARBITER_DONE, ARBITER_VERDICTS, arbiterWorld, chartPaths, eventsCovered, eventsHandled, recording } from './harness.js';
import { image } from '../helpers/boot.js';
import { RecordingArbiter, sleep, waitFor, Wire } from './node-world.js';

const EVENT_TYPES: Record<PrimaryEvent['type'], true> = {
  'backup.joined': true, 'backup.caughtUp': true, 'channel.acked': true, 'channel.highWater': true,
  'channel.lowWater': true, 'channel.failed': true, 'peer.silent': true, 'peer.heard': true,
  'suspect.expired': true, 'vm.halted': true,
};
/** Sent by no one: the invoked arbiter client's verdict (`onDone`). */
const EVENTS = [...Object.keys(EVENT_TYPES), ARBITER_DONE];
const TIMING = { suspectMs: 60, confirmMs: 100, heartbeatMs: 5, digestEveryMs: 50 };
const PAIR = 'mt';

type Step = { event: EventObject; state: AnyMachineSnapshot };
const verdictOf = (e: EventObject) => (e as EventObject & { output: { result: 'won' | 'lost' } }).output.result;
/**
 * A guest only powers off through the output rule (its power-off is an output): a real node
 * halts only where acks can release it, or alone. Elsewhere the chart's `vm.halted` is a road
 * no real primary takes (it would wait for its backup or its claim first).
 */
const canHalt = (s: AnyMachineSnapshot) => s.matches({ protected: 'flowing' }) || s.matches('protecting') || s.matches('alone');

/**
 * Acknowledge everything the wire received, and then what the node sent in answer: the ack
 * clock (PrimaryNode) holds markers while two sent ones are unacknowledged and sends them when
 * an ack arrives (on this synchronous wire, inside `ackAll`), so one ack leaves them held.
 */
const ackThrough = (w: Wire): void => {
  for (let n = -1; n !== w.received.length; ) {
    n = w.received.length;
    w.ackAll();
  }
};

/** Paths whose guest really powered off, and all its outputs left. */
let halts = 0;

/** Drive one path on a fresh real node; returns a reason if the path is not a real node's road. */
async function drive(start: PrimaryStart, steps: Step[]): Promise<string | undefined> {
  const label = `${start}: ${steps.map((s) => s.event.type).join(' → ')}`;
  const halting = steps.at(-1)!.event.type === 'vm.halted';
  const machine = new Machine({ env: new LiveEnv() });
  machine.loadElf(image(halting ? 'seq-short' : 'seq'));
  const arbiter = new RecordingArbiter();
  let wire = start === 'paired' ? new Wire() : undefined;
  const wires: Wire[] = wire ? [wire] : [];
  // A lost verdict: another replica holds the key before this node asks for it.
  const firstVerdict = steps.find((s) => s.event.type === ARBITER_DONE);
  if (start === 'alone' && firstVerdict && verdictOf(firstVerdict.event) === 'lost') await arbiter.inner.testAndSet(PAIR, 1, 'rival');
  const node = new PrimaryNode({
    name: 'p', pairId: PAIR, generation: 1, machine, arbiter, timing: TIMING,
    ...(wire ? { channel: wire } : { startAlone: true }),
  });
  const released: ReleasedOutput[] = [];
  node.released$.subscribe((o) => released.push(o));
  let outcome: RunOutcome | undefined;
  const run = node.run().then((o) => (outcome = o));
  let silentSince = 0;
  const icountMoves = async (ms: number) => {
    const at = machine.icount;
    await sleep(ms);
    return machine.icount !== at;
  };
  try {
    for (let i = 1; i < steps.length; i++) {
      const { event, state: next } = steps[i]!;
      const prev = steps[i - 1]!.state;
      const at = `${label} at step ${i} (${event.type})`;
      const g = prev.context.generation as number;
      switch (event.type) {
        case 'backup.joined': {
          const heldBefore = released.length;
          wire = new Wire();
          wires.push(wire);
          node.attachBackup(wire);
          // Re-protection streams the machine first, then the output count to go on from.
          expect(wire.received[0]?.type, at).toBe('snapshot');
          expect(wire.received[1]?.type, at).toBe('output');
          // No longer alone: new outputs wait for the new backup's acks.
          expect(await waitFor(() => node.stats().held > 0, 2000), at).toBe(true);
          expect(released.length, at).toBe(heldBefore);
          break;
        }
        case 'backup.caughtUp':
          wire!.ack(wire!.received[0]!.seq);
          break;
        case 'channel.acked':
          // A throttled VM produces nothing new; what it held before the pause is there.
          expect(await waitFor(() => node.stats().held > 0, 2000), `${at}: an output is held`).toBe(true);
          ackThrough(wire!);
          // Output rule: an ack from a trusted backup releases everything it covers, at once.
          expect(node.stats().held, at).toBe(0);
          break;
        case 'channel.highWater':
          expect(await waitFor(() => node.stats().held > 0, 2000), `${at}: an output is held`).toBe(true);
          wire!.highWater(true);
          await sleep(20);
          // Flow control: the VM stops while the backup lags.
          expect(await icountMoves(40), at).toBe(false);
          expect(node.stats().paused, at).toBe(true);
          break;
        case 'channel.lowWater':
          wire!.highWater(false);
          expect(await icountMoves(40), at).toBe(true);
          break;
        case 'channel.failed': {
          const verdict = steps[i + 1]?.event.type === ARBITER_DONE ? verdictOf(steps[i + 1]!.event) : undefined;
          if (verdict === 'lost') await arbiter.inner.testAndSet(PAIR, g, 'rival');
          const before = released.length;
          const failedAt = performance.now();
          wire!.fail();
          // A broken channel is a verdict: the claim goes out at once, not a confirmation later.
          const mine = () => arbiter.claims.find((c) => c.claimant === 'p' && c.generation === g);
          expect(await waitFor(() => mine() !== undefined, 2000), `${at}: a claim of generation ${g}`).toBe(true);
          expect(mine()!.atMs - failedAt, `${at}: claimed without waiting for a confirmation`).toBeLessThan(TIMING.confirmMs);
          // Until the arbiter answers the VM runs on (a throttled one too) and releases nothing.
          expect((await icountMoves(30)) || machine.hart.haltCode !== undefined, at).toBe(true);
          expect(released.length, at).toBe(before);
          break;
        }
        case 'peer.silent': {
          wire!.alive(false);
          silentSince = performance.now();
          const before = released.length;
          // Suspected after suspectMs and one more event-loop turn (the second look); a busy
          // host delays timers, so wait for it: the claim comes only confirmMs after it.
          await waitFor(() => node.actor.getSnapshot().matches('backupSuspect'), 1000);
          expect(released.length, at).toBe(before);
          expect(arbiter.claims.filter((c) => c.claimant === 'p' && c.generation === g), `${at}: suspicion alone claims nothing`).toEqual([]);
          break;
        }
        case 'peer.heard':
          wire!.alive(true);
          wire!.ackAll();
          await sleep(5);
          // Trusted again: acks release outputs, and the suspicion never becomes a claim.
          ackThrough(wire!);
          expect(node.stats().held, at).toBe(0);
          await sleep(TIMING.confirmMs);
          expect(arbiter.claims.filter((c) => c.claimant === 'p' && c.generation === g), at).toEqual([]);
          break;
        case 'suspect.expired': {
          const verdict = steps[i + 1]?.event.type === ARBITER_DONE ? verdictOf(steps[i + 1]!.event) : undefined;
          if (verdict === 'lost') await arbiter.inner.testAndSet(PAIR, g, 'rival');
          const mine = () => arbiter.claims.find((c) => c.claimant === 'p' && c.generation === g);
          expect(await waitFor(() => mine() !== undefined, 2000), `${at}: a claim of generation ${g}`).toBe(true);
          // Only a confirmed silence claims (DESIGN §3 Failure detection).
          expect(mine()!.atMs - silentSince, at).toBeGreaterThanOrEqual(TIMING.confirmMs - 5);
          // Until the arbiter answers, nothing leaves: outputs pile up held, the VM runs on.
          const before = released.length;
          // NOTE a short guest may already have powered off (its power-off is an output, held
          // like the rest); only then may its icount stand still.
          expect((await icountMoves(20)) || machine.hart.haltCode !== undefined, at).toBe(true);
          expect(released.length, at).toBe(before);
          break;
        }
        case ARBITER_DONE: {
          const verdict = verdictOf(event);
          expect(await waitFor(() => arbiter.inFlight === 1, 2000), `${at}: one claim in flight`).toBe(true);
          arbiter.answer();
          expect(await waitFor(() => arbiter.claims.some((c) => c.claimant === 'p' && c.generation === g && c.verdict), 2000), at).toBe(true);
          expect(await arbiter.holder(PAIR, g), at).toBe(verdict === 'won' ? 'p' : 'rival');
          if (verdict === 'won') {
            // Alone: everything held is out, the channel to the old backup is closed, and
            // new outputs leave directly, labelled with the generation after the one won.
            expect(await waitFor(() => node.stats().held === 0, 1000), at).toBe(true);
            for (const w of wires) expect(w.closed, at).toBe(true);
            const from = released.length;
            expect(await waitFor(() => released.length > from + 2, 3000), `${at}: outputs flow without a backup`).toBe(true);
            expect(released.slice(from).every((o) => o.generation === g + 1), at).toBe(true);
          } else {
            // Lost: this VM stops for good and never releases another output.
            expect(await waitFor(() => outcome !== undefined, 2000), `${at}: the node stops`).toBe(true);
            const n = released.length;
            await sleep(30);
            expect(released.length, at).toBe(n);
            expect(node.stats().held, at).toBeGreaterThanOrEqual(0);
          }
          break;
        }
        case 'vm.halted': {
          if (!canHalt(prev)) return `${at}: not a real node's road`;
          // Keep the backup acking until the guest's last output (its power-off) is out.
          const acking = setInterval(() => wire?.closed === false && wire.ackAll(), 5);
          try {
            expect(await waitFor(() => outcome !== undefined, 60_000), `${at}: the guest exits`).toBe(true);
          } finally {
            clearInterval(acking);
          }
          expect(outcome!.reason, at).toBe('halt');
          expect(outcome!.code, at).toBe(0);
          expect(released.length, `${at}: every output released`).toBe(node.stats().outputs);
          expect(released.at(-1)?.output.kind, at).toBe('power');
          halts++;
          if (!prev.matches('alone')) expect(wire!.received.some((e) => e.type === 'end'), at).toBe(true);
          break;
        }
        default:
          throw new Error(`${at}: no way to make ${event.type} happen`);
      }
      // The chart's value, a guide only: the product checks above are the test. NOTE acks are
      // cumulative, so an ack while `protecting` covers the snapshot too: the real node takes
      // `backup.caughtUp` right after it.
      const acked = event.type === 'channel.acked' || event.type === 'peer.heard';
      const further = acked && next.matches('protecting') ? { protected: 'flowing' } : undefined;
      expect(node.actor.getSnapshot().value, at).toEqual(further ?? next.value);
    }
    return undefined;
  } finally {
    if (!outcome) node.crash('path done');
    await run;
    for (const w of wires) w.alive(false);
  }
}

/** One shortest path per transition (state value, event), as in the real-pair model test. */
function byTransition(paths: { steps: Step[] }[]): Step[][] {
  const best = new Map<string, Step[]>();
  for (const p of paths) {
    p.steps.forEach((st, k) => {
      if (k === 0) return;
      const e = st.event.type === ARBITER_DONE ? `${st.event.type}:${verdictOf(st.event)}` : st.event.type;
      const key = `${JSON.stringify(p.steps[k - 1]!.state.value)} ${e}`;
      const seen = best.get(key);
      if (!seen || k + 1 < seen.length) best.set(key, p.steps.slice(0, k + 1));
    });
  }
  return [...best.values()];
}

describe('primary chart on a real PrimaryNode', () => {
  // Generation grows with every won claim: one failover (two from `alone`, which starts with one)
  // shows every transition. A final state ends the node, so traversal stops there too.
  const stopAt = (g: number) => (s: AnyMachineSnapshot) => s.status === 'done' || s.context.generation >= g;
  const roads = {
    paired: byTransition(chartPaths(primaryMachine, { input: { generation: 1, start: 'paired' }, variants: ARBITER_VERDICTS, stopWhen: stopAt(2) })),
    alone: byTransition(chartPaths(primaryMachine, { input: { generation: 1, start: 'alone' }, variants: ARBITER_VERDICTS, stopWhen: stopAt(3) })),
  };

  for (const start of ['paired', 'alone'] as const) {
    it(`follows every transition from the ${start} start on a real node`, { timeout: 240_000 }, async () => {
      const skipped: string[] = [];
      halts = 0;
      for (const steps of roads[start]) {
        const why = await drive(start, steps);
        if (why) skipped.push(why);
      }
      expect(roads[start].length).toBeGreaterThan(10);
      // Only `vm.halted` where outputs cannot drain is no real node's road.
      for (const s of skipped) expect(s).toMatch(/\(vm\.halted\): not a real node's road$/);
      expect(skipped.length).toBeLessThan(roads[start].length / 3);
      expect(halts, 'guests that powered off').toBeGreaterThan(0);
    });
  }

  it('exercises every declared event, and handles no undeclared one', () => {
    const all = [...roads.paired, ...roads.alone].map((steps) => ({ steps }));
    expect([...eventsCovered(all as never)].sort()).toEqual([...EVENTS].sort());
    expect([...eventsHandled(primaryMachine)].sort()).toEqual([...EVENTS].sort());
  });

  it('keeps trying an unreachable arbiter with backoff and releases nothing meanwhile', () => {
    // The chart with its real arbiter client in virtual time (createTestModel refuses invoke).
    const ACTIONS = ['releaseOutputs', 'releaseAllOutputs', 'pauseVm', 'resumeVm', 'haltVm'];
    const { machine, fired } = recording(primaryMachine, ACTIONS);
    const w = arbiterWorld({ firstMs: 10, maxMs: 40 });
    const p = createActor(machine.provide({ actors: w.actors }), { input: { generation: 7, claimRetry: { firstMs: 10, maxMs: 40 } }, clock: w.clock }).start();
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
    w.tas.answer('won');
    expect(fired).toEqual(['releaseAllOutputs']);
    expect(DEFAULT_CLAIM_RETRY.firstMs).toBeGreaterThan(0);
  });
});
