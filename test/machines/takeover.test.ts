// Takeover across charts: a real primary chart, a real backup chart and the backup's real
// CPU chart, joined by a fake wire (log entries one way, acks the other), a fake arbiter
// (atomic test-and-set per generation) and watchdogs that may fire at any time — falsely
// too. Effects are recorded at the wire, never inside the charts. Checks DESIGN §3:
// output rule, split brain, go-live; and §6: never two live primaries.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { createActor, SimulatedClock, type Actor } from 'xstate';
import { arbiterClientMachine, DEFAULT_CLAIM_RETRY, type ClaimAttempt, type ClaimVerdict } from '../../machines/arbiter-client.machine.js';
import { backupMachine } from '../../machines/backup.machine.js';
import { cpuMachine } from '../../machines/cpu.machine.js';
import { primaryMachine } from '../../machines/primary.machine.js';
import { answerable } from './harness.js';

type Side = 'P' | 'B';

const STEPS = [
  'produce', 'deliver', 'ack', 'cut', 'killPrimary', 'killBackup',
  'silentP', 'heardP', 'expireP', 'silentB', 'heardB', 'expireB',
  'arbiter', 'arbiterDown', 'arbiterUp', 'batch',
] as const;
type Step = (typeof STEPS)[number];

class World {
  readonly arbiter = new Map<number, Side>();
  arbiterUp = true;
  /**
   * Test-and-set calls in flight, in the order the arbiter clients made them. Each side's
   * charts claim through the real arbiter-client chart; only its call is faked, at the wire.
   */
  claims: Array<{ who: Side; generation: number; answer: (v: ClaimVerdict | Error) => void; active: () => boolean }> = [];
  /** The arbiter clients' retry delays run on this clock; the world moves it. */
  readonly clock = new SimulatedClock();
  channelUp = true;
  primaryAlive = true;
  backupAlive = true;
  /** Entries logged by the primary; each carries one output of the same seq. */
  seq = 0;
  inflight: number[] = [];
  acksInflight: number[] = [];
  delivering = 0;
  backupReceived = 0;
  backupReplayed = 0;
  primaryAcked = 0;
  held: number[] = [];
  released: Array<{ seq: number; direct: boolean }> = [];
  /** The last entry the backup had when it won: its execution reproduces outputs up to here. */
  backupLogAtWin: number | undefined;
  backupDirect = false;
  readonly trace: string[] = [];
  readonly p: Actor<typeof primaryMachine>;
  readonly b: Actor<typeof backupMachine>;
  readonly cpu: Actor<typeof cpuMachine>;

  constructor() {
    const noop = () => {};
    const client = (who: Side) => arbiterClientMachine.provide({
      actors: {
        testAndSet: answerable<ClaimVerdict, ClaimAttempt>((input, call) => this.claims.push({ who, generation: input.generation, ...call })).logic as never,
      },
    });
    this.p = createActor(primaryMachine.provide({
      actions: {
        releaseOutputs: () => this.release((s) => s <= this.primaryAcked, false),
        releaseAllOutputs: () => this.release(() => true, true),
        pauseVm: noop,
        resumeVm: noop,
        haltVm: () => { this.primaryAlive = false; },
      },
      actors: { arbiterClient: client('P') },
    }), { input: { generation: 0 }, clock: this.clock });
    this.cpu = createActor(cpuMachine.provide({
      actions: { scheduleBatch: noop, setRunTarget: noop, awaitInput: noop, swapToLiveEnv: noop, reportHalt: noop, reportFault: noop },
    }));
    this.b = createActor(backupMachine.provide({
      actions: {
        applyEntries: () => { this.backupReceived = this.delivering; },
        sendAck: () => { if (this.channelUp) this.acksInflight.push(this.backupReceived); },
        haltVm: () => { this.backupAlive = false; },
        // Booted together: admitted at once, and this world's clock drives the suspicion.
        reportRefusal: () => { throw new Error('no refusal in this world'); },
        watchPrimary: () => {},
        // Replay every entry received: the CPU runs until the last one's icount.
        drainLog: () => {
          this.backupLogAtWin = this.backupReceived;
          this.cpu.send({ type: 'cpu.runUntil', icount: this.backupReceived });
        },
        goLive: () => {
          this.cpu.send({ type: 'cpu.takeover' });
          this.backupDirect = true;
        },
      },
      actors: { arbiterClient: client('B') },
    }), { input: { generation: 0 }, clock: this.clock });
    this.p.start();
    this.b.start();
    this.cpu.start();
    // In-process pair from boot: the backup replays from icount 0.
    this.cpu.send({ type: 'cpu.start', mode: 'replay' });
    this.b.send({ type: 'backup.start' });
    this.b.send({ type: 'primary.admitted', joining: false, generation: 0 });
    this.p.send({ type: 'backup.joined' });
    this.p.send({ type: 'backup.caughtUp' });
  }

