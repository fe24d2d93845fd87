// DESIGN §3 Flow control: "if the backup falls behind by more than a bound (time or bytes), the
// primary slows or pauses until it catches up; lag is always bounded". A backup that acks on
// receipt and replays slower than its primary runs would fall behind without bound, and a
// failover would wait for all of that replay. Here the backup's host is three times slower
// than the primary's (its machine's every batch takes three times as long): the replay's
// backlog stays within the bound, the primary pauses for it, and nothing is lost.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { Machine } from '../../runtime/machine.js';
import { LiveEnv } from '../../runtime/env/live.js';
import { createInProcessChannel } from '../../runtime/channel/in-process.js';
import { SendWindow } from '../../runtime/channel/send-window.js';
import { InProcessArbiter } from '../../runtime/arbiter/in-process.js';
import { PrimaryNode } from '../../runtime/ft/primary-node.js';
import { BackupNode } from '../../runtime/ft/backup-node.js';
import { ReplayBacklog } from '../../runtime/ft/replay-backlog.js';
import { SeqChecker } from '../../runtime/demo/seq-checker.js';
import { guestPath } from '../../runtime/guests.js';
import { slowHost } from '../helpers/slow-host.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('ReplayBacklog: what a backup may ack', () => {
  it('acks on receipt while the replay keeps up, only what it replayed once the oldest waits too long', () => {
    const b = new ReplayBacklog(50);
    expect(b.ackable(0, 0)).toBe(-1);
    b.received(0, 100, 0);
    b.received(1, 200, 0);
    b.received(2, 300, 10);
    // Young: everything received.
    expect(b.ackable(0, 40)).toBe(2);
    expect(b.held).toBe(false);
    // Seq 0 waited 60 ms unreplayed: nothing is replayed yet, nothing new may be acked.
    expect(b.ackable(99, 60)).toBe(-1);
    expect(b.held).toBe(true);
    // The machine reached seq 1's icount: up to it; seq 2 waited 60 ms too.
    expect(b.ackable(250, 70)).toBe(1);
    expect(b.age(70)).toBe(60);
    // Seq 2 is younger than the mark at 55 ms: acks on receipt again.
    expect(b.ackable(250, 55)).toBe(2);
    expect(b.held).toBe(false);
    // All replayed: the newest received, whatever the time.
    expect(b.ackable(300, 1e6)).toBe(2);
    expect(b.age(1e6)).toBe(0);
  });
});

describe('SendWindow: the age of the oldest unacknowledged entry is a mark', () => {
  it('is full once that entry waited past highWaterMs, drained when what waits is young again', async () => {
    const w = new SendWindow({ highWaterMs: 20, lowWaterMs: 5 });
    expect(w.sent(0, 10)).toBeUndefined();
    await sleep(30);
    // Reported by the next send (a heartbeat at the latest).
    expect(w.sent(1, 10)).toBe('full');
    expect(w.full).toBe(true);
    expect(w.lag.ms).toBeGreaterThanOrEqual(29);
    expect(w.sent(2, 10)).toBeUndefined();
    await sleep(10);
    // Seq 1 waited past the low mark: still paused.
    expect(w.ack(0)).toBeUndefined();
    expect(w.full).toBe(true);
    expect(w.ack(2)).toBe('drained');
    expect(w.full).toBe(false);
    expect(w.lag).toEqual({ entries: 0, bytes: 0, ms: 0 });
  });

  it('reports a crossing once, and a time crossing to a reader that sends nothing', async () => {
    const w = new SendWindow({ highWaterMs: 20 });
    w.sent(0, 1);
    await sleep(30);
    expect(w.full).toBe(true);
    // Already reported: the next send does not report it again.
    expect(w.sent(1, 1)).toBeUndefined();
    expect(w.ack(1)).toBe('drained');
  });
});

describe('a backup three times slower than its primary', () => {
  it('lags within the bound: the primary pauses for it, and every line arrives once, in order', async () => {
    const image = readFileSync(guestPath('seq'));
    const boot = (): Machine => {
      const m = new Machine({ env: new LiveEnv() });
      m.loadElf(image);
      return m;
    };
    const arbiter = new InProcessArbiter();
    const ch = createInProcessChannel();
    // Suspicion well above the slow host's batches: this test is about lag, not detection.
    const timing = { suspectMs: 2000, confirmMs: 500 };
    const primary = new PrimaryNode({ name: 'primary', pairId: 'lag', generation: 1, machine: boot(), arbiter, channel: ch.primary, timing });
    const machine = boot();
    // The slow host: each batch of the backup's machine takes three times its own time.
    slowHost(machine, 2);
    const backup = new BackupNode({ name: 'backup', pairId: 'lag', generation: 1, machine, channel: ch.backup, arbiter, timing });
    const checker = new SeqChecker();
    primary.released$.subscribe((o) => checker.accept(o));

    let maxBacklogMs = 0;
    let maxUnackedMs = 0;
    let pausedSeen = 0;
    const sample = setInterval(() => {
      maxBacklogMs = Math.max(maxBacklogMs, backup.stats().lagMs);
      const p = primary.stats();
      maxUnackedMs = Math.max(maxUnackedMs, p.lagMs);
      if (p.paused) pausedSeen++;
    }, 10);
    const t0 = performance.now();
    const bDone = backup.run();
    const end = await primary.run();
    const primaryMs = performance.now() - t0;
    const outcome = await bDone;
    clearInterval(sample);

    expect(end.reason).toBe('halt');
    expect(end.code).toBe(0);
    expect(outcome.reason).toBe('finished');
    expect(checker.errors).toEqual([]);
    expect(checker.lost).toBe(0);
    expect(checker.lines).toBe(2000);
    // The primary waited for its backup: paused, and it took as long as the backup's replay.
    expect(pausedSeen).toBeGreaterThan(0);
    // Bounded: ackLagMs (100) until acks wait for the replay, highWaterMs (200) until the
    // primary pauses, and the replay of what was sent before the pause took effect; acking on
    // receipt, the backlog grew to about two thirds of the run (the replay's extra time).
    expect(maxBacklogMs).toBeLessThan(Math.max(600, primaryMs / 4));
    expect(maxUnackedMs).toBeLessThan(Math.max(700, primaryMs / 4));
    expect(maxBacklogMs).toBeGreaterThan(0);
  });
});
