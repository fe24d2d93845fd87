// The pair chart's enumerated paths, each driven on a real in-process pair (real machines
// running the seq guest, real channel, real arbiter): every step either does what the path
// says (kill, cut, add a backup, stop) or waits for the real pair to report it (a failover,
// a primary alone, a backup caught up, the guest's exit). After each step the pair's own
// chart must stand where the path says. The only fake is at the wire: an arbiter that can be
// told whom to answer first, so a partition's race can be steered both ways.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { createTestModel } from 'xstate/graph';
import { transition } from 'xstate';
import { pairMachine } from '../../machines/pair.machine.js';
import { createPair, type Pair, type PairEvent, type PairOutcome } from '../../runtime/pair.js';
import type { ReleasedOutput } from '../../runtime/ft/output-gate.js';
import type { Arbiter } from '../../runtime/arbiter/arbiter.js';
import { InProcessArbiter } from '../../runtime/arbiter/in-process.js';
import { SeqChecker } from '../../runtime/demo/seq-checker.js';
import { guestPath } from '../../runtime/guests.js';

class SteeredArbiter implements Arbiter {
  private readonly inner = new InProcessArbiter();
  prefer: string | undefined;
  async testAndSet(pairId: string, generation: number, claimant: string): Promise<'won' | 'lost'> {
    if (this.prefer && claimant !== this.prefer) await new Promise((r) => setTimeout(r, 400));
    return this.inner.testAndSet(pairId, generation, claimant);
  }
  holder(pairId: string, generation: number) {
    return this.inner.holder(pairId, generation);
  }
  close() {
    return this.inner.close();
  }
}

const long = readFileSync(guestPath('seq'));
const short = readFileSync(guestPath('seq-short'));

/**
 * The pair chart's states as the real pair went through them. A step is reached when its
 * state shows up after the previous step's: a state the real pair passes through quickly
 * (`reprotecting` before a snapshot is acked) counts even if it is gone by the next poll.
 */
function trail(pair: Pair) {
  const seen: string[] = [JSON.stringify(pair.actor.getSnapshot().value)];
  pair.actor.subscribe((snap) => seen.push(JSON.stringify(snap.value)));
  let from = 0;
  return {
    async reach(want: unknown, ms: number): Promise<boolean> {
      const key = JSON.stringify(want);
      const t0 = Date.now();
      for (;;) {
        const i = seen.indexOf(key, from);
        if (i >= 0) {
          from = i;
          return true;
        }
        if (Date.now() - t0 > ms) return false;
        await new Promise((r) => setTimeout(r, 5));
      }
    },
    get now(): string {
      return seen.at(-1)!;
    },
  };
}

/** Wait for an output released after index `from` of `released` by `node` in `generation`. */
async function releasedBy(released: ReleasedOutput[], node: string, generation: number, from: number): Promise<boolean> {
  const t0 = Date.now();
  while (Date.now() - t0 < 5_000) {
    if (released.slice(from).some((o) => o.node === node && o.generation === generation)) return true;
    await new Promise((r) => setTimeout(r, 5));
  }
  return false;
}

/** Requests the chart takes without changing state (a crash whose death comes later, or a refusal). */
const FAULTS_IN_PLACE = new Set(['fault.killPrimary', 'fault.killBackup', 'fault.corruptBackup']);