  private release(which: (seq: number) => boolean, direct: boolean) {
    const out = this.held.filter(which);
    this.held = this.held.filter((s) => !which(s));
    for (const seq of out) this.released.push({ seq, direct });
  }

  private pLive() { return this.primaryAlive && this.p.getSnapshot().status === 'active'; }
  private bLive() { return this.backupAlive && this.b.getSnapshot().status === 'active'; }
  private toP(type: Parameters<typeof this.p.send>[0]['type']) { if (this.pLive()) this.p.send({ type } as never); }
  private toB(type: Parameters<typeof this.b.send>[0]['type']) { if (this.bLive()) this.b.send({ type } as never); }

  step(s: Step): void {
    this.trace.push(s);
    const ps = this.p.getSnapshot();
    switch (s) {
      case 'produce': {
        if (!this.pLive()) return;
        this.seq++;
        // The primary logs while it has (or is getting) a backup; alone it logs nothing.
        const logging = ['protecting', 'protected', 'backupSuspect', 'claiming'].some((x) => ps.matches(x as never));
        if (logging && this.channelUp) this.inflight.push(this.seq);
        if (ps.matches('alone')) this.released.push({ seq: this.seq, direct: true });
        else this.held.push(this.seq);
        return;
      }
      case 'deliver': {
        const next = this.inflight.shift();
        if (next === undefined || !this.channelUp) return;
        this.delivering = next;
        this.toB('channel.entries');
        return;
      }
      case 'ack': {
        const acked = this.acksInflight.shift();
        if (acked === undefined || !this.channelUp || !this.pLive()) return;
        this.primaryAcked = Math.max(this.primaryAcked, acked);
        this.p.send({ type: 'channel.acked' });
        return;
      }
      case 'cut':
        if (!this.channelUp) return;
        this.channelUp = false;
        this.inflight = [];
        this.acksInflight = [];
        this.toP('channel.failed');
        this.toB('channel.failed');
        return;
      case 'killPrimary':
        this.primaryAlive = false;
        return;
      case 'killBackup':
        this.backupAlive = false;
        return;
      case 'silentP': return this.toP('peer.silent');
      case 'expireP': return this.toP('suspect.expired');
      case 'heardP': if (this.channelUp && this.bLive()) this.toP('peer.heard'); return;
      case 'silentB': return this.toB('peer.silent');
      case 'expireB': return this.toB('suspect.expired');
      case 'heardB': if (this.channelUp && this.pLive()) this.toB('peer.heard'); return;
      case 'arbiterDown': this.arbiterUp = false; return;
      case 'arbiterUp': this.arbiterUp = true; return;
      case 'arbiter': {
        // A claim whose chart left `claiming` (or whose replica died) was stopped with it.
        this.claims = this.claims.filter((c) => c.active() && (c.who === 'P' ? this.pLive() : this.bLive()));
        const claim = this.claims.shift();
        if (!claim) return;
        if (!this.arbiterUp) {
          claim.answer(new Error('arbiter: unavailable'));
          // Time passes: the client's longest backoff, so its retry is in flight again.
          this.clock.increment(DEFAULT_CLAIM_RETRY.maxMs);
          return;
        }
        // Atomic test-and-set; asking again as the holder answers won again.
        if (!this.arbiter.has(claim.generation)) this.arbiter.set(claim.generation, claim.who);
        return claim.answer(this.arbiter.get(claim.generation) === claim.who ? 'won' : 'lost');
      }
      case 'batch': {
        // The backup's CPU reaches its run-until target; the drain is then complete.
        if (!this.cpu.getSnapshot().matches('runningUntil')) return;
        this.cpu.send({ type: 'cpu.batchEnded', exit: 'target' });
        this.backupReplayed = this.backupLogAtWin ?? 0;
        this.toB('replay.drained');
        return;
      }
    }
  }

