import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { OutputGate, type NumberedOutput } from '../../runtime/ft/output-gate.js';

const byte = (b: number) => ({ kind: 'console' as const, icount: b, byte: b });

describe('OutputGate (the output rule)', () => {
  it('holds an output until its marker is acknowledged, then releases in order', () => {
    const out: NumberedOutput[] = [];
    const gate = new OutputGate((o) => out.push(o), () => 0);
    gate.hold(0, byte(1), 5);
    gate.hold(1, byte(2), 7);
    gate.acked(4);
    expect(out).toEqual([]);
    expect(gate.heldCount).toBe(2);
    gate.acked(6);
    expect(out.map((o) => o.index)).toEqual([0]);
    gate.acked(7);
    expect(out.map((o) => o.index)).toEqual([0, 1]);
    expect(gate.heldCount).toBe(0);
  });

  it('releaseAll frees everything; discard frees nothing', () => {
    const out: NumberedOutput[] = [];
    const gate = new OutputGate((o) => out.push(o), () => 0);
    gate.hold(0, byte(1), 5);
    expect(gate.discard().map((o) => o.index)).toEqual([0]);
    gate.hold(1, byte(2), 9);
    gate.releaseAll();
    expect(out.map((o) => o.index)).toEqual([1]);
  });

  it('never releases an output before its marker was acked, for any ack schedule', () => {
    fc.assert(
      fc.property(fc.array(fc.nat(50), { maxLength: 200 }), fc.array(fc.nat(60), { maxLength: 50 }), (steps, acks) => {
        let maxAck = -1;
        const needs: number[] = [];
        const gate = new OutputGate((o) => {
          expect(needs[o.index]!).toBeLessThanOrEqual(maxAck);
        }, () => 0);
        let seq = 0;
        steps.forEach((d, i) => {
          seq += d;
          needs.push(seq);
          gate.hold(i, byte(i), seq);
        });
        for (const a of acks) {
          maxAck = Math.max(maxAck, a);
          gate.acked(maxAck);
        }
        expect(gate.released + gate.heldCount).toBe(steps.length);
      }),
    );
  });

  it('reports hold times over every release of the run, not only the recent ones', () => {
    let now = 0;
    const gate = new OutputGate(() => undefined, () => now);
    // 2 600 outputs held 10 ms each, then 2 400 held 1 ms: the median of the run is 10 ms
    // (the last 4 096 alone would say 1 ms).
    for (let i = 0; i < 5000; i++) {
      gate.hold(i, byte(i & 0xff), i);
      now += i < 2600 ? 10 : 1;
      gate.acked(i);
    }
    const l = gate.latency();
    expect(l.samples).toBe(5000);
    expect(l.p50Ms).toBeCloseTo(10, 1);
    expect(l.p99Ms).toBeCloseTo(10, 1);
    // A late tail shows in p99 only when it is more than 1 % of the run.
    for (let i = 5000; i < 5200; i++) {
      gate.hold(i, byte(0), i);
      now += 50;
      gate.acked(i);
    }
    expect(gate.latency().p99Ms).toBeCloseTo(50, 0);
  });
});
