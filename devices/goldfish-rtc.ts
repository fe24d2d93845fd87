import type { MmioDevice } from '../runtime/types.js';

const TIME_LOW = 0x00;
const TIME_HIGH = 0x04;
const ALARM_LOW = 0x08;
const ALARM_HIGH = 0x0c;
const IRQ_ENABLED = 0x10;

const TWO32 = 0x1_0000_0000;

export interface GoldfishRtcState {
  timeHigh: number;
  alarmLow: number;
  alarmHigh: number;
  irqEnabled: number;
}

/**
 * Goldfish RTC: nanoseconds since the epoch. Reading TIME_LOW samples the clock (one env value,
 * logged) and latches the high half, so a LOW-then-HIGH pair is consistent as on QEMU.
 * NOTE the alarm registers are stored and read back but never fire: no ftvm guest uses them,
 * and an alarm would be one more asynchronous input to log.
 * NOTE ns since the epoch exceeds 2^53, so the env's value (logged, and exact only below
 * 2^53) is in microseconds; the device scales it to ns with exact 32-bit halves.
 */
export class GoldfishRtc implements MmioDevice {
  private timeHigh = 0;
  private alarmLow = 0;
  private alarmHigh = 0;
  private irqEnabled = 0;

  /** `now` gives microseconds since the epoch (the env's 'rtc' value). */
  constructor(private readonly now: () => number) {}

  read(offset: number, _size: 1 | 2 | 4): number {
    switch (offset) {
      case TIME_LOW: {
        const us = this.now();
        const usHigh = Math.floor(us / TWO32);
        const lowNs = (us - usHigh * TWO32) * 1000; // < 2^42: exact
        const carry = Math.floor(lowNs / TWO32);
        this.timeHigh = (usHigh * 1000 + carry) >>> 0;
        return (lowNs - carry * TWO32) >>> 0;
      }
      case TIME_HIGH: return this.timeHigh;
      case ALARM_LOW: return this.alarmLow;
      case ALARM_HIGH: return this.alarmHigh;
      case IRQ_ENABLED: return this.irqEnabled;
      default: return 0;
    }
  }

  write(offset: number, _size: 1 | 2 | 4, value: number): void {
    switch (offset) {
      case ALARM_LOW: this.alarmLow = value >>> 0; return;
      case ALARM_HIGH: this.alarmHigh = value >>> 0; return;
      case IRQ_ENABLED: this.irqEnabled = value & 1; return;
      default: return;
    }
  }

  save(): GoldfishRtcState {
    return { timeHigh: this.timeHigh, alarmLow: this.alarmLow, alarmHigh: this.alarmHigh, irqEnabled: this.irqEnabled };
  }

  load(state: unknown): void {
    const s = state as GoldfishRtcState;
    this.timeHigh = s.timeHigh >>> 0;
    this.alarmLow = s.alarmLow >>> 0;
    this.alarmHigh = s.alarmHigh >>> 0;
    this.irqEnabled = s.irqEnabled & 1;
  }
}