  /** Let the world come to rest: the channel is cut, watchdogs fire, the arbiter answers. */
  settle(): void {
    for (const s of ['cut', 'arbiterUp', 'silentP', 'silentB', 'expireP', 'expireB'] as const) {
      this.step(s);
      this.check();
    }
    for (let i = 0; i < 20 && (this.claims.length || this.cpu.getSnapshot().matches('runningUntil')); i++) {
      this.step('arbiter');
      this.check();
      this.step('batch');
      this.check();
    }
  }

  primaryDirect(): boolean { return this.pLive() && this.p.getSnapshot().matches('alone'); }
  backupGoneLive(): boolean { return this.backupAlive && this.b.getSnapshot().matches('live'); }

  /** Invariants that hold after every step. */
  check(): void {
    const where = this.trace.join(' ');
    // DESIGN §6: never two live primaries releasing outputs on their own.
    expect(this.primaryDirect() && (this.backupGoneLive() || (this.backupAlive && this.b.getSnapshot().matches('goingLive'))), where).toBe(false);
    // At most one winner per generation, and only the winner goes live.
    if (this.p.getSnapshot().matches('alone')) expect(this.arbiter.get(0), where).toBe('P');
    if (this.b.getSnapshot().matches('goingLive') || this.b.getSnapshot().matches('live')) expect(this.arbiter.get(0), where).toBe('B');
    // Output rule: an output the old primary released under acks was acked by the backup,
    // so if the backup goes live its replay reproduces it (no acknowledged output lost).
    for (const r of this.released) {
      if (!r.direct) expect(r.seq, where).toBeLessThanOrEqual(this.primaryAcked);
      if (this.backupLogAtWin !== undefined) expect(r.seq, where).toBeLessThanOrEqual(this.backupLogAtWin);
    }
    expect(this.primaryAcked, where).toBeLessThanOrEqual(this.backupReceived);
    // Go-live: the CPU swaps to the live env only once every received entry is replayed.
    if (this.backupGoneLive()) {
      expect(this.backupReplayed, where).toBe(this.backupLogAtWin);
      expect(this.cpu.getSnapshot().context.mode, where).toBe('live');
    } else {
      expect(this.cpu.getSnapshot().context.mode, where).toBe('replay');
    }
  }

  run(steps: readonly Step[]): this {
    for (const s of steps) {
      this.step(s);
      this.check();
    }
    return this;
  }
}

/** After settling, the winner of generation 0 (if still alive) is the only live one. */
function expectOneLive(w: World) {
  const where = w.trace.join(' ');
  const live = (w.primaryDirect() ? 1 : 0) + (w.backupGoneLive() ? 1 : 0);
  const winner = w.arbiter.get(0);
  const winnerAlive = winner === 'P' ? w.primaryAlive : winner === 'B' ? w.backupAlive : false;
  expect(live, where).toBe(winnerAlive ? 1 : 0);
  if (winner === 'B') expect(w.p.getSnapshot().matches('alone'), where).toBe(false);
  // The loser, if it got an answer, halted its VM.
  if (winner === 'P' && w.backupAlive) expect(w.b.getSnapshot().value, where).not.toBe('live');
}

const prefix = (n: number): Step[] => Array.from({ length: n }, () => ['produce', 'deliver', 'ack'] as Step[]).flat();

