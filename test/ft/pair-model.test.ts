// The pair chart's enumerated paths, each driven on a real in-process pair (real machines
// running the seq guest, real channel, real arbiter): every step either does what the path
// says (kill, cut, add a backup, stop) or waits for the real pair to report it (a failover,
// a primary alone, a backup caught up, the guest's exit). After each step the pair's own
// chart must stand where the path says. The only fake is at the wire: an arbiter that can be
// told whom to answer first, so a partition's race can be steered both ways.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { createTestModel } from 'xstate/graph';
import { pairMachine } from '../../machines/pair.machine.js';
import { createPair, type Pair } from '../../runtime/pair.js';
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

async function settle(pair: Pair, want: unknown, ms: number): Promise<boolean> {
  const t0 = Date.now();
  for (;;) {
    if (JSON.stringify(pair.actor.getSnapshot().value) === JSON.stringify(want)) return true;
    if (Date.now() - t0 > ms) return false;
    await new Promise((r) => setTimeout(r, 5));
  }
}

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
  const realistic = (steps: Step[]) => {
    const types = steps.map((x) => x.event.type as string);
    const exit = types.indexOf('pair.guestExited');
    return exit < 0 || types.indexOf('pair.started') >= 0 && types.indexOf('pair.started') < exit;
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

  it('follows every path a real pair can take and never has two live primaries', { timeout: 240_000 }, async () => {
    const followed: string[] = [];
    const visited = new Set<string>();
    const refused: string[] = [];
    for (const path of paths) {
      const types = path.steps.map((s) => s.event.type);
      const label = types.join(' → ');
      const arbiter = new SteeredArbiter();
      // The short guest only where nothing but its exit is awaited; faults need a guest still running.
      const quick = types.length === 3 && types[2] === 'pair.guestExited';
      const pair = createPair({ image: quick ? short : long, arbiter, pairId: 'model' });
      const checker = new SeqChecker();
      pair.outputs$.subscribe((o) => checker.accept(o));
      let done: Promise<unknown> | undefined;
      let ok = true;
      for (const [i, step] of path.steps.entries()) {
        const type = step.event.type as string;
        const next = path.steps[i + 1]?.event.type;
        switch (type) {
          case 'xstate.init': continue;
          case 'pair.started': done = pair.start(); break;
          case 'pair.primaryDied': pair.kill('primary'); break;
          case 'pair.backupDied': pair.kill('backup'); break;
          case 'pair.partitioned':
            arbiter.prefer = next === 'pair.primaryAlone' ? 'primary' : 'backup';
            pair.cutChannel();
            break;
          case 'pair.addBackup': pair.addBackup(); break;
          case 'pair.stop': await pair.stop(); break;
          default: break; // reported by the real pair itself: wait for it below
        }
        // Let the pair run a little before a fault, so it happens mid-run, not at boot.
        if (type === 'pair.started' && !quick) await new Promise((r) => setTimeout(r, 150));
        const reached = await settle(pair, step.state.value, type === 'pair.guestExited' ? 30_000 : 3_000);
        if (reached) visited.add(JSON.stringify(step.state.value));
        if (!reached) {
          refused.push(`${label}: at ${type} the real pair stayed ${JSON.stringify(pair.actor.getSnapshot().value)}`);
          ok = false;
          break;
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
