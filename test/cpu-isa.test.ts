// RV32IM instruction semantics, run both by the reference interpreter and through the JIT.
import { describe, expect, it } from 'vitest';
import { Exit } from '../runtime/types.js';
import * as A from './cpu-asm.js';
import { RAM, rig } from './cpu-asm.js';

const INT_MIN = -0x80000000;

/** Run `words` with registers preset, for exactly `n` instructions (default: all of them). */
function exec(jit: boolean, words: number[], regs: Record<number, number> = {}, n = words.length) {
  const t = rig(words, { jit });
  for (const [k, v] of Object.entries(regs)) t.hart.x[Number(k)] = v;
  const exit = t.hart.run(n);
  return { ...t, exit, x: t.hart.x };
}

/** Result in x3 of `op x3, x1, x2` with x1 = a, x2 = b. */
function rr(jit: boolean, op: (rd: number, a: number, b: number) => number, a: number, b: number): number {
  return exec(jit, [op(3, 1, 2)], { 1: a, 2: b }).x[3]!;
}

const bigMulHigh = (a: bigint, b: bigint): number => Number(BigInt.asIntN(32, (a * b) >> 32n));

describe.each([false, true])('RV32IM (jit=%s)', (jit) => {
  it('computes register-register ALU ops with wraparound', () => {
    expect(rr(jit, A.add, 0x7fffffff, 1)).toBe(INT_MIN);
    expect(rr(jit, A.sub, INT_MIN, 1)).toBe(0x7fffffff);
    expect(rr(jit, A.xor, 0x0f0f0f0f, -1)).toBe(~0x0f0f0f0f);
    expect(rr(jit, A.or, 0x0f00, 0x00f0)).toBe(0x0ff0);
    expect(rr(jit, A.and, 0x0ff0, 0x00ff)).toBe(0x00f0);
    expect(rr(jit, A.slt, -1, 0)).toBe(1);
    expect(rr(jit, A.slt, 0, -1)).toBe(0);
    expect(rr(jit, A.sltu, -1, 0)).toBe(0);
    expect(rr(jit, A.sltu, 0, -1)).toBe(1);
  });

  it('masks register shift amounts to 5 bits (§2.4.2)', () => {
    expect(rr(jit, A.sll, 1, 33)).toBe(2);
    expect(rr(jit, A.srl, INT_MIN, 31)).toBe(1);
    expect(rr(jit, A.srl, INT_MIN, 63)).toBe(1);
    expect(rr(jit, A.sra, INT_MIN, 31)).toBe(-1);
    expect(rr(jit, A.sra, INT_MIN, 32)).toBe(INT_MIN);
  });

  it('computes immediate ops with sign-extended 12-bit immediates', () => {
    const r = exec(jit, [
      A.addi(1, 0, -1), A.slti(2, 1, 0), A.sltiu(3, 0, -1), A.xori(4, 1, 0x7ff), A.ori(5, 0, -2048),
      A.andi(6, 1, 0x0f0), A.slli(7, 1, 31), A.srli(8, 1, 28), A.srai(9, 7, 4),
    ]);
    expect(Array.from(r.x.slice(1, 10))).toEqual([-1, 1, 1, ~0x7ff, -2048, 0xf0, INT_MIN, 15, INT_MIN >> 4]);
  });

  it('builds constants with lui/auipc and ignores writes to x0', () => {
    const r = exec(jit, [A.lui(1, 0xfffff), A.auipc(2, 1), A.addi(0, 0, 5), A.lui(0, 1), A.add(3, 0, 0)]);
    expect(r.x[1]).toBe(0xfffff000 | 0);
    expect(r.x[2]).toBe((RAM + 4 + 0x1000) | 0);
    expect(r.x[0]).toBe(0);
    expect(r.x[3]).toBe(0);
  });

  it('multiplies: low word and all three high forms match BigInt', () => {
    const vals = [0, 1, -1, 2, INT_MIN, 0x7fffffff, 0x12345678, -0x12345678, 0xffff, 0x10000, -3];
    for (const a of vals) {
      for (const b of vals) {
        const A64 = BigInt(a), B64 = BigInt(b), AU = BigInt(a >>> 0), BU = BigInt(b >>> 0);
        expect(rr(jit, A.mul, a, b)).toBe(Number(BigInt.asIntN(32, A64 * B64)));
        expect(rr(jit, A.mulh, a, b)).toBe(bigMulHigh(A64, B64));
        expect(rr(jit, A.mulhu, a, b)).toBe(bigMulHigh(AU, BU));
        expect(rr(jit, A.mulhsu, a, b)).toBe(bigMulHigh(A64, BU));
      }
    }
  });

  it('divides with the §13.2 special cases: x/0 and INT_MIN/-1', () => {
    expect(rr(jit, A.div, 7, 0)).toBe(-1);
    expect(rr(jit, A.divu, 7, 0)).toBe(-1);
    expect(rr(jit, A.rem, 7, 0)).toBe(7);
    expect(rr(jit, A.remu, -7, 0)).toBe(-7);
    expect(rr(jit, A.div, INT_MIN, -1)).toBe(INT_MIN);
    expect(rr(jit, A.rem, INT_MIN, -1)).toBe(0);
    expect(rr(jit, A.div, -7, 2)).toBe(-3);
    expect(rr(jit, A.rem, -7, 2)).toBe(-1);
    expect(rr(jit, A.divu, -7, 2)).toBe(0x7ffffffc);
    expect(rr(jit, A.remu, -7, 2)).toBe(1);
  });

  it('sign- and zero-extends loads and stores each width', () => {
    const data = RAM + 0x1000;
    const r = exec(jit, [
      ...A.li(1, data), ...A.li(2, 0x8081f2f3),
      A.sw(2, 1, 0), A.lb(3, 1, 0), A.lbu(4, 1, 0), A.lh(5, 1, 2), A.lhu(6, 1, 2), A.lw(7, 1, 0),
      A.sb(2, 1, 8), A.sh(2, 1, 12), A.lw(8, 1, 8), A.lw(9, 1, 12),
    ]);
    expect(r.x[3]).toBe(-13); // 0xf3
    expect(r.x[4]).toBe(0xf3);
    expect(r.x[5]).toBe((0x8081 << 16) >> 16);
    expect(r.x[6]).toBe(0x8081);
    expect(r.x[7]).toBe(0x8081f2f3 | 0);
    expect(r.x[8]).toBe(0xf3);
    expect(r.x[9]).toBe(0xf2f3);
    expect(r.bus.dirty[1]).toBe(1);
  });

  it('performs misaligned loads and stores (as QEMU does)', () => {
    const data = RAM + 0x1001;
    const r = exec(jit, [...A.li(1, data), ...A.li(2, 0x11223344), A.sw(2, 1, 0), A.lw(3, 1, 0), A.lh(4, 1, 1), A.lhu(5, 1, 3)]);
    expect(r.x[3]).toBe(0x11223344);
    expect(r.x[4]).toBe(0x2233); // bytes 0x1002..0x1003
    expect(r.bus.ram[0x1001]).toBe(0x44);
    expect(r.bus.ram[0x1004]).toBe(0x11);
    expect(r.x[5]).toBe(r.bus.ram[0x1004]! | (r.bus.ram[0x1005]! << 8));
    expect(r.hart.icount).toBe(8);
  });

  it('takes each branch kind only when its condition holds', () => {
    const kinds = [
      [A.beq, (a: number, b: number) => a === b], [A.bne, (a: number, b: number) => a !== b],
      [A.blt, (a: number, b: number) => a < b], [A.bge, (a: number, b: number) => a >= b],
      [A.bltu, (a: number, b: number) => a >>> 0 < b >>> 0], [A.bgeu, (a: number, b: number) => a >>> 0 >= b >>> 0],
    ] as const;
    for (const [br, cond] of kinds) {
      for (const [a, b] of [[1, 1], [-1, 1], [1, -1], [0, 0x7fffffff]] as const) {
        // taken: skip the addi x3 (+8); not taken: run it.
        const r = exec(jit, [br(1, 2, 8), A.addi(3, 0, 1), A.addi(4, 0, 1)], { 1: a, 2: b }, 2);
        expect(r.x[3]).toBe(cond(a, b) ? 0 : 1);
        expect(r.hart.pc).toBe(cond(a, b) ? RAM + 12 : RAM + 8);
      }
    }
  });

  it('links jal/jalr and clears jalr target bit 0', () => {
    const r = exec(jit, [A.jal(1, 8), A.addi(5, 0, 1), ...A.li(2, RAM + 21), A.jalr(3, 2, -1), A.addi(6, 0, 1)], {}, 4);
    expect(r.x[1]).toBe((RAM + 4) | 0);
    expect(r.x[3]).toBe((RAM + 20) | 0);
    expect(r.hart.pc).toBe(RAM + 20);
    expect(r.x[5]).toBe(0);
  });

  it('jalr reads rs1 before writing rd when they are the same register', () => {
    const r = exec(jit, [...A.li(1, RAM + 16), A.jalr(1, 1, 0), A.addi(5, 0, 1), A.addi(6, 0, 1)], {}, 4);
    expect(r.x[1]).toBe((RAM + 12) | 0);
    expect(r.x[5]).toBe(0);
    expect(r.x[6]).toBe(1);
  });

  it('treats fence and fence.i as no-ops that retire', () => {
    const r = exec(jit, [A.fence(), A.fencei(), A.addi(1, 0, 3)]);
    expect(r.exit).toBe(Exit.Budget);
    expect(r.x[1]).toBe(3);
    expect(r.hart.icount).toBe(3);
  });

  it('returns from calls to wherever the link register points at the time', () => {
    // loop: call f; x3 += 1; (f may have bumped ra past the x3 increment); x4 += 1; repeat.
    // f: x2 += 1; if x2 is odd, ra += 4; ret
    const prog = [
      A.jal(1, 20), A.addi(3, 3, 1), A.addi(4, 4, 1), A.jal(0, -12), 0,
      A.addi(2, 2, 1), A.andi(5, 2, 1), A.beq(5, 0, 8), A.addi(1, 1, 4), A.jalr(0, 1, 0),
    ];
    // per pass: jal, addi x2, andi, beq, [addi ra], ret, [addi x3], addi x4, jal = 8 instructions
    const r = exec(jit, prog, {}, 8 * 10);
    expect(r.x[2]).toBe(10);
    expect(r.x[4]).toBe(10);
    expect(r.x[3]).toBe(5); // skipped on the 5 odd passes
    expect(r.hart.icount).toBe(80);
  });

  it('refuses a budget that is not a finite count', () => {
    const t = rig([A.jal(0, 0)], { jit });
    expect(() => t.hart.run(Infinity)).toThrow(RangeError);
    expect(() => t.hart.run(1.5)).toThrow(RangeError);
    expect(t.hart.run(0)).toBe(Exit.Budget);
    expect(t.hart.icount).toBe(0);
  });

  it('retires exactly the budget, also inside a self-looping block', () => {
    // x1 counts loop iterations forever: addi; j -4.
    for (const n of [1, 2, 3, 7, 100, 1001]) {
      const r = exec(jit, [A.addi(2, 0, 0), A.addi(1, 1, 1), A.jal(0, -4)], {}, n);
      expect(r.exit).toBe(Exit.Budget);
      expect(r.hart.icount).toBe(n);
      expect(r.x[1]).toBe(Math.floor(n / 2));
    }
  });
});
