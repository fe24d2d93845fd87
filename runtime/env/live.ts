import { randomBytes } from 'node:crypto';
import type { Env } from './env.js';
import type { Machine } from '../machine.js';
import type { ValueKind } from '../types.js';
import type { IoInput } from '../io/machine-io.js';

/** One mtime tick at 10 MHz, in nanoseconds. */
const NS_PER_TICK = 100;
/** Longest wait in idle(): bounds how long a missed wake-up could stall (it re-checks). */
const MAX_IDLE_MS = 50;
/** Batches are cut so a timer interrupt lands at most about this late (estimated). */
const TIMER_SLACK_NS = 1_000_000;
/** Within this of the timer deadline, idle() polls instead of sleeping on a coarse timer. */
const SPIN_BELOW_NS = 1_500_000;
const SEED_POOL_BYTES = 4096;
/** Batch length while console bytes wait for room in the UART (≈0.1 ms at 100 MIPS). */
const CONSOLE_POLL_INSTRUCTIONS = 10_000;

export interface LiveEnvOptions {
  /** mtime at construction, so a backup going live continues the guest's clock (DESIGN §3 go-live). */
  mtimeAt?: number;
  /** First guess of the interpreter's speed, refined from measurements. */
  instructionsPerSecond?: number;
}

/**
 * The real world: host monotonic clock for mtime, wall clock for the RTC, crypto entropy for
 * `seed`, console bytes pushed by the CLI. The decision "what is due now" (timerDue,
 * consoleDue) is kept apart from "apply it" (applyTimer, applyConsole) so a recording env can
 * log each application and a replay env can apply the same inputs at logged icounts.
 */
export class LiveEnv implements Env {
  readonly mode: Env['mode'] = 'live';

  private readonly startNs = process.hrtime.bigint();
  private readonly startMtime: number;
  private readonly rtcStartUs = Date.now() * 1000;
  private seedPool = randomBytes(SEED_POOL_BYTES);
  private seedPos = 0;
  private readonly console: number[] = [];
  private consoleHead = 0;
  private wake: (() => void) | undefined;
  private ips: number;
  private lastSampleNs = -1;
  private lastSampleIcount = 0;
  /** Frames wait for an RX buffer: look again after a short batch (set by deliverDue). */
  private ioWaiting = false;
  private readonly wakeUp = (): void => this.wake?.();
  /** When the armed timer fires, in ns since construction; undefined when none is armed. */
  private deadlineNs: number | undefined;

  constructor(opts: LiveEnvOptions = {}) {
    this.startMtime = opts.mtimeAt ?? 0;
    this.ips = opts.instructionsPerSecond ?? 50e6;
  }

  private elapsedNs(): number {
    return Number(process.hrtime.bigint() - this.startNs);
  }

  /** Host mtime in 10 MHz ticks. */
  mtimeNow(): number {
    return this.startMtime + Math.floor(this.elapsedNs() / NS_PER_TICK);
  }

  value(kind: ValueKind, _icount: number): number {
    switch (kind) {
      case 'mtime': return this.mtimeNow();
      case 'rtc': return this.rtcStartUs + Math.floor(this.elapsedNs() / 1000);
      case 'seed': return this.nextSeed();
    }
  }

  private nextSeed(): number {
    if (this.seedPos + 2 > this.seedPool.length) {
      this.seedPool = randomBytes(SEED_POOL_BYTES);
      this.seedPos = 0;
    }
    const v = this.seedPool[this.seedPos]! | (this.seedPool[this.seedPos + 1]! << 8);
    this.seedPos += 2;
    return v;
  }

  /** Queue console input (from stdin); it reaches the UART at the next batch boundary with room. */
  pushConsole(bytes: Uint8Array): void {
    for (const b of bytes) this.console.push(b);
    this.wake?.();
  }

  /** Console bytes not yet delivered to the UART. */
  get consoleBacklog(): number {
    return this.console.length - this.consoleHead;
  }

  timerDue(m: Machine): boolean {
    return !m.clint.timerPending && this.mtimeNow() >= m.clint.mtimecmp;
  }

