import type { IrqLine, MmioDevice } from '../runtime/types.js';

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
}

export interface ClintState {
  msip: number;
  mtimecmpLo: number;
  mtimecmpHi: number;
  mtip: boolean;
}

/**
 * Core-local interruptor. NOTE determinism (DESIGN §2): MTIP is not derived from mtime here,
 * because mtime is host time on the primary. A write to mtimecmp lowers MTIP and ends the batch;
 * the env then decides at a batch boundary when the timer fires and calls `raiseTimer()`, so
 * the interrupt lands at an icount that can be logged and replayed.
 */
export class Clint implements MmioDevice {
  private msipBit = 0;
  private cmpLo = 0xffff_ffff;
  private cmpHi = 0xffff_ffff;
  private mtipUp = false;

  constructor(private readonly wiring: ClintWiring) {}

  /** mtimecmp as a number (exact below 2^53; larger values only compare as "far future"). */
  get mtimecmp(): number {
    return this.cmpHi * TWO32 + this.cmpLo;
  }

  /** Whether MTIP is currently raised. */
  get timerPending(): boolean {
    return this.mtipUp;
  }

  /** The env decided mtime has reached mtimecmp: raise the machine timer interrupt. */
  raiseTimer(): void {
    this.mtipUp = true;
    this.wiring.mtip.set(true);
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
        if (offset === MTIMECMP_LO) this.cmpLo = value >>> 0;
        else this.cmpHi = value >>> 0;
        this.lowerTimer();
        this.wiring.requestExit();
        return;
      default:
        // mtime is read-only here: the guest cannot steer host time (writes ignored, documented).
        return;
    }
  }

  private lowerTimer(): void {
    if (!this.mtipUp) return;
    this.mtipUp = false;
    this.wiring.mtip.set(false);
  }

  save(): ClintState {
    return { msip: this.msipBit, mtimecmpLo: this.cmpLo, mtimecmpHi: this.cmpHi, mtip: this.mtipUp };
  }

  load(state: unknown): void {
    const s = state as ClintState;
    this.msipBit = s.msip & 1;
    this.cmpLo = s.mtimecmpLo >>> 0;
    this.cmpHi = s.mtimecmpHi >>> 0;
    this.mtipUp = s.mtip;
    this.wiring.msip.set(this.msipBit === 1);
    this.wiring.mtip.set(this.mtipUp);
  }
}