describe('pair chart on a real pair', () => {
  // Context is part of a state's identity and the generation grows with every failover:
  // stop after the second one, or the graph never ends; then keep one shortest path per
  // transition (the same transitions in a later generation add time, not coverage).
  const all = createTestModel(pairMachine, {
    input: { generation: 1 },
    stopWhen: (s) => s.status === 'done' || s.context.generation >= 3,
  }).getShortestPaths();
  // The shortest prefix of any path that takes each transition (state value, event).
  type Step = (typeof all)[number]['steps'][number];
  const byState = new Map<string, { steps: Step[]; state: Step['state'] }>();
  // A guest cannot exit before its pair started: such prefixes are the model's, not a pair's.
  // A winner straight from `protected` needs no fault but a thread starved past the suspicion
  // timeout, which this test's operator requests cannot cause: stall-failover.test.ts makes
  // it on a real pair (a worker backup and a blocked primary thread).
  const realistic = (steps: Step[]) => {
    const types = steps.map((x) => x.event.type as string);
    const exit = types.indexOf('pair.guestExited');
    const starved = steps.some((x, k) => k > 0 && steps[k - 1]!.state.matches('protected') && (x.event.type === 'pair.backupLive' || x.event.type === 'pair.primaryAlone'));
    return !starved && (exit < 0 || types.indexOf('pair.started') >= 0 && types.indexOf('pair.started') < exit);
  };
  for (const p of all) {
    p.steps.forEach((st, k) => {
      if (!realistic(p.steps.slice(0, k + 1))) return;
      const key = `${JSON.stringify(k > 0 ? p.steps[k - 1]!.state.value : null)} ${st.event.type}`;
      const seen = byState.get(key);
      if (!seen || k + 1 < seen.steps.length) byState.set(key, { steps: p.steps.slice(0, k + 1), state: st.state });
    });
  }
  const paths = [...byState.values()];

  it('follows every path a real pair can take and never has two live primaries', { timeout: 300_000 }, async () => {
    const followed: string[] = [];
    const visited = new Set<string>();
    const refused: string[] = [];
    for (const path of paths) {
      const types = path.steps.map((s) => s.event.type);
      const label = types.join(' → ');
      const arbiter = new SteeredArbiter();
      // The short guest only where nothing but its exit is awaited; faults need a guest still running.
      const quick = types.length === 3 && types[2] === 'pair.guestExited';
      const pair = createPair({ image: quick ? short : long, arbiter, pairId: 'model', timing: { digestEveryMs: 20 } });
      const checker = new SeqChecker();
      const released: ReleasedOutput[] = [];
      const events: PairEvent[] = [];
      pair.outputs$.subscribe((o) => {
        released.push(o);
        checker.accept(o);
      });
      pair.events$.subscribe((e) => events.push(e));
      const states = trail(pair);
      let done: Promise<PairOutcome> | undefined;
      let ok = true;
      for (const [i, step] of path.steps.entries()) {
        const type = step.event.type as string;
        const next = path.steps[i + 1]?.event.type;
        const at = `${label}: after ${type}`;
        // The operator's requests are made, and a death or divergence is caused by its fault;
        // then the step's event must come from what the real pair observes.
        switch (type) {
          case 'xstate.init': continue;
          case 'pair.started': done = pair.start(); break;
          case 'fault.killPrimary': case 'pair.primaryDied': pair.kill('primary'); break;
          case 'fault.killBackup': case 'pair.backupDied': pair.kill('backup'); break;
          case 'fault.cutChannel':
            arbiter.prefer = next === 'pair.primaryAlone' ? pair.stats().live : 'backup';
            pair.cutChannel();
            break;
          case 'fault.corruptBackup': case 'pair.backupDiverged': pair.corruptBackup(); break;
          case 'pair.addBackup': pair.addBackup(); break;
          case 'pair.stop': await pair.stop(); break;
          default: break;
        }
        // Let the pair run a little before a fault, so it happens mid-run, not at boot.
        if (type === 'pair.started' && !quick) await new Promise((r) => setTimeout(r, 150));
        if (FAULTS_IN_PLACE.has(type)) {
          // The chart takes the request in place: the crash or the refusal is its effect, and
          // what follows is observed later (a later step, if the path has one).
          // The model says whether this state takes the request; the real pair must show it.
          const [, actions] = transition(pairMachine, path.steps[i - 1]!.state as never, step.event as never);
          const took = actions.map((x) => x.type);
          const last = events.filter((e) => e.type === 'killed' || e.type === 'refused').at(-1);
          if (took.includes('refuseRequest')) expect(last?.type === 'refused' && last.detail.startsWith(`${type}: not now`), at).toBe(true);
          else if (type === 'fault.killPrimary' || type === 'fault.killBackup') {
            expect(last?.type, at).toBe('killed');
            expect(last?.detail, at).toBe(type === 'fault.killPrimary' ? 'primary' : 'backup');
          }
          visited.add(JSON.stringify(step.state.value));
          continue;
        }
        const reached = await states.reach(step.state.value, type === 'pair.guestExited' ? 30_000 : 5_000);
        if (reached) visited.add(JSON.stringify(step.state.value));
        if (!reached) {
          refused.push(`${label}: at ${type} the real pair stayed ${states.now}`);
          ok = false;
          break;
        }
        // What the product shows at this step (not the chart's value, checked above).
        const generation = step.state.context.generation;
        switch (type) {
          case 'pair.backupLive': case 'pair.primaryAlone': {
            // The winner holds the key it claimed, and the new primary's outputs carry the new
            // generation: one arbiter record, one releasing replica.
            const live = pair.stats().live!;
            expect(await arbiter.holder('model', generation - 1), at).toBe(live);
            expect(await releasedBy(released, live, generation, released.length), at).toBe(true);
            break;
          }
          case 'pair.backupCaughtUp': {
            // Protected again: the live primary's outputs flow under the output rule, acked by the new backup.
            expect(pair.stats().backup, at).toBeDefined();
            expect(await releasedBy(released, pair.stats().live!, generation, released.length), at).toBe(true);
            break;
          }
          case 'pair.backupDiverged':
            expect(events.some((e) => e.type === 'divergence'), at).toBe(true);
            break;
          case 'pair.primaryDied': case 'pair.backupDied':
            expect(events.filter((e) => e.type === 'killed').at(-1)?.detail, at).toBe(type === 'pair.primaryDied' ? 'primary' : 'backup');
            if (step.state.value === 'lost') {
              // Nobody is left: nothing more is released.
              const n = released.length;
              await new Promise((r) => setTimeout(r, 300));
              expect(released.length, at).toBe(n);
            }
            break;
          case 'pair.guestExited': {
            const outcome = await done!;
            expect(outcome.code, at).toBe(0);
            expect(checker.ok, at).toBe(true);
            break;
          }
          default: break;
        }
      }
      if (ok) followed.push(label);
      const end = pair.actor.getSnapshot();
      await pair.stop();
      await done;
      // Whatever happened, a real pair never reports two live primaries, and loses nothing
      // from the outputs it released (a stopped run may end early, never with a gap).
      expect(end.value, label).not.toBe('splitBrain');
      expect(checker.lost, label).toBe(0);
      expect(checker.errors, label).toEqual([]);
    }
    // Every state but splitBrain is reached on real pairs; splitBrain is never reached. The
    // paths a real pair refuses are only those no real pair can take: a guest that exits
    // before the pair started, or a second live primary.
    for (const st of ['"protected"', '{"failingOver":"toBackup"}', '{"failingOver":"toPrimary"}', '{"failingOver":"contested"}', '"unprotected"', '"reprotecting"', '"lost"', '"stopped"', '"finished"']) {
      expect([...visited], `${st} reached on a real pair`).toContain(st);
    }
    expect([...visited]).not.toContain('"splitBrain"');
    expect(followed.length, `followed:\n${followed.join('\n')}\nrefused:\n${refused.join('\n')}`).toBeGreaterThanOrEqual(paths.length - 2);
    // Only the way into splitBrain (a second live primary) is refused: no real pair takes it.
    for (const r of refused) expect(r).toMatch(/→ pair\.(backupLive|primaryAlone): at pair\.(backupLive|primaryAlone) the real pair stayed "(unprotected|finished)"$/);
  });
});
