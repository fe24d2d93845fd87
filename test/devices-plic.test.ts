import { describe, expect, it } from 'vitest';
import { PLIC_SOURCES, Plic } from '../devices/plic.js';

const ENABLE = 0x2000, THRESHOLD = 0x20_0000, CLAIM = 0x20_0004, PENDING = 0x1000;

function rig() {
  let meip = false;
  const plic = new Plic({ set: (l) => { meip = l; } });
  return { plic, meip: () => meip };
}

function enable(plic: Plic, ...sources: number[]) {
  const words = [0, 0];
  for (const n of sources) words[n >>> 5]! |= 1 << (n & 31);
  plic.write(ENABLE, 4, words[0]! >>> 0);
  plic.write(ENABLE + 4, 4, words[1]! >>> 0);
}

describe('PLIC', () => {
  it('raises MEIP only for a pending, enabled source with priority above threshold', () => {
    const { plic, meip } = rig();
    const uart = plic.line(10);
    uart.set(true);
    expect(plic.read(PENDING, 4)).toBe(1 << 10);
    expect(meip()).toBe(false); // not enabled, priority 0
    enable(plic, 10);
    expect(meip()).toBe(false); // priority 0 never interrupts
    plic.write(10 * 4, 4, 1);
    expect(meip()).toBe(true);
    plic.write(THRESHOLD, 4, 1);
    expect(meip()).toBe(false);
    plic.write(THRESHOLD, 4, 0);
    expect(meip()).toBe(true);
  });

  it('claims the highest priority first, lowest id on ties, then 0', () => {
    const { plic } = rig();
    for (const n of [3, 5, 40]) { plic.write(n * 4, 4, n === 40 ? 7 : 2); plic.line(n).set(true); }
    enable(plic, 3, 5, 40);
    expect(plic.read(CLAIM, 4)).toBe(40);
    expect(plic.read(CLAIM, 4)).toBe(3);
    expect(plic.read(CLAIM, 4)).toBe(5);
    expect(plic.read(CLAIM, 4)).toBe(0);
  });

  it('keeps a claimed source quiet until completion, then re-pends it if the line is still high', () => {
    const { plic, meip } = rig();
    plic.write(10 * 4, 4, 1);
    enable(plic, 10);
    const line = plic.line(10);
    line.set(true);
    expect(plic.read(CLAIM, 4)).toBe(10);
    expect(meip()).toBe(false);
    line.set(true); // still asserted while in service: gateway holds it
    expect(meip()).toBe(false);
    plic.write(CLAIM, 4, 10);
    expect(meip()).toBe(true);
    expect(plic.read(CLAIM, 4)).toBe(10);
    line.set(false);
    plic.write(CLAIM, 4, 10);
    expect(meip()).toBe(false);
    expect(plic.read(CLAIM, 4)).toBe(0);
  });

  it('withdraws an unclaimed request when its level-triggered line drops', () => {
    const { plic, meip } = rig();
    plic.write(4, 4, 1);
    enable(plic, 1);
    plic.line(1).set(true);
    expect(meip()).toBe(true);
    plic.line(1).set(false);
    expect(meip()).toBe(false);
    expect(plic.read(PENDING, 4)).toBe(0);
  });

  it('hard-wires source 0 and bits past source 53 to zero', () => {
    const { plic } = rig();
    plic.write(ENABLE, 4, 0xffff_ffff);
    plic.write(ENABLE + 4, 4, 0xffff_ffff);
    expect(plic.read(ENABLE, 4)).toBe(0xffff_fffe);
    expect(plic.read(ENABLE + 4, 4)).toBe(2 ** (PLIC_SOURCES + 1 - 32) - 1);
    expect(() => plic.line(0)).toThrow(RangeError);
    expect(() => plic.line(PLIC_SOURCES + 1)).toThrow(RangeError);
  });

  it('masks priorities to 3 bits', () => {
    const { plic } = rig();
    plic.write(8, 4, 0xff);
    expect(plic.read(8, 4)).toBe(7);
  });

  it('restores claimed and pending state so service continues after a snapshot', () => {
    const a = rig();
    a.plic.write(10 * 4, 4, 1);
    enable(a.plic, 10);
    a.plic.line(10).set(true);
    expect(a.plic.read(CLAIM, 4)).toBe(10);
    const b = rig();
    b.plic.load(JSON.parse(JSON.stringify(a.plic.save())));
    expect(b.meip()).toBe(false);
    b.plic.write(CLAIM, 4, 10);
    expect(b.meip()).toBe(true);
  });
});
