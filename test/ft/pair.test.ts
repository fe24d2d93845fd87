import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { createPair, type Pair, type PairEvent, type PairOptions } from '../../runtime/pair.js';
import { guestPath } from '../../runtime/guests.js';
import { SeqChecker } from '../../runtime/demo/seq-checker.js';
import { InProcessArbiter } from '../../runtime/arbiter/in-process.js';
import type { Arbiter } from '../../runtime/arbiter/arbiter.js';
import type { ReleasedOutput } from '../../runtime/ft/output-gate.js';

const image = readFileSync(guestPath('seq-short'));
const golden = readFileSync(new URL('../../guests/seq-short/expected.txt', import.meta.url), 'utf8');

interface Run {
  pair: Pair;
  checker: SeqChecker;
  outputs: ReleasedOutput[];
  events: PairEvent[];
}

/** A pair on the seq-short guest, with a client that checks what it receives. */
function pairRun(extra: Partial<PairOptions> = {}, onOutput?: (r: Run, o: ReleasedOutput) => void): Run {
  const pair = createPair({ image, ...extra });
  const run: Run = { pair, checker: new SeqChecker(), outputs: [], events: [] };
  pair.events$.subscribe((e) => run.events.push(e));
  pair.outputs$.subscribe((o) => {
    run.outputs.push(o);
    run.checker.accept(o);
    onOutput?.(run, o);
  });
  return run;
}

/** The console text a receiver reconstructs, each output index taken once. */
function consoleText(outputs: ReleasedOutput[]): string {
  const seen = new Set<number>();
  let s = '';
  for (const o of outputs) {
    if (seen.has(o.index)) continue;
    seen.add(o.index);
    if (o.output.kind === 'console') s += String.fromCharCode(o.output.byte);
  }
  return s;
}

const killAfterLine = (who: 'primary' | 'backup', line: number, delayMs = 0) => (r: Run) => {
  if (r.checker.lines === line && !r.events.some((e) => e.type === 'killed')) {
    r.events.push({ node: 'pair', type: 'killed', detail: 'scheduled', atMs: 0 });
    setTimeout(() => r.pair.kill(who), delayMs);
  }
};

