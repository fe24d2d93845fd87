import { plicMachine } from '../machines/plic.machine.js';
import type { ChartInspect, IrqLine, MmioDevice } from '../runtime/types.js';
import { DeviceChart } from './chart.js';

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

type SourceState = 'idle' | 'pending' | 'claimed';
type Source = DeviceChart<typeof plicMachine>;

/**
 * Platform-level interrupt controller with level-triggered gateways (PLIC spec 1.0 §§4–9).
 * Each source's gateway is a PLIC chart (machines/plic.machine.ts) that decides pending and
 * claimed: a source whose line is high becomes pending unless it is claimed; a claim clears
 * pending; a completion releases the gateway and, if the line is still high, re-pends it. The
 * pending register and the claim register answer from those charts. Priorities, enables and
 * the threshold are plain registers. MEIP = some pending, enabled source has priority above
 * the threshold. A chart exists for each source that has a line (the UART and virtio slots);
 * a source without one can never be pending. Events are sent only on a change (a line set to
 * the level it has sends none).
 */
export class Plic implements MmioDevice {
  private readonly priority = new Uint32Array(PLIC_SOURCES + 1);
  private readonly enable = new Uint32Array(WORDS);
  /** The gateway chart of each source that has one, by source number. */
  private readonly sources: (Source | undefined)[] = new Array(PLIC_SOURCES + 1).fill(undefined);
  /** Source numbers with a chart, ascending (claims scan only these). */
  private wired: number[] = [];
  private threshold = 0;
  private meipUp = false;
  /** Set by the charts' `updateMeip`; MEIP is recomputed once the transition is done. */
  private meipStale = false;

  private inspector: { inspect?: ChartInspect; id: string };

  constructor(private readonly meip: IrqLine, opts: { inspect?: ChartInspect } = {}) {
    this.inspector = { ...opts, id: 'plic' };
  }

  /** Report the gateways to `inspect` from now on, as `<id>-<source>` (restarted in their states). */
  inspectWith(inspect: ChartInspect, id = 'plic'): void {
    this.inspector = { inspect, id };
    for (const n of this.wired) {
      const snap = this.sources[n]!.getSnapshot();
      this.sources[n]!.stop();
      this.sources[n] = this.startSource(n, snap.value, snap.context.lineHigh);
    }
  }

  /** The interrupt line of source `n` (1..53), for a device to raise and lower. */
  line(n: number): IrqLine {
    if (!Number.isInteger(n) || n < 1 || n > PLIC_SOURCES) throw new RangeError(`PLIC source ${n} out of range 1..${PLIC_SOURCES}`);
    this.source(n);
    return { set: (high: boolean) => this.setLevel(n, high) };
  }

  /** The gateway chart of source `n` (its actor, for inspection and tests). */
  gateway(n: number): Source | undefined {
    return this.sources[n];
  }

  /** Source `n`'s chart, started in `state` if it has none yet. */
  private source(n: number, state: SourceState = 'idle', lineHigh = false): Source {
    const have = this.sources[n];
    if (have) return have;
    const actor = this.startSource(n, state, lineHigh);
    this.sources[n] = actor;
    this.wired = [...this.wired, n].sort((a, b) => a - b);
    return actor;
  }

  private startSource(n: number, state: SourceState, lineHigh: boolean): Source {
    const machine = plicMachine.provide({ actions: { updateMeip: () => { this.meipStale = true; } } });
    const snapshot = machine.resolveState({ value: state, context: { lineHigh } });
    const { inspect, id } = this.inspector;
    return new DeviceChart(machine, snapshot, inspect ? { inspect, id: `${id}-${n}` } : undefined);
  }

  private stateOf(n: number): SourceState {
    const a = this.sources[n];
    return a ? a.getSnapshot().value : 'idle';
  }

  /** Send `type` to source `n`'s gateway, then recompute MEIP if the chart asked to. */
  private send(n: number, type: 'plic.raised' | 'plic.lowered' | 'plic.claimed' | 'plic.completed'): void {
    this.sources[n]!.send({ type });
    if (this.meipStale) {
      this.meipStale = false;
      this.update();
    }
  }

  private setLevel(n: number, high: boolean): void {
    const a = this.sources[n]!;
    if (a.getSnapshot().context.lineHigh === high) return;
    this.send(n, high ? 'plic.raised' : 'plic.lowered');
  }

  /** The source a claim would return now: highest priority above threshold, lowest id on ties. */
  private best(): number {
    let best = 0, bestPrio = this.threshold;
    for (const n of this.wired) {
      const w = n >>> 5, b = 1 << (n & 31);
      if ((this.enable[w] & b) && this.priority[n] > bestPrio && this.stateOf(n) === 'pending') {
        best = n;
        bestPrio = this.priority[n];
      }
    }
    return best;
  }

  /** Bit `n & 31` set for each source `n` of word `w` whose gateway is in `state`. */
  private bits(w: number, state: SourceState): number {
    let v = 0;
    for (const n of this.wired) if (n >>> 5 === w && this.stateOf(n) === state) v |= 1 << (n & 31);
    return v >>> 0;
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
    if (offset < PENDING_BASE + WORDS * 4) return this.bits((offset - PENDING_BASE) >>> 2, 'pending');
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
    if (n !== 0) this.send(n, 'plic.claimed');
    return n;
  }

  private complete(n: number): void {
    if (n < 1 || n > PLIC_SOURCES) return;
    const w = n >>> 5, b = 1 << (n & 31);
    // PLIC spec §9: a completion for a source that is not enabled is ignored.
    if (!(this.enable[w] & b) || this.stateOf(n) !== 'claimed') return;
    this.send(n, 'plic.completed');
  }

  save(): PlicState {
    const level = new Array<number>(WORDS).fill(0);
    for (const n of this.wired) if (this.sources[n]!.getSnapshot().context.lineHigh) level[n >>> 5]! |= 1 << (n & 31);
    return {
      priority: Array.from(this.priority),
      pending: Array.from({ length: WORDS }, (_, w) => this.bits(w, 'pending')),
      enable: Array.from(this.enable),
      claimed: Array.from({ length: WORDS }, (_, w) => this.bits(w, 'claimed')),
      level: level.map((v) => v >>> 0),
      threshold: this.threshold,
    };
  }

  load(state: unknown): void {
    const s = state as PlicState;
    this.priority.set(s.priority);
    this.enable.set(s.enable);
    this.threshold = s.threshold;
    // Each gateway restarts in the state its saved bits name (no entry effects rerun).
    const bit = (words: number[], n: number) => ((words[n >>> 5] ?? 0) >>> (n & 31)) & 1;
    for (let n = 1; n <= PLIC_SOURCES; n++) {
      const state: SourceState = bit(s.claimed, n) ? 'claimed' : bit(s.pending, n) ? 'pending' : 'idle';
      const lineHigh = bit(s.level, n) === 1;
      const old = this.sources[n];
      if (!old && state === 'idle' && !lineHigh) continue;
      old?.stop();
      if (old) this.sources[n] = this.startSource(n, state, lineHigh);
      else this.source(n, state, lineHigh);
    }
    this.meipUp = this.best() !== 0;
    this.meip.set(this.meipUp);
  }
}