  consoleDue(m: Machine): boolean {
    return this.consoleHead < this.console.length && m.uart.canReceive();
  }

  /** Raise MTIP now (live: mtime crossed mtimecmp; replay: the log says so at this icount). */
  applyTimer(m: Machine): void {
    m.clint.raiseTimer();
  }

  /** Put one console byte into the UART receive FIFO. */
  applyConsole(m: Machine, byte: number): void {
    m.uart.receive(byte);
  }

  private takeConsole(): number {
    const b = this.console[this.consoleHead++]!;
    if (this.consoleHead > 4096 && this.consoleHead * 2 > this.console.length) {
      this.console.splice(0, this.consoleHead);
      this.consoleHead = 0;
    }
    return b;
  }

  /**
   * Apply one disk completion or received frame (DESIGN §2): the data is copied from the
   * backend's bounce buffer into guest RAM, the used ring updated, the interrupt raised.
   */
  applyIo(m: Machine, input: IoInput): void {
    m.io!.apply(input);
  }

  deliverDue(m: Machine): void {
    if (this.timerDue(m)) this.applyTimer(m);
    while (this.consoleDue(m)) this.applyConsole(m, this.takeConsole());
    const io = m.io;
    if (io) {
      io.onReady = this.wakeUp;
      for (let c = io.takeDue(); c !== undefined; c = io.takeDue()) this.applyIo(m, c);
      this.ioWaiting = io.framesWaiting;
    }
    this.noteDeadline(m);
  }

  nextAt(icount: number): number {
    const now = this.elapsedNs();
    if (this.lastSampleNs >= 0 && icount > this.lastSampleIcount && now > this.lastSampleNs) {
      const sample = ((icount - this.lastSampleIcount) * 1e9) / (now - this.lastSampleNs);
      this.ips = this.ips * 0.75 + sample * 0.25;
    }
    this.lastSampleNs = now;
    this.lastSampleIcount = icount;
    // Queued input waits for room in the UART; look again soon rather than after a full batch.
    const inputBudget = this.consoleBacklog > 0 || this.ioWaiting ? CONSOLE_POLL_INSTRUCTIONS : Infinity;
    return icount + Math.min(this.timerBudget(now), inputBudget);
  }

  /** Instructions to run before the timer needs another look; Infinity when no timer is armed. */
  private timerBudget(nowNs: number): number {
    // nextAt gets no machine: the deadline was cached by deliverDue, which step() runs first.
    const deadline = this.deadlineNs;
    if (deadline === undefined) return Infinity;
    const remainingNs = Math.min(deadline - nowNs, TIMER_SLACK_NS);
    return Math.max(1, Math.floor((remainingNs * this.ips) / 1e9));
  }

  /** Remember when the armed timer fires (ns since start), for nextAt and idle. */
  protected noteDeadline(m: Machine): void {
    const cmp = m.clint.mtimecmp;
    if (m.clint.timerPending || cmp >= Number.MAX_SAFE_INTEGER) this.deadlineNs = undefined;
    else this.deadlineNs = (cmp - this.startMtime) * NS_PER_TICK;
  }

  idle(m: Machine): Promise<void> {
    // Time spent asleep is not execution speed.
    this.lastSampleNs = -1;
    this.noteDeadline(m);
    if (m.io) m.io.onReady = this.wakeUp;
    if (this.timerDue(m) || this.consoleDue(m) || m.io?.hasDue()) return Promise.resolve();
    const deadline = this.deadlineNs;
    const remainingNs = deadline === undefined ? Infinity : deadline - this.elapsedNs();
    // setTimeout wakes ≥1 ms late; close to the deadline, poll once per event-loop turn instead.
    if (remainingNs < SPIN_BELOW_NS) return new Promise((resolve) => setImmediate(resolve));
    const waitMs = Math.min(MAX_IDLE_MS, Math.floor((remainingNs - SPIN_BELOW_NS) / 1e6) + 1);
    return new Promise((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        this.wake = undefined;
        resolve();
      };
      const timer = setTimeout(done, waitMs);
      this.wake = done;
    });
  }
}