describe('fault-tolerant pair (in process)', () => {
  it('without faults, releases exactly the guest output QEMU prints, once each, in order', async () => {
    const r = pairRun();
    const outcome = await r.pair.start();
    expect(outcome.code).toBe(0);
    expect(outcome.failovers).toBe(0);
    expect(r.checker.duplicates).toBe(0);
    expect(r.outputs.map((o) => o.index)).toEqual(r.outputs.map((_, i) => i));
    expect(consoleText(r.outputs)).toBe(golden);
    expect(r.checker.ok).toBe(true);
    expect(r.outputs.every((o) => o.node === 'primary')).toBe(true);
  });

  it('kills the primary mid-run: the backup goes live and nothing is lost', async () => {
    const r = pairRun({}, killAfterLine('primary', 20));
    const outcome = await r.pair.start();
    expect(outcome.failovers).toBe(1);
    expect(outcome.code).toBe(0);
    expect(r.checker.lost).toBe(0);
    expect(r.checker.errors).toEqual([]);
    expect(r.checker.ok).toBe(true);
    expect(consoleText(r.outputs)).toBe(golden);
    // The new primary released outputs after the kill.
    expect(r.outputs.some((o) => o.node === 'backup')).toBe(true);
    expect(r.events.some((e) => e.type === 'failover')).toBe(true);
  });

  it('kills the primary while the backup lags behind a slow channel', async () => {
    const r = pairRun({ channel: { latencyMs: 3 } }, killAfterLine('primary', 30));
    const outcome = await r.pair.start();
    expect(outcome.failovers).toBe(1);
    expect(r.checker.ok).toBe(true);
    expect(consoleText(r.outputs)).toBe(golden);
  });

  it('kills the backup: the primary wins the arbiter and finishes alone', async () => {
    const arbiter = new InProcessArbiter();
    const r = pairRun({ arbiter, pairId: 'killbackup' }, killAfterLine('backup', 10));
    const outcome = await r.pair.start();
    expect(outcome.failovers).toBe(0);
    expect(outcome.code).toBe(0);
    expect(r.checker.ok).toBe(true);
    expect(await arbiter.holder('killbackup', 1)).toBe('primary');
    expect(r.outputs.every((o) => o.node === 'primary')).toBe(true);
  });

  it('cuts the channel while both live: exactly one replica goes on', async () => {
    const arbiter = new InProcessArbiter();
    const r = pairRun({ arbiter, pairId: 'cut' }, (run) => {
      if (run.checker.lines === 15 && !run.events.some((e) => e.detail === 'cut')) {
        run.events.push({ node: 'pair', type: 'killed', detail: 'cut', atMs: 0 });
        run.pair.cutChannel();
      }
    });
    const outcome = await r.pair.start();
    expect(outcome.code).toBe(0);
    expect(r.checker.lost).toBe(0);
    expect(r.checker.ok).toBe(true);
    const winner = await arbiter.holder('cut', 1);
    expect(['primary', 'backup']).toContain(winner);
    const loser = winner === 'primary' ? 'backup' : 'primary';
    expect(r.events.some((e) => e.node === loser && e.type === 'arbiter' && /lost/.test(e.detail))).toBe(true);
    // Outputs released after the cut come from the winner only.
    const cutAt = r.outputs.findIndex((o) => o.node !== r.outputs[0]!.node);
    if (cutAt >= 0) expect(r.outputs.slice(cutAt).every((o) => o.node === winner)).toBe(true);
  });

  it('never goes live while the arbiter is unreachable, then takes over once it answers', async () => {
    const arbiter = new InProcessArbiter();
    let killedAt = -1;
    const r = pairRun({ arbiter, pairId: 'noarb' }, (run) => {
      if (run.checker.lines === 10 && killedAt < 0) {
        killedAt = run.outputs.length;
        arbiter.setAvailable(false);
        run.pair.kill('primary');
        setTimeout(() => {
          // 400 ms with no arbiter: the backup must still be claiming, releasing nothing.
          expect(run.outputs.length).toBe(killedAt);
          expect(run.events.some((e) => e.type === 'failover')).toBe(false);
          arbiter.setAvailable(true);
        }, 400);
      }
    });
    const outcome = await r.pair.start();
    expect(outcome.failovers).toBe(1);
    expect(r.checker.ok).toBe(true);
  });

  it('backs off through the arbiter-client chart while the arbiter is away, saying so at a bounded rate', async () => {
    // Every test-and-set the nodes make, timed at the wire. The waits between the backup's
    // attempts are the arbiter-client chart's delays: 20 ms doubling to a cap of 160 ms.
    const inner = new InProcessArbiter();
    let up = true;
    const calls: { claimant: string; generation: number; atMs: number; up: boolean }[] = [];
    const arbiter: Arbiter = {
      testAndSet: (pairId, generation, claimant) => {
        calls.push({ claimant, generation, atMs: performance.now(), up });
        return inner.testAndSet(pairId, generation, claimant);
      },
      holder: (pairId, generation) => inner.holder(pairId, generation),
      close: () => inner.close(),
    };
    const OUTAGE_MS = 1500;
    let killedAt = -1;
    const r = pairRun({ arbiter, pairId: 'backoff', timing: { claimRetryMs: 20, claimRetryMaxMs: 160 } }, (run) => {
      if (run.checker.lines === 10 && killedAt < 0) {
        killedAt = run.outputs.length;
        inner.setAvailable((up = false));
        run.pair.kill('primary');
        setTimeout(() => {
          expect(run.outputs.length).toBe(killedAt);
          inner.setAvailable((up = true));
        }, OUTAGE_MS);
      }
    });
    const outcome = await r.pair.start();
    expect(outcome.failovers).toBe(1);
    expect(r.checker.ok).toBe(true);
    expect(await inner.holder('backoff', 1)).toBe('backup');

    // The backup chart's claim: its attempts up to the first the arbiter answered (the node
    // then live re-claims the key it won, as a new primary chart).
    const all = calls.filter((c) => c.claimant === 'backup');
    const mine = all.slice(0, all.findIndex((c) => c.up) + 1);
    expect(mine.length).toBeGreaterThan(1);
    expect(mine.every((c) => c.generation === 1)).toBe(true);
    const gaps = mine.slice(1).map((c, i) => c.atMs - mine[i]!.atMs);
    const waits = gaps.map((_, i) => Math.min(20 * 2 ** i, 160));
    // A timer never fires early (1 ms for clock granularity); under load it may fire late.
    gaps.forEach((g, i) => expect(g, `wait ${i + 1} of ${gaps.map(Math.round).join(', ')} ms`).toBeGreaterThanOrEqual(waits[i]! - 1));
    // The doubling shows: 20, 40, 80, 160, 160, … fit about 11 attempts into the outage
    // (a fixed 20 ms would make 75); the last one, after it, wins.
    expect(mine.length).toBeGreaterThanOrEqual(5);
    expect(mine.length).toBeLessThanOrEqual(13);

    // DESIGN §3: the operator hears which arbiter and why, at most once a second, and when it is back.
    const said = r.events.filter((e) => e.node === 'backup' && e.type === 'arbiter').map((e) => e.detail);
    const unreachable = said.filter((d) => /unreachable/.test(d));
    expect(unreachable.length).toBeGreaterThanOrEqual(1);
    expect(unreachable.length).toBeLessThanOrEqual(Math.ceil(OUTAGE_MS / 1000) + 1);
    expect(unreachable[0]).toMatch(/attempt 1\): arbiter: unavailable \(fault injected\); retrying in 20 ms/);
    expect(said.some((d) => new RegExp(`reachable again after ${mine.length - 1} failed attempts`).test(d))).toBe(true);
  });

  it('survives random kill points of the primary without losing an output', async () => {
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 0, max: 50 }), fc.integer({ min: 0, max: 15 }), async (line, delayMs) => {
        const r = pairRun({}, killAfterLine('primary', line, delayMs));
        if (line === 0) setTimeout(() => r.pair.kill('primary'), delayMs);
        const outcome = await r.pair.start();
        expect(r.checker.lost).toBe(0);
        expect(r.checker.errors).toEqual([]);
        expect(consoleText(r.outputs)).toBe(golden);
        expect(outcome.code).toBe(0);
        // Never two live: after the first output from the new primary, the old one is silent.
        const firstNew = r.outputs.findIndex((o) => o.node === 'backup');
        if (firstNew >= 0) expect(r.outputs.slice(firstNew).every((o) => o.node === 'backup')).toBe(true);
      }),
      { numRuns: 12 },
    );
  });
});

