// The bus: RAM views, device windows, dirty pages and code invalidation (DESIGN §1, §3).
import { describe, expect, it } from 'vitest';
import { Bus, type CodeSink } from '../runtime/bus.js';
import type { MmioDevice } from '../runtime/types.js';

const RAM = 0x8000_0000;
const dev = (): MmioDevice => ({ read: () => 0, write: () => {}, save: () => null, load: () => {} });

describe('Bus', () => {
  it('shares one little-endian buffer between the byte and word views', () => {
    const bus = new Bus(RAM, 8192);
    bus.writeRam(RAM + 4, Uint8Array.of(0x78, 0x56, 0x34, 0x12));
    expect(bus.ram32[1]).toBe(0x12345678);
    expect(Array.from(bus.readRam(RAM + 5, 2))).toEqual([0x56, 0x34]);
  });

  it('checks RAM bounds for host access', () => {
    const bus = new Bus(RAM, 4096);
    expect(bus.inRam(RAM, 4096)).toBe(true);
    expect(bus.inRam(RAM + 4093, 4)).toBe(false);
    expect(bus.inRam(RAM - 1, 1)).toBe(false);
    expect(() => bus.writeRam(RAM + 4095, Uint8Array.of(1, 2))).toThrow(RangeError);
    expect(() => bus.readRam(0x1000, 1)).toThrow(RangeError);
  });

  it('marks every touched 4 KiB page dirty on host writes', () => {
    const bus = new Bus(RAM, 4 * 4096);
    bus.writeRam(RAM + 4095, Uint8Array.of(1, 2));
    expect(Array.from(bus.dirty)).toEqual([1, 1, 0, 0]);
  });

  it('finds devices by address and refuses overlaps', () => {
    const bus = new Bus(RAM, 4096);
    const a = dev(), b = dev();
    bus.map(0x1000_0000, 0x100, a);
    bus.map(0x0200_0000, 0x1_0000, b);
    expect(bus.device(bus.deviceAt(0x1000_00ff))).toBe(a);
    expect(bus.deviceBase(bus.deviceAt(0x0200_bff8))).toBe(0x0200_0000);
    expect(bus.deviceAt(0x1000_0100)).toBe(-1);
    expect(() => bus.map(0x1000_0080, 0x100, dev())).toThrow(/overlaps another/);
    expect(() => bus.map(RAM - 0x100, 0x200, dev())).toThrow(/overlaps RAM/);
  });

  it('tells the code sink about writes into granules that hold code, and only those', () => {
    const bus = new Bus(RAM, 8192);
    const seen: (number | 'all')[] = [];
    const sink: CodeSink = { dropGranule: (g) => seen.push(g), dropAll: () => seen.push('all') };
    bus.codeSink = sink;
    bus.code[1] = 1;
    bus.writeRam(RAM + 0x000, Uint8Array.of(1)); // granule 0: no code
    bus.writeRam(RAM + 0x1fe, Uint8Array.of(1, 2, 3, 4)); // granules 1 and 2
    bus.invalidateAll();
    expect(seen).toEqual([1, 'all']);
    expect(bus.code[1]).toBe(0);
  });
});
