import { describe, expect, it } from 'vitest';
import { Machine } from '../runtime/machine.js';
import { DeterministicEnv } from '../runtime/env/deterministic.js';
import type { IrqLine, MmioDevice } from '../runtime/types.js';
import { MIP_MEIP } from '../runtime/cpu/hart.js';

/** A stand-in virtio device: one register, and an interrupt raised by writing 1 to +0x50. */
class FakeVirtio implements MmioDevice {
  reg = 0;
  constructor(readonly id: number, private readonly irq: IrqLine) {}
  read(offset: number): number {
    return offset === 0 ? 0x7472_6976 : offset === 8 ? this.id : offset === 0x60 ? this.reg : 0;
  }
  write(offset: number, _size: 1 | 2 | 4, value: number): void {
    if (offset === 0x60) this.reg = value;
    if (offset === 0x50) this.irq.set(value === 1);
  }
  save() { return { reg: this.reg }; }
  load(s: unknown) { this.reg = (s as { reg: number }).reg; }
}

const slotBase = (n: number) => 0x1000_1000 + n * 0x1000;

/** Read a device register as a guest load would reach it: through the bus's address decode. */
const mmioRead = (m: Machine, addr: number) => {
  const i = m.bus.deviceAt(addr);
  return m.bus.device(i).read(addr - m.bus.deviceBase(i), 4);
};

describe('virtio-mmio slots', () => {
  it('answers every empty slot with the magic, version 2 and device ID 0, as QEMU does', () => {
    const m = new Machine({ env: new DeterministicEnv() });
    for (let n = 0; n < 8; n++) {
      expect(mmioRead(m, slotBase(n))).toBe(0x7472_6976);
      expect(mmioRead(m, slotBase(n) + 4)).toBe(2);
      expect(mmioRead(m, slotBase(n) + 8)).toBe(0);
    }
  });

  it('places devices from slot 7 down, each wired to PLIC source 1 + slot', () => {
    const m = new Machine({
      env: new DeterministicEnv(),
      virtio: [(irq) => new FakeVirtio(2, irq), (irq) => new FakeVirtio(1, irq)],
    });
    expect(mmioRead(m, slotBase(7) + 8)).toBe(2);
    expect(mmioRead(m, slotBase(6) + 8)).toBe(1);
    expect(mmioRead(m, slotBase(5) + 8)).toBe(0);
    // Enable source 8 (slot 7) at priority 1, then let the device raise its line.
    m.plic.write(8 * 4, 4, 1);
    m.plic.write(0x2000, 4, 1 << 8);
    (m.virtio[7] as FakeVirtio).write(0x50, 4, 1);
    expect(m.hart.mip & MIP_MEIP).toBe(MIP_MEIP);
    expect(m.plic.read(0x20_0004, 4)).toBe(8);
  });

  it('carries virtio device state through snapshot and restore, and into the digest', () => {
    const make = () => ({ env: new DeterministicEnv(), virtio: [(irq: IrqLine) => new FakeVirtio(2, irq)] });
    const a = new Machine(make());
    const before = a.digest();
    (a.virtio[7] as FakeVirtio).reg = 1234;
    expect(a.digest()).not.toBe(before);
    const b = Machine.restore(a.snapshot(), make());
    expect((b.virtio[7] as FakeVirtio).reg).toBe(1234);
    expect(b.digest()).toBe(a.digest());
  });

  it('refuses more than eight devices', () => {
    expect(() => new Machine({ env: new DeterministicEnv(), virtio: Array.from({ length: 9 }, () => (irq: IrqLine) => new FakeVirtio(1, irq)) })).toThrow(RangeError);
  });
});