describe('divergence', () => {
  it('detects a corrupted backup by digest, drops it, and rebuilds a backup from a snapshot', async () => {
    const pair = createPair({ image: readFileSync(guestPath('seq')), timing: { digestEveryMs: 20 } });
    const checker = new SeqChecker();
    const events: PairEvent[] = [];
    const states: string[] = [];
    pair.events$.subscribe((e) => events.push(e));
    pair.outputs$.subscribe((o) => {
      checker.accept(o);
      if (checker.lines === 5 && !events.some((e) => e.detail === 'corrupt')) {
        events.push({ node: 'pair', type: 'killed', detail: 'corrupt', atMs: 0 });
        pair.corruptBackup();
      }
    });
    pair.actor.subscribe((snap) => {
      states.push(JSON.stringify(snap.value));
      // Protected again by the rebuilt backup: the test has seen what it needs.
      if (states.includes('"reprotecting"') && snap.value === 'protected') void pair.stop();
    });
    const outcome = await pair.start();
    expect(events.some((e) => e.type === 'divergence' && /expected digest [0-9a-f]+, got digest/.test(e.detail))).toBe(true);
    expect(events.some((e) => e.type === 'reprotect')).toBe(true);
    // Protected, then the diverged backup is dropped, then protected again by a new one.
    expect(states.indexOf('"reprotecting"')).toBeGreaterThan(states.indexOf('"protected"'));
    expect(states.lastIndexOf('"protected"')).toBeGreaterThan(states.indexOf('"reprotecting"'));
    expect(outcome.failovers).toBe(0);
    expect(checker.lost).toBe(0);
    expect(checker.errors).toEqual([]);
  });
});

describe('the logging channel chart', () => {
  it('follows the primary\'s link: open and flowing, suspect when the backup dies, closed once alone', async () => {
    const seen: string[] = [];
    const r = pairRun({
      inspect: (ev) => {
        if (ev.type === '@xstate.snapshot' && (ev.actorRef as { id?: string }).id === 'primary.channel') {
          seen.push(JSON.stringify((ev.snapshot as unknown as { value: unknown }).value));
        }
      },
    }, killAfterLine('backup', 10));
    const outcome = await r.pair.start();
    expect(outcome.code).toBe(0);
    expect(seen).toContain(JSON.stringify({ open: { flow: 'flowing', peer: 'responsive' } }));
    expect(seen).toContain(JSON.stringify({ open: { flow: 'flowing', peer: 'suspect' } }));
    expect(seen.at(-1)).toBe('"closed"');
  });
});
