import { describe, expect, it } from 'vitest';
import { Clint } from '../devices/clint.js';

function rig(mtime = 0) {
  const lines = { msip: [] as boolean[], mtip: [] as boolean[] };
  let exits = 0;
  let now = mtime;
  const clint = new Clint({
    msip: { set: (l) => lines.msip.push(l) },
    mtip: { set: (l) => lines.mtip.push(l) },
    mtime: () => now,
    requestExit: () => { exits++; },
  });
  return { clint, lines, exits: () => exits, setNow: (t: number) => { now = t; } };
}

describe('CLINT', () => {
  it('drives MSIP from bit 0 of msip', () => {
    const r = rig();
    r.clint.write(0, 4, 0xffff_ffff);
    expect(r.clint.read(0, 4)).toBe(1);
    r.clint.write(0, 4, 2);
    expect(r.clint.read(0, 4)).toBe(0);
    expect(r.lines.msip).toEqual([true, false]);
  });

  it('reads mtime as two 32-bit halves of the env clock', () => {
    const r = rig(0x1_2345_6789);
    expect(r.clint.read(0xbff8, 4)).toBe(0x2345_6789);
    expect(r.clint.read(0xbffc, 4)).toBe(1);
  });

  it('ignores writes to mtime (host time is not the guest\'s to set)', () => {
    const r = rig(42);
    r.clint.write(0xbff8, 4, 7);
    expect(r.clint.read(0xbff8, 4)).toBe(42);
  });

  it('resets mtimecmp to all ones, composes halves, and ends the batch on each write', () => {
    const r = rig();
    expect(r.clint.mtimecmp).toBe(0xffff_ffff * 2 ** 32 + 0xffff_ffff);
    r.clint.write(0x4004, 4, 0);
    r.clint.write(0x4000, 4, 1000);
    expect(r.clint.mtimecmp).toBe(1000);
    expect(r.clint.read(0x4000, 4)).toBe(1000);
    expect(r.clint.read(0x4004, 4)).toBe(0);
    expect(r.exits()).toBe(2);
  });

  it('raises MTIP only through raiseTimer and lowers it on an mtimecmp write', () => {
    const r = rig(5000);
    r.clint.write(0x4004, 4, 0);
    r.clint.write(0x4000, 4, 10);
    // mtime is already past mtimecmp, but only the env may decide when MTIP rises.
    expect(r.clint.timerPending).toBe(false);
    r.clint.raiseTimer();
    expect(r.clint.timerPending).toBe(true);
    r.clint.write(0x4000, 4, 9000);
    expect(r.clint.timerPending).toBe(false);
    expect(r.lines.mtip).toEqual([true, false]);
  });

  it('round-trips its state through save/load and re-drives the lines', () => {
    const a = rig();
    a.clint.write(0, 4, 1);
    a.clint.write(0x4000, 4, 77);
    a.clint.write(0x4004, 4, 0); // armed: the env fires only an armed timer
    a.clint.raiseTimer();
    const b = rig();
    b.clint.load(JSON.parse(JSON.stringify(a.clint.save())));
    expect(b.clint.save()).toEqual(a.clint.save());
    expect(b.lines.msip.at(-1)).toBe(true);
    expect(b.lines.mtip.at(-1)).toBe(true);
  });
});
