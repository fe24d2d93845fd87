// Property: the JIT is only a speed trick. Random branchy programs (with MMIO, misaligned and
// faulting accesses, self-modifying stores, traps and timer interrupts landing at fixed
// icounts) reach bit-identical state under the reference interpreter and the JIT, however
// each side splits the run into batches (DESIGN §4: exact budgets).
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { Exit, type MmioDevice } from '../runtime/types.js';
import { MIP_MTIP, type Hart } from '../runtime/cpu/hart.js';
import { Csr } from '../runtime/cpu/csr.js';
import * as A from './cpu-asm.js';
import { RAM, load, rig } from './cpu-asm.js';

const BODY = RAM + 0x100;
const HANDLER = RAM + 0x800;
const DATA = RAM + 0x1000;
const DEV = 0x1000_0000;

class Recorder implements MmioDevice {
  log: number[] = [];
  constructor(private readonly hart: () => Hart) {}
  read(off: number, size: 1 | 2 | 4): number {
    const h = this.hart();
    this.log.push(0, off, size, h.icount);
    return (h.icount * 2654435761 + off) >>> 0 & (size === 4 ? 0xffffffff : size === 2 ? 0xffff : 0xff);
  }
  write(off: number, size: 1 | 2 | 4, value: number): void {
    this.log.push(1, off, size, value, this.hart().icount);
  }
  save(): unknown {
    return null;
  }
  load(): void {}
}

const reg = fc.integer({ min: 1, max: 8 });
const src = fc.integer({ min: 0, max: 8 });
const imm12 = fc.integer({ min: -2048, max: 2047 });
const rOps = [A.add, A.sub, A.sll, A.slt, A.sltu, A.xor, A.srl, A.sra, A.or, A.and, A.mul, A.mulh, A.mulhsu, A.mulhu, A.div, A.divu, A.rem, A.remu];
const iOps = [A.addi, A.slti, A.sltiu, A.xori, A.ori, A.andi];
const sOps = [A.slli, A.srli, A.srai];
const loads = [A.lb, A.lh, A.lw, A.lbu, A.lhu];
const stores = [A.sb, A.sh, A.sw];
const branches = [A.beq, A.bne, A.blt, A.bge, A.bltu, A.bgeu];

