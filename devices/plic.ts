import type { IrqLine, MmioDevice } from '../runtime/types.js';

/** Sources on QEMU `virt` (source 0 means "none"). */
export const PLIC_SOURCES = 53;
const WORDS = Math.ceil((PLIC_SOURCES + 1) / 32);

const PRIORITY_BASE = 0x0000;
const PENDING_BASE = 0x1000;
/** Context 0 on `virt` is hart 0 in M-mode; ftvm models only that context. */
const ENABLE_BASE = 0x2000;
const THRESHOLD = 0x20_0000;
const CLAIM = 0x20_0004;
/** QEMU `virt` implements 3 priority bits. */
const PRIORITY_MASK = 7;

export interface PlicState {
  priority: number[];
  pending: number[];
  enable: number[];
  claimed: number[];
  level: number[];
  threshold: number;
}

/**
 * Platform-level interrupt controller with level-triggered gateways (PLIC spec 1.0 §§4–9).
 * A source whose line is high becomes pending unless it is claimed; a claim clears pending;
 * a completion releases the gateway and, if the line is still high, re-pends it.
 * MEIP = some pending, enabled source has priority above the threshold.
 */
export class Plic implements MmioDevice {
  private readonly priority = new Uint32Array(PLIC_SOURCES + 1);
  private readonly pending = new Uint32Array(WORDS);
  private readonly enable = new Uint32Array(WORDS);
  private readonly claimed = new Uint32Array(WORDS);
  private readonly level = new Uint32Array(WORDS);
  private threshold = 0;
  private meipUp = false;

  constructor(private readonly meip: IrqLine) {}

  /** The interrupt line of source `n` (1..53), for a device to raise and lower. */
  line(n: number): IrqLine {
    if (!Number.isInteger(n) || n < 1 || n > PLIC_SOURCES) throw new RangeError(`PLIC source ${n} out of range 1..${PLIC_SOURCES}`);
    return { set: (high: boolean) => this.setLevel(n, high) };
  }

  private setLevel(n: number, high: boolean): void {
    const w = n >>> 5, b = 1 << (n & 31);
    if (high) {
      this.level[w] |= b;
      if (!(this.claimed[w] & b)) this.pending[w] |= b;
    } else {
      this.level[w] &= ~b;
      // Level-triggered: a lowered line withdraws a request nobody has claimed yet.
      this.pending[w] &= ~b;
    }
    this.update();
  }

  /** The source a claim would return now: highest priority above threshold, lowest id on ties. */
  private best(): number {
    let best = 0, bestPrio = this.threshold;
    for (let n = 1; n <= PLIC_SOURCES; n++) {
      const w = n >>> 5, b = 1 << (n & 31);
      if ((this.pending[w] & this.enable[w] & b) && this.priority[n] > bestPrio) {
        best = n;
        bestPrio = this.priority[n];
      }
    }
    return best;
  }

  private update(): void {
    const up = this.best() !== 0;
    if (up !== this.meipUp) {
      this.meipUp = up;
      this.meip.set(up);
    }
  }

  read(offset: number, _size: 1 | 2 | 4): number {
    if (offset < PENDING_BASE) {
      const n = (offset - PRIORITY_BASE) >>> 2;
      return n <= PLIC_SOURCES ? this.priority[n] : 0;
    }
    if (offset < PENDING_BASE + WORDS * 4) return this.pending[(offset - PENDING_BASE) >>> 2];
    if (offset >= ENABLE_BASE && offset < ENABLE_BASE + WORDS * 4) return this.enable[(offset - ENABLE_BASE) >>> 2];
    if (offset === THRESHOLD) return this.threshold;
    if (offset === CLAIM) return this.claim();
    return 0;
  }

  write(offset: number, _size: 1 | 2 | 4, value: number): void {
    if (offset < PENDING_BASE) {
      const n = (offset - PRIORITY_BASE) >>> 2;
      if (n >= 1 && n <= PLIC_SOURCES) this.priority[n] = value & PRIORITY_MASK;
    } else if (offset >= ENABLE_BASE && offset < ENABLE_BASE + WORDS * 4) {
      const w = (offset - ENABLE_BASE) >>> 2;
      // Source 0 does not exist; bits past the last source are hard-wired to zero.
      let mask = 0xffff_ffff;
      if (w === 0) mask &= ~1;
      if (w === WORDS - 1) mask = mask & (2 ** ((PLIC_SOURCES + 1) - 32 * w) - 1);
      this.enable[w] = (value & mask) >>> 0;
    } else if (offset === THRESHOLD) {
      this.threshold = value & PRIORITY_MASK;
    } else if (offset === CLAIM) {
      this.complete(value >>> 0);
      return;
    } else {
      return; // pending bits are read-only; other contexts are not modelled
    }
    this.update();
  }

  private claim(): number {
    const n = this.best();
    if (n !== 0) {
      const w = n >>> 5, b = 1 << (n & 31);
      this.pending[w] &= ~b;
      this.claimed[w] |= b;
      this.update();
    }
    return n;
  }

  private complete(n: number): void {
    if (n < 1 || n > PLIC_SOURCES) return;
    const w = n >>> 5, b = 1 << (n & 31);
    // PLIC spec §9: a completion for a source that is not enabled is ignored.
    if (!(this.enable[w] & b) || !(this.claimed[w] & b)) return;
    this.claimed[w] &= ~b;
    if (this.level[w] & b) this.pending[w] |= b;
    this.update();
  }

  save(): PlicState {
    return {
      priority: Array.from(this.priority),
      pending: Array.from(this.pending),
      enable: Array.from(this.enable),
      claimed: Array.from(this.claimed),
      level: Array.from(this.level),
      threshold: this.threshold,
    };
  }

  load(state: unknown): void {
    const s = state as PlicState;
    this.priority.set(s.priority);
    this.pending.set(s.pending);
    this.enable.set(s.enable);
    this.claimed.set(s.claimed);
    this.level.set(s.level);
    this.threshold = s.threshold;
    this.meipUp = this.best() !== 0;
    this.meip.set(this.meipUp);
  }
}
