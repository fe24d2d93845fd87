import type { MmioDevice } from '../runtime/types.js';

const FINISHER_FAIL = 0x3333;
const FINISHER_PASS = 0x5555;
const FINISHER_RESET = 0x7777;

/**
 * QEMU's sifive_test finisher. 0x5555 powers off with code 0; (code<<16)|0x3333 exits with
 * `code`. NOTE 0x7777 (reset) is treated as power off with code 0: ftvm has no reboot path,
 * and a guest that asks to reset has finished its run. Other values are ignored, as in QEMU.
 */
export class SifiveTest implements MmioDevice {
  constructor(private readonly powerOff: (code: number) => void) {}

  read(_offset: number, _size: 1 | 2 | 4): number {
    return 0;
  }

  write(offset: number, _size: 1 | 2 | 4, value: number): void {
    if (offset !== 0) return;
    const status = value & 0xffff;
    if (status === FINISHER_FAIL) this.powerOff((value >>> 16) & 0xffff);
    else if (status === FINISHER_PASS || status === FINISHER_RESET) this.powerOff(0);
  }

  save(): Record<string, never> {
    return {};
  }

  load(_state: unknown): void {}
}
