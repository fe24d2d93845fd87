// The instruction table (runtime/cpu/insn.ts) is the one list of instructions: every Op has
// exactly one row, rows never overlap, the decoder and disassembler follow the rows, the
// interpreter has a case for every row, and the translator either emits every row or hands
// it back to the interpreter on purpose.
import { describe, expect, it } from 'vitest';
import { Exit } from '../runtime/types.js';
import { INSNS, INSN_BY_OP, Op, type Insn } from '../runtime/cpu/insn.js';
import { decode, disasm, lookup, newDecoded, OPS } from '../runtime/cpu/decode.js';
import { Csr } from '../runtime/cpu/csr.js';
import * as A from './cpu-asm.js';
import { RAM, rig } from './cpu-asm.js';


/** A word of row `i` with its free fields filled from `seed` (registers x1..x7 only). */
function sample(i: Insn, seed: number): number {
  // Free bits: everything the mask leaves open. Keep register fields small and the csr
  // field on mscratch so that the instruction runs without side effects elsewhere.
  let w = (i.match | (seed & ~i.mask)) >>> 0;
  const regField = (shift: number): void => {
    if ((i.mask >>> shift) & 31) return;
    w = ((w & ~(31 << shift)) | ((1 + ((w >>> shift) % 7)) << shift)) >>> 0;
  };
  const f = i.fmt;
  if (f !== 'S' && f !== 'B' && f !== 'None') regField(7);
  if (f === 'R' || f === 'I' || f === 'Ishamt' || f === 'Iload' || f === 'S' || f === 'B' || f === 'Csr') regField(15);
  if (f === 'R' || f === 'S' || f === 'B') regField(20);
  if (i.fmt === 'Csr' || i.fmt === 'Csri') w = ((w & 0xfffff) | (Csr.mscratch << 20)) >>> 0;
  return w;
}