/** An instruction as a function of its index and the body length (for branch targets). */
type Gen = (k: number, n: number) => number;
const insn: fc.Arbitrary<Gen> = fc.oneof(
  { weight: 6, arbitrary: fc.tuple(fc.constantFrom(...rOps), reg, src, src).map(([f, d, a, b]) => () => f(d, a, b)) },
  { weight: 4, arbitrary: fc.tuple(fc.constantFrom(...iOps), reg, src, imm12).map(([f, d, a, i]) => () => f(d, a, i)) },
  { weight: 2, arbitrary: fc.tuple(fc.constantFrom(...sOps), reg, src, fc.integer({ min: 0, max: 31 })).map(([f, d, a, s]) => () => f(d, a, s)) },
  { weight: 1, arbitrary: fc.tuple(reg, fc.integer({ min: 0, max: 0xfffff })).map(([d, v]) => () => A.lui(d, v)) },
  // RAM data, possibly misaligned
  { weight: 4, arbitrary: fc.tuple(fc.constantFrom(...loads), reg, fc.integer({ min: 0, max: 255 })).map(([f, d, o]) => () => f(d, 9, o)) },
  { weight: 4, arbitrary: fc.tuple(fc.constantFrom(...stores), src, fc.integer({ min: 0, max: 255 })).map(([f, s, o]) => () => f(s, 9, o)) },
  // MMIO device, and addresses where nothing is mapped (access faults)
  { weight: 1, arbitrary: fc.tuple(fc.constantFrom(...loads), reg, fc.integer({ min: 0, max: 15 })).map(([f, d, o]) => () => f(d, 10, o)) },
  { weight: 1, arbitrary: fc.tuple(fc.constantFrom(...stores), src, fc.integer({ min: 0, max: 15 })).map(([f, s, o]) => () => f(s, 10, o)) },
  { weight: 1, arbitrary: fc.tuple(fc.constantFrom(A.lw, A.sw), imm12).map(([f, o]) => () => f(1, 0, o)) },
  // self-modifying: overwrite a body word with a register value (often illegal: trap, skip)
  { weight: 1, arbitrary: fc.tuple(src, fc.nat()).map(([s, t]) => (_k: number, n: number) => A.sw(s, 11, 4 * (t % n))) },
  // branches anywhere in the body (loops included); odd multiples of 2 are misaligned targets
  {
    weight: 4,
    arbitrary: fc.tuple(fc.constantFrom(...branches), src, src, fc.nat(), fc.boolean()).map(
      ([f, a, b, t, mis]) => (k: number, n: number) => f(a, b, 4 * ((t % (n + 1)) - k) + (mis && t % 7 === 0 ? 2 : 0)),
    ),
  },
  { weight: 2, arbitrary: fc.tuple(fc.nat(), src).map(([t, d]) => (k: number, n: number) => A.jal(d, 4 * ((t % (n + 1)) - k))) },
  // returns through whatever a jal linked (traces follow calls and guard the return address)
  { weight: 2, arbitrary: fc.tuple(src, reg, fc.constantFrom(0, 0, 0, 4, -4, 2)).map(([d, l, o]) => () => A.jalr(d, l, o)) },
  { weight: 1, arbitrary: fc.constantFrom<Gen>(() => A.ecall(), () => A.ebreak(), () => A.fence(), () => A.fencei(), () => 0) },
  // CSRs the interpreter must do, some of them reading the exact instruction count
  {
    weight: 1,
    arbitrary: fc.tuple(fc.constantFrom(Csr.mscratch, Csr.minstret, Csr.mcycle, Csr.instret), reg, src).map(
      ([c, d, a]) => () => (c === Csr.mscratch ? A.csrrw(d, c, a) : A.csrrs(d, c, 0)),
    ),
  },
  { weight: 1, arbitrary: fc.tuple(reg, fc.integer({ min: 0, max: 0xfffff })).map(([d, v]) => (k: number) => A.auipc(d, v + k)) },
);

/** Setup: registers, bases, trap handler that skips exceptions, timer interrupt enabled. */
function prologue(init: number[]): number[] {
  const p: number[] = [];
  init.forEach((v, k) => p.push(...A.li(k + 1, v)));
  p.push(...A.li(9, DATA), ...A.li(10, DEV), ...A.li(11, BODY), ...A.li(12, HANDLER), A.csrrw(0, Csr.mtvec, 12));
  p.push(A.addi(12, 0, MIP_MTIP), A.csrrw(0, Csr.mie, 12), A.csrrsi(0, Csr.mstatus, 8));
  p.push(A.jal(0, BODY - (RAM + 4 * p.length)));
  return p;
}
const handler = [
  A.csrrs(30, Csr.mcause, 0), A.blt(30, 0, 16), A.csrrs(31, Csr.mepc, 0), A.addi(31, 31, 4), A.csrrw(0, Csr.mepc, 31), A.mret(),
];

interface Plan {
  init: number[];
  body: Gen[];
  /** icount → timer line level */
  events: [number, boolean][];
  total: number;
}

/** A machine loaded with the plan's program, on the interpreter alone or with the JIT. */
function setup(plan: Plan, jit: boolean) {
  const t = rig([], { jit, ramKiB: 8 });
  const dev = new Recorder(() => t.hart);
  t.bus.map(DEV, 0x100, dev);
  load(t.bus, RAM, prologue(plan.init));
  load(t.bus, BODY, [...plan.body.map((g, k) => g(k, plan.body.length)), A.jal(0, -4 * plan.body.length)]);
  load(t.bus, HANDLER, handler);
  return { ...t, dev };
}

