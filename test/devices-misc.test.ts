import { describe, expect, it } from 'vitest';
import { SifiveTest } from '../devices/sifive-test.js';
import { GoldfishRtc } from '../devices/goldfish-rtc.js';

describe('sifive_test', () => {
  const codes = (writes: number[]) => {
    const got: number[] = [];
    const t = new SifiveTest((c) => got.push(c));
    for (const w of writes) t.write(0, 4, w);
    return got;
  };
  it('powers off with 0 on PASS and on RESET', () => {
    expect(codes([0x5555, 0x7777])).toEqual([0, 0]);
  });
  it('exits with the code in the upper half on FAIL', () => {
    expect(codes([(3 << 16) | 0x3333, (0xffff << 16) | 0x3333])).toEqual([3, 0xffff]);
  });
  it('ignores other values', () => {
    expect(codes([0, 0x1234, 0x5556])).toEqual([]);
  });
});

describe('goldfish RTC', () => {
  it('samples the clock (µs) on TIME_LOW and latches the ns high half for TIME_HIGH', () => {
    let us = 1_704_067_200_123_457;
    let samples = 0;
    const rtc = new GoldfishRtc(() => { samples++; return us; });
    const lo = rtc.read(0, 4);
    us += 2 ** 40; // the clock moves between the two reads
    const hi = rtc.read(4, 4);
    // ns since the epoch pass 2^53: check the exact scaling in BigInt.
    expect((BigInt(hi) << 32n) | BigInt(lo)).toBe(1_704_067_200_123_457_000n);
    expect(samples).toBe(1);
  });

  it('stores the alarm registers without firing them', () => {
    const rtc = new GoldfishRtc(() => 0);
    rtc.write(8, 4, 0xdead_beef);
    rtc.write(0x0c, 4, 0x1234);
    rtc.write(0x10, 4, 1);
    expect([rtc.read(8, 4), rtc.read(0x0c, 4), rtc.read(0x10, 4)]).toEqual([0xdead_beef, 0x1234, 1]);
    const copy = new GoldfishRtc(() => 0);
    copy.load(rtc.save());
    expect(copy.save()).toEqual(rtc.save());
  });
});