describe('takeover across primary, backup and CPU charts', () => {
  it('primary dies while the backup is caught up: the backup goes live with every output', () => {
    const w = new World().run([...prefix(3), 'killPrimary']);
    w.settle();
    expectOneLive(w);
    expect(w.backupGoneLive()).toBe(true);
    expect(w.released.map((r) => r.seq)).toEqual([1, 2, 3]);
    expect(w.backupLogAtWin).toBe(3);
  });

  it('primary dies while the backup lags: unacked outputs were never released', () => {
    // Entries 4 and 5 are produced; 4 reaches the backup but its ack is lost with the primary.
    const w = new World().run([...prefix(3), 'produce', 'produce', 'deliver', 'killPrimary']);
    w.settle();
    expectOneLive(w);
    expect(w.backupGoneLive()).toBe(true);
    expect(w.released.map((r) => r.seq)).toEqual([1, 2, 3]);
    expect(w.backupLogAtWin).toBe(4); // it replays what it has, including unacked entry 4
  });

  it('primary dies mid-entry (a torn frame fails the channel): suspicion, claim, go-live', () => {
    const w = new World().run([...prefix(2), 'produce', 'killPrimary', 'cut']);
    expect(w.b.getSnapshot().value).toBe('suspecting');
    w.run(['expireB', 'arbiter', 'batch']);
    expect(w.backupGoneLive()).toBe(true);
    expect(w.cpu.getSnapshot().value).toBe('running');
    expect(w.released.map((r) => r.seq)).toEqual([1, 2]);
  });

  it('primary dies with the channel already suspect: the backup still claims and wins', () => {
    const w = new World().run([...prefix(2), 'silentB', 'killPrimary', 'expireB', 'arbiter']);
    expect(w.b.getSnapshot().value).toBe('goingLive');
    expect(w.cpu.getSnapshot().value).toBe('runningUntil');
    w.run(['batch']);
    expect(w.backupGoneLive()).toBe(true);
  });

  it('keeps claiming while the arbiter is unreachable and goes live only after winning', () => {
    const w = new World().run([...prefix(1), 'killPrimary', 'arbiterDown', 'silentB', 'expireB', 'arbiter', 'arbiter']);
    expect(w.b.getSnapshot().value).toBe('claiming');
    expect(w.claims).toHaveLength(1); // the retry is queued
    w.run(['arbiterUp', 'arbiter', 'batch']);
    expect(w.backupGoneLive()).toBe(true);
  });

  for (const first of ['P', 'B'] as const) {
    it(`channel dies while both live, ${first === 'P' ? 'primary' : 'backup'} claims first: exactly one goes live`, () => {
      const w = new World().run([...prefix(2), 'produce', 'cut']);
      const claimOrder: Step[] = first === 'P' ? ['silentP', 'expireP', 'silentB', 'expireB'] : ['silentB', 'expireB', 'silentP', 'expireP'];
      w.run([...claimOrder, 'arbiter', 'arbiter', 'batch']);
      expectOneLive(w);
      expect(w.arbiter.get(0)).toBe(first);
      if (first === 'P') {
        expect(w.primaryDirect()).toBe(true);
        expect(w.b.getSnapshot().value).toBe('halted');
        expect(w.released.map((r) => r.seq)).toEqual([1, 2, 3]); // 3 released once alone
      } else {
        expect(w.backupGoneLive()).toBe(true);
        expect(w.p.getSnapshot().value).toBe('halted');
        expect(w.released.map((r) => r.seq)).toEqual([1, 2]); // 3 was never acked
      }
    });
  }

  it('an entry arriving during go-live is neither replayed nor acked', () => {
    // The backup won while the old primary still logs: acking entry 3 would let the old
    // primary release output 3, which the new primary's execution never produces.
    const w = new World().run([...prefix(2), 'silentB', 'expireB', 'arbiter', 'produce', 'deliver', 'ack']);
    expect(w.b.getSnapshot().value).toBe('goingLive');
    expect(w.backupReceived).toBe(2);
    expect(w.held).toEqual([3]);
    w.run(['batch']);
    expect(w.backupGoneLive()).toBe(true);
    expect(w.backupReplayed).toBe(2);
  });

  it('a false suspicion by the backup never makes a second primary', () => {
    // The backup suspects a healthy primary and wins; the primary keeps running but its
    // outputs stay held, and it halts when it loses its own claim.
    const w = new World().run([...prefix(2), 'silentB', 'expireB', 'arbiter', 'batch', 'produce', 'deliver', 'ack']);
    expect(w.backupGoneLive()).toBe(true);
    expect(w.held).toEqual([3]);
    w.settle();
    expect(w.p.getSnapshot().value).toBe('halted');
    expectOneLive(w);
  });

  it('random schedules of crashes, cuts, delays and false suspicions keep every rule', () => {
    fc.assert(
      fc.property(fc.array(fc.constantFrom(...STEPS), { maxLength: 60 }), (steps) => {
        const w = new World().run(steps);
        w.settle();
        expectOneLive(w);
      }),
      { numRuns: 500 },
    );
  });
});