describe('instruction table', () => {
  it('has exactly one row per Op besides Undecoded and Illegal, named after it', () => {
    const ops = Object.entries(Op).filter(([k]) => k !== 'Undecoded' && k !== 'Illegal');
    expect(INSNS).toHaveLength(ops.length);
    for (const [key, op] of ops) {
      const rows = INSNS.filter((r) => r.op === op);
      expect(rows, key).toHaveLength(1);
      expect(rows[0]!.name.replace('.', ''), key).toBe(key.toLowerCase());
      expect(INSN_BY_OP[op]).toBe(rows[0]);
    }
    expect(new Set(Object.values(Op)).size).toBe(Object.values(Op).length);
  });

  it('has rows that never match the same word (match within mask, no overlap)', () => {
    for (const r of INSNS) {
      expect((r.match & ~r.mask) >>> 0, r.name).toBe(0);
      expect(r.match & 3, `${r.name}: 32-bit encodings have bits 1:0 = 11`).toBe(3);
    }
    for (const p of INSNS) {
      for (const q of INSNS) {
        if (p === q) continue;
        // Both match some word iff they agree on the bits both masks fix.
        const both = (p.mask & q.mask) >>> 0;
        expect(((p.match & both) >>> 0) === ((q.match & both) >>> 0), `${p.name} / ${q.name}`).toBe(false);
      }
    }
  });

  it('decodes every row from its own encodings, whatever its free bits hold', () => {
    const d = newDecoded();
    for (const r of INSNS) {
      for (const seed of [0, 0xffffffff, 0x12345678, 0x9abcdef0, 0x55555555]) {
        const w = (r.match | (seed & ~r.mask)) >>> 0;
        expect(lookup(w), `${r.name} ${w.toString(16)}`).toBe(r);
        decode(w, d);
        expect(d.op).toBe(r.op);
      }
    }
    // Compressed and reserved words match no row.
    for (const w of [0, 0x0001, 0xffffffff, 0x0000007b, 0x00003003, 0x04000033, 0x0000406f & ~0x7f]) {
      expect(lookup(w), w.toString(16)).toBeUndefined();
    }
  });

  it('extracts the immediate its declared format says (checked against the test assembler)', () => {
    const d = newDecoded();
    const cases: [number, number][] = [
      [A.addi(1, 2, -2048), -2048], [A.lw(1, 2, 2047), 2047], [A.sw(3, 2, -4), -4], [A.beq(1, 2, -4096), -4096],
      [A.bne(1, 2, 4094), 4094], [A.lui(1, 0xfffff), 0xfffff000 | 0], [A.jal(1, -1048576), -1048576],
      [A.jal(1, 1048574), 1048574], [A.srai(1, 2, 31), 31], [A.slli(1, 2, 7), 7], [A.csrrwi(1, 0x340, 17), 17],
      [A.jalr(0, 1, -1), -1],
    ];
    for (const [w, imm] of cases) {
      decode(w, d);
      expect(d.imm, disasm(w)).toBe(imm);
    }
  });

  it('disassembles every row by its format', () => {
    expect(disasm(A.add(1, 2, 3))).toBe('add x1, x2, x3');
    expect(disasm(A.addi(1, 2, -5))).toBe('addi x1, x2, -5');
    expect(disasm(A.srai(1, 2, 3))).toBe('srai x1, x2, 3');
    expect(disasm(A.lbu(1, 2, 8))).toBe('lbu x1, 8(x2)');
    expect(disasm(A.sh(4, 2, -8))).toBe('sh x4, -8(x2)');
    expect(disasm(A.bgeu(1, 2, 16))).toBe('bgeu x1, x2, 16');
    expect(disasm(A.lui(5, 0x12345))).toBe('lui x5, 0x12345');
    expect(disasm(A.jal(1, -8))).toBe('jal x1, -8');
    expect(disasm(A.jalr(0, 1, 0))).toBe('jalr x0, x1, 0');
    expect(disasm(A.csrrs(3, 0x300, 4))).toBe('csrrs x3, 0x300, x4');
    expect(disasm(A.csrrci(3, 0x300, 8))).toBe('csrrci x3, 0x300, 8');
    expect(disasm(A.fencei())).toBe('fence.i');
    expect(disasm(0)).toBe('illegal 0x0');
    for (const r of INSNS) expect(disasm(sample(r, 0x2468ace)).split(' ')[0], r.name).toBe(r.name);
    for (const r of INSNS) expect(OPS[r.op]).toEqual({ name: r.name, fmt: r.fmt });
  });

  it('has an interpreter case for every row: none of them runs as an illegal instruction', () => {
    const HANDLER = RAM + 0x400;
    for (const r of INSNS) {
      for (const seed of [0, 0x0badf00d]) {
        const w = sample(r, seed);
        const t = rig([w], { jit: false });
        A.load(t.bus, HANDLER, [A.addi(0, 0, 0)]);
        t.hart.csr.mtvec = HANDLER;
        t.hart.csr.mcause = 0xdead;
        for (let k = 1; k < 8; k++) t.hart.x[k] = RAM + 0x800 + 16 * k;
        const exit = t.hart.run(1);
        expect([Exit.Budget, Exit.Wfi, Exit.Request], r.name).toContain(exit);
        // A trap retires nothing; the one instruction run is then the handler's nop.
        expect(t.hart.icount, r.name).toBe(1);
        if (t.hart.csr.mcause !== 0xdead) {
          // Only ecall and ebreak trap by definition, and jumps to a misaligned target.
          const jump = r.jit === 'branch' || r.jit === 'jal' || r.jit === 'jalr';
          expect(jump ? [0] : r.name === 'ecall' ? [11] : r.name === 'ebreak' ? [3] : [], r.name).toContain(t.hart.csr.mcause);
        }
      }
    }
  });

  it('translates every row the table marks for the JIT, and hands back exactly the others', () => {
    for (const r of INSNS) {
      const w = sample(r, 0); // immediates 0: in-RAM aligned accesses, jumps to themselves
      // The row, then a jump to itself: a block holding the row retires it; a hand-back
      // leaves the JIT with nothing to run at that pc.
      const t = rig([w, A.jal(0, 0)], { jit: true });
      for (let k = 1; k < 8; k++) t.hart.x[k] = RAM + 0x800 + 16 * k;
      const jit = (t.hart as unknown as { jit: { run(pc: number, budget: number): number; translated: number } }).jit;
      const retired = jit.run(RAM, 2);
      if (r.jit === 'interp') {
        expect(retired, r.name).toBe(0);
      } else {
        expect(jit.translated, r.name).toBeGreaterThan(0);
        expect(retired, r.name).toBeGreaterThanOrEqual(1);
      }
    }
  });
});
