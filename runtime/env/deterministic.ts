import type { Env } from './env.js';
import type { Machine } from '../machine.js';
import type { ValueKind } from '../types.js';

/** A fixed wall-clock origin (2024-01-01T00:00:00Z) so the RTC reads the same on every run. */
const DEFAULT_EPOCH_NS = 1_704_067_200 * 1e9;
const NS_PER_TICK = 100;

export interface DeterministicEnvOptions {
  /** PRNG seed for the `seed` CSR. */
  seed?: number;
  /** Console input, available from the start and delivered as the UART has room. */
  console?: Uint8Array | string;
  /** Instructions per mtime tick: 10 means a virtual 100 MIPS at 10 MHz. */
  instructionsPerTick?: number;
  /** RTC value at mtime 0, ns since the epoch. */
  epochNs?: number;
}

export interface DeterministicEnvState {
  skewTicks: number;
  prng: number;
  consolePos: number;
}

/** Sleeping in wfi with nothing that could ever wake the hart. */
export class GuestDeadlock extends Error {
  override readonly name = 'GuestDeadlock';
}

/**
 * Everything derived from icount and a seed: the same image gives the same run, byte for
 * byte, with no log. Virtual mtime = floor(icount / instructionsPerTick) + skew; the skew
 * grows only when the hart sleeps in wfi, jumping time to mtimecmp (nothing else can wake it).
 */
export class DeterministicEnv implements Env {
  readonly mode: Env['mode'] = 'deterministic';
  private readonly ipt: number;
  private readonly epochNs: number;
  private readonly input: Uint8Array;
  private skewTicks = 0;
  private prng: number;
  private consolePos = 0;
  /** The machine this env serves; deliverDue records it because nextAt gets only an icount. */
  private machine: Machine | undefined;

  constructor(opts: DeterministicEnvOptions = {}) {
    this.ipt = opts.instructionsPerTick ?? 10;
    this.epochNs = opts.epochNs ?? DEFAULT_EPOCH_NS;
    this.input = typeof opts.console === 'string' ? new TextEncoder().encode(opts.console) : (opts.console ?? new Uint8Array(0));
    // xorshift32 has one forbidden state: zero.
    this.prng = (opts.seed ?? 1) >>> 0 || 0x9e3779b9;
  }

  mtimeAt(icount: number): number {
    return Math.floor(icount / this.ipt) + this.skewTicks;
  }

  value(kind: ValueKind, icount: number): number {
    switch (kind) {
      case 'mtime': return this.mtimeAt(icount);
      case 'rtc': return Math.floor(this.epochNs / 1000) + Math.floor((this.mtimeAt(icount) * NS_PER_TICK) / 1000);
      case 'seed': return this.nextRandom() & 0xffff;
    }
  }

  private nextRandom(): number {
    let x = this.prng;
    x ^= x << 13; x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5; x >>>= 0;
    this.prng = x;
    return x;
  }

  timerDue(m: Machine): boolean {
    return !m.clint.timerPending && this.mtimeAt(m.icount) >= m.clint.mtimecmp;
  }

  consoleDue(m: Machine): boolean {
    return this.consolePos < this.input.length && m.uart.canReceive();
  }

  applyTimer(m: Machine): void {
    m.clint.raiseTimer();
  }

  applyConsole(m: Machine, byte: number): void {
    m.uart.receive(byte);
  }

  deliverDue(m: Machine): void {
    this.machine = m;
    if (this.timerDue(m)) this.applyTimer(m);
    while (this.consoleDue(m)) this.applyConsole(m, this.input[this.consolePos++]!);
  }

  /** Deadline of the armed timer as an icount (the first icount whose mtime reaches mtimecmp). */
  private timerIcount(m: Machine): number {
    if (m.clint.timerPending) return Infinity;
    const cmp = m.clint.mtimecmp;
    if (cmp >= Number.MAX_SAFE_INTEGER / this.ipt) return Infinity;
    return (cmp - this.skewTicks) * this.ipt;
  }

  nextAt(icount: number): number {
    // step() runs deliverDue first, so `machine` is current.
    const m = this.machine;
    if (!m) return Infinity;
    return Math.max(icount + 1, this.timerIcount(m));
  }

  idle(m: Machine): Promise<void> {
    this.machine = m;
    if (this.timerDue(m) || this.consoleDue(m)) return Promise.resolve();
    if (this.timerIcount(m) !== Infinity) {
      this.skewTicks += m.clint.mtimecmp - this.mtimeAt(m.icount);
      return Promise.resolve();
    }
    return Promise.reject(new GuestDeadlock(`guest sleeps in wfi at icount ${m.icount} with no timer armed and no input left`));
  }

  save(): DeterministicEnvState {
    return { skewTicks: this.skewTicks, prng: this.prng, consolePos: this.consolePos };
  }

  load(s: DeterministicEnvState): void {
    this.skewTicks = s.skewTicks;
    this.prng = s.prng >>> 0;
    this.consolePos = s.consolePos;
  }
}
