import { timerMachine } from '../machines/timer.machine.js';
import { DeviceChart } from './chart.js';
import type { ChartInspect, IrqLine, MmioDevice } from '../runtime/types.js';

/** Register offsets of the SiFive CLINT as QEMU `virt` places it (one hart). */
const MSIP = 0x0000;
const MTIMECMP_LO = 0x4000;
const MTIMECMP_HI = 0x4004;
const MTIME_LO = 0xbff8;
const MTIME_HI = 0xbffc;

const TWO32 = 0x1_0000_0000;

export interface ClintWiring {
  msip: IrqLine;
  mtip: IrqLine;
  /** mtime in 10 MHz ticks for the instruction being executed (machine → env.value('mtime', icount)). */
  mtime: () => number;
  /** Ask the CPU to end the batch after the current instruction. */
  requestExit: () => void;
  /** Report the timer chart to an inspector (`--inspect`, the dashboard). */
  inspect?: ChartInspect;
}

export interface ClintState {
  msip: number;
  mtimecmpLo: number;
  mtimecmpHi: number;
  mtip: boolean;
}

type TimerState = 'disarmed' | 'armed' | 'pending';

/** mtimecmp at or beyond this is never reached: the chart's `far` (guests write all ones to disarm). */
const FAR = Number.MAX_SAFE_INTEGER;

/**
 * Core-local interruptor. The timer chart (machines/timer.machine.ts) decides MTIP: armed,
 * pending or disarmed; this class keeps the plain registers (msip, mtimecmp) and supplies the
 * chart's effects (the MTIP line). NOTE determinism (DESIGN §2): MTIP is not derived from
 * mtime here, because mtime is host time on the primary. A write to mtimecmp re-arms (lowering
 * MTIP) and ends the batch; the env then decides at a batch boundary when the timer fires and
 * calls `raiseTimer()`, so the interrupt lands at an icount that can be logged and replayed.
 */
export class Clint implements MmioDevice {
  private msipBit = 0;
  private cmpLo = 0xffff_ffff;
  private cmpHi = 0xffff_ffff;
  private timer: DeviceChart<typeof timerMachine>;
  private inspector: { inspect?: ChartInspect; id: string };

  constructor(private readonly wiring: ClintWiring) {
    this.inspector = { ...(wiring.inspect ? { inspect: wiring.inspect } : {}), id: 'timer' };
    this.timer = this.startTimer('disarmed');
  }

  /** Report the chart to `inspect` from now on, as actor `id` (restarted in its current state). */
  inspectWith(inspect: ChartInspect, id = 'timer'): void {
    this.inspector = { inspect, id };
    const state = this.timerState;
    this.timer.stop();
    this.timer = this.startTimer(state);
  }

  /** The timer chart's actor (for inspection and tests). */
  get timerActor(): DeviceChart<typeof timerMachine> {
    return this.timer;
  }

  /** Start the chart in `state`: at construction, or from a snapshot (no entry effects rerun). */
  private startTimer(state: TimerState): DeviceChart<typeof timerMachine> {
    const machine = timerMachine.provide({
      actions: {
        raiseMtip: () => this.wiring.mtip.set(true),
        lowerMtip: () => this.wiring.mtip.set(false),
      },
    });
    const snapshot = machine.resolveState({ value: state, context: {} });
    const { inspect, id } = this.inspector;
    return new DeviceChart(machine, snapshot, inspect ? { inspect, id } : undefined);
  }

  private get timerState(): TimerState {
    return this.timer.getSnapshot().value;
  }

  /** mtimecmp as a number (exact below 2^53; larger values only compare as "far future"). */
  get mtimecmp(): number {
    return this.cmpHi * TWO32 + this.cmpLo;
  }

  /** Whether MTIP is currently raised. */
  get timerPending(): boolean {
    return this.timerState === 'pending';
  }

  /** The env decided mtime has reached mtimecmp: raise the machine timer interrupt. */
  raiseTimer(): void {
    if (this.timerState === 'armed') this.timer.send({ type: 'timer.fired' });
  }

  read(offset: number, _size: 1 | 2 | 4): number {
    switch (offset) {
      case MSIP: return this.msipBit;
      case MTIMECMP_LO: return this.cmpLo;
      case MTIMECMP_HI: return this.cmpHi;
      case MTIME_LO: return this.wiring.mtime() >>> 0;
      case MTIME_HI: return Math.floor(this.wiring.mtime() / TWO32) >>> 0;
      default: return 0;
    }
  }

  write(offset: number, _size: 1 | 2 | 4, value: number): void {
    switch (offset) {
      case MSIP:
        this.msipBit = value & 1;
        this.wiring.msip.set(this.msipBit === 1);
        return;
      case MTIMECMP_LO:
      case MTIMECMP_HI:
      {
        const before = this.mtimecmp;
        if (offset === MTIMECMP_LO) this.cmpLo = value >>> 0;
        else this.cmpHi = value >>> 0;
        this.compareWritten();
        // The env computes the batch budget from mtimecmp: let it see an earlier deadline at
        // once. A later one needs no exit: the batch then ends at or before the old deadline,
        // where the env looks again. So a handler's usual three writes (high half all-ones,
        // low, high) end one batch, not three.
        if (this.mtimecmp < before) this.wiring.requestExit();
        return;
      }
      default:
        // mtime is read-only here: the guest cannot steer host time (writes ignored, documented).
        return;
    }
  }

  /** Tell the chart only when the write changes its state (rewriting an armed compare does not). */
  private compareWritten(): void {
    const far = this.mtimecmp >= FAR;
    if (this.timerState !== (far ? 'disarmed' : 'armed')) this.timer.send({ type: 'timer.compareWritten', far }, far ? 'far' : 'near');
  }

  save(): ClintState {
    return { msip: this.msipBit, mtimecmpLo: this.cmpLo, mtimecmpHi: this.cmpHi, mtip: this.timerPending };
  }

  load(state: unknown): void {
    const s = state as ClintState;
    this.msipBit = s.msip & 1;
    this.cmpLo = s.mtimecmpLo >>> 0;
    this.cmpHi = s.mtimecmpHi >>> 0;
    // The chart's state follows from the registers: pending if MTIP was up, else by mtimecmp.
    this.timer.stop();
    this.timer = this.startTimer(s.mtip ? 'pending' : this.mtimecmp >= FAR ? 'disarmed' : 'armed');
    this.wiring.msip.set(this.msipBit === 1);
    this.wiring.mtip.set(s.mtip);
  }
}
