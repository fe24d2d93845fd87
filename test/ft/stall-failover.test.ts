// A primary that stalls past the suspicion timeout (a starved thread on a loaded host: the
// failures of worker-io-pair.test.ts, docs/BENCHMARKS.md "Go-live of an I/O backup (issue
// 13)"): its backup in the worker declares it dead and goes live, although nobody killed it
// (or, on a host loaded enough, the worker starves first and the primary goes on alone). The
// pair must come out of this as out of a kill: one live replica, the other fenced, no output
// lost, and the pair chart unprotected, so that a kill asked for now is the kill of the only
// replica, not of a primary the chart believes is protected (the chart used to stay
// `protected`, and worker-io-pair's scheduled kill then took down the only replica).
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { createPair, type PairEvent } from '../../runtime/pair.js';
import { guestPath } from '../../runtime/guests.js';
import { SeqChecker } from '../../runtime/demo/seq-checker.js';
import { GoLivePhases } from '../../runtime/ft/go-live-phases.js';

/** Block this thread (the primary's) for `ms`, as a host that gives it no core does. */
function stall(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

describe('a primary stalled past the suspicion timeout, backup in a worker', () => {
  it('one replica wins; the pair chart is unprotected, nothing is lost, never two live', async () => {
    const pair = createPair({ image: readFileSync(guestPath('seq-mid')), backupIn: 'worker', timing: { suspectMs: 150, confirmMs: 50 } });
    const events: PairEvent[] = [];
    const checker = new SeqChecker();
    let stalled = false;
    pair.events$.subscribe((e) => events.push(e));
    pair.outputs$.subscribe((o) => {
      checker.accept(o);
      if (!stalled && checker.lines === 20) {
        stalled = true;
        // After this output's turn: the primary's thread stops answering for well over the
        // suspicion and confirmation timeouts.
        setTimeout(() => stall(1500), 0);
      }
    });
    await pair.ready();
    const started = pair.start();
    // A winner: the worker's backup (the stall), or, on a host loaded enough to starve the
    // worker first, the primary alone. Either way the chart must stop calling the pair protected.
    const deadline = performance.now() + 30_000;
    const won = (): PairEvent | undefined => events.find((e) => e.type === 'arbiter' && /^won /.test(e.detail));
    while (!won() && performance.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    const at = checker.lines;
    // The winner releases the next lines itself.
    while (checker.lines < at + 5 && performance.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    const chart = pair.actor.getSnapshot().value;
    const live = pair.stats().live;
    await pair.stop();
    await started;
    const why = events.filter((e) => e.type !== 'state').map((e) => `${e.node} ${e.type} ${e.detail}`).join('\n');
    const winner = won()?.node;
    expect(winner, why).toBeDefined();
    const loser = winner === 'backup' ? 'primary' : 'backup';
    // The loser asked the arbiter too, or never got to: it never went live.
    expect(events.some((e) => e.node === loser && e.type === 'arbiter' && /^won /.test(e.detail)), why).toBe(false);
    expect(events.filter((e) => e.type === 'failover'), why).toHaveLength(winner === 'backup' ? 1 : 0);
    expect(events.some((e) => e.type === 'error'), why).toBe(false);
    expect(chart, why).toBe('unprotected');
    expect(live, why).toBe(winner);
    expect(checker.lost, why).toBe(0);
    // Every line one execution of the guest could print, in order, none twice over the gap.
    expect(checker.errors, why).toEqual([]);
    expect(checker.lines, why).toBeGreaterThanOrEqual(at + 5);
  }, 90_000);
});

describe('GoLivePhases', () => {
  it('gives the steps in time order, in ms after the suspicion; a suspicion that ended starts afresh', () => {
    const p = new GoLivePhases();
    p.mark('suspected', 1000);
    p.chartState('replaying'); // heard again: forget that suspicion
    expect(p.has('suspected')).toBe(false);
    p.mark('suspected', 2000);
    p.mark('claiming', 2100);
    p.mark('claim won', 2105.5);
    p.chartState('replaying'); // not after a won claim
    p.mark('ports bound', 2150);
    p.mark('replayed', 2120);
    p.mark('replayed', 2999); // once each
    expect(p.line()).toBe('go-live phases (ms after suspicion): suspected 0.0, claiming 100.0, claim won 105.5, replayed 120.0, ports bound 150.0');
  });
});