function execute(plan: Plan, jit: boolean, batches: number[]) {
  const t = setup(plan, jit);
  const dev = t.dev;
  const h = t.hart;
  const events = [...plan.events].sort((a, b) => a[0] - b[0]);
  let bi = 0, ei = 0;
  let exit: Exit = Exit.Budget;
  while (h.icount < plan.total) {
    while (ei < events.length && events[ei]![0] <= h.icount) h.setPending(MIP_MTIP, events[ei++]![1]);
    const horizon = Math.min(plan.total, ei < events.length ? events[ei]![0] : Infinity);
    const budget = Math.min(batches[bi++ % batches.length]!, horizon - h.icount);
    exit = h.run(budget);
    if (exit === Exit.Fault || exit === Exit.Halt) break;
  }
  return { state: h.save(), ram: Array.from(t.bus.ram), log: dev.log, exit, fault: h.fault };
}

const planArb = fc.record({
  init: fc.array(
    fc.oneof(fc.integer({ min: -0x80000000, max: 0x7fffffff }), fc.constantFrom(0, 1, -1, 2, 7, 31, -0x80000000, 0x7fffffff)),
    { minLength: 8, maxLength: 8 },
  ),
  body: fc.array(insn, { minLength: 1, maxLength: 80 }),
  events: fc.array(fc.tuple(fc.integer({ min: 0, max: 3000 }), fc.boolean()), { maxLength: 6 }),
  total: fc.integer({ min: 0, max: 3000 }),
});

describe('JIT equivalence', () => {
  it('the JIT matches the interpreter at every batch boundary, batches of one instruction included', () => {
    // Lockstep: both machines run the same budgets; after each, registers, pc, icount,
    // CSRs, RAM and the device log must agree. Budgets of 1 compare instruction by instruction.
    const budgets = fc.array(fc.oneof(fc.constant(1), fc.integer({ min: 1, max: 8 }), fc.integer({ min: 1, max: 300 })), { minLength: 1, maxLength: 12 });
    fc.assert(
      fc.property(planArb, budgets, (p, bs) => {
        const ref = setup(p, false);
        const jit = setup(p, true);
        const events = [...p.events].sort((a, b) => a[0] - b[0]);
        let bi = 0, ei = 0;
        while (ref.hart.icount < p.total) {
          while (ei < events.length && events[ei]![0] <= ref.hart.icount) {
            ref.hart.setPending(MIP_MTIP, events[ei]![1]);
            jit.hart.setPending(MIP_MTIP, events[ei++]![1]);
          }
          const horizon = Math.min(p.total, ei < events.length ? events[ei]![0] : Infinity);
          const budget = Math.min(bs[bi++ % bs.length]!, horizon - ref.hart.icount);
          const e1 = ref.hart.run(budget);
          const e2 = jit.hart.run(budget);
          expect(e2).toBe(e1);
          expect(jit.hart.save()).toEqual(ref.hart.save());
          expect(Buffer.compare(jit.bus.ram, ref.bus.ram)).toBe(0);
          expect(jit.dev.log).toEqual(ref.dev.log);
          if (e1 === Exit.Fault || e1 === Exit.Halt) {
            expect(jit.hart.fault).toEqual(ref.hart.fault);
            break;
          }
        }
      }),
      { numRuns: 300 },
    );
  });

  it('random programs reach identical state under the interpreter and the JIT', () => {
    const plan = planArb;
    const batches = fc.array(fc.integer({ min: 1, max: 400 }), { minLength: 1, maxLength: 8 });
    fc.assert(
      fc.property(plan, batches, batches, (p, b1, b2) => {
        const ref = execute(p, false, [1_000_000]);
        const jit = execute(p, true, b2);
        const split = execute(p, false, b1);
        expect(jit.exit).toBe(ref.exit);
        expect(jit.state).toEqual(ref.state);
        expect(jit.log).toEqual(ref.log);
        expect(jit.ram).toEqual(ref.ram);
        expect(split.state).toEqual(ref.state);
      }),
      { numRuns: 300 },
    );
  });
});
