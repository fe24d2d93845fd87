// Zicsr, traps, interrupts, wfi, MMIO exactness and self-modifying code, under both the
// reference interpreter and the JIT (Privileged ISA ch. 3; DESIGN §1-2).
import { describe, expect, it } from 'vitest';
import { Exit, type MmioDevice } from '../runtime/types.js';
import { MIP_MEIP, MIP_MSIP, MIP_MTIP, type Hart } from '../runtime/cpu/hart.js';
import { Csr } from '../runtime/cpu/csr.js';
import * as A from './cpu-asm.js';
import { RAM, load, rig } from './cpu-asm.js';

const HANDLER = RAM + 0x400;
/** Point mtvec at HANDLER (mode in the low bits): 3 instructions. */
const setMtvec = (mode = 0): number[] => [...A.li(5, HANDLER | mode), A.csrrw(0, Csr.mtvec, 5)];

/** Runs until a non-Request exit (csr writes end batches), at most `limit` instructions. */
function runAll(h: Hart, limit: number): Exit {
  let e: Exit = Exit.Request;
  const stop = h.icount + limit;
  while (e === Exit.Request && h.icount < stop) e = h.run(stop - h.icount);
  return e;
}

/** A device that records what it saw, including the hart's icount at each access. */
class Probe implements MmioDevice {
  log: { op: string; off: number; size: number; value: number; icount: number }[] = [];
  onWrite: ((off: number, v: number) => void) | undefined;
  constructor(private readonly hart: () => Hart) {}
  read(off: number, size: 1 | 2 | 4): number {
    this.log.push({ op: 'r', off, size, value: 0, icount: this.hart().icount });
    return 0xfffffe80 + off;
  }
  write(off: number, size: 1 | 2 | 4, value: number): void {
    this.log.push({ op: 'w', off, size, value, icount: this.hart().icount });
    this.onWrite?.(off, value);
  }
  save(): unknown {
    return null;
  }
  load(): void {}
}

describe.each([false, true])('privileged (jit=%s)', (jit) => {
  it('reads the fixed machine CSRs and the MPP=M mstatus', () => {
    const t = rig(
      [A.csrrs(1, Csr.misa, 0), A.csrrs(2, Csr.mhartid, 0), A.csrrs(3, Csr.mvendorid, 0), A.csrrs(4, Csr.mstatus, 0)],
      { jit },
    );
    expect(t.hart.run(4)).toBe(Exit.Budget);
    expect(t.hart.x[1]).toBe(0x40001100);
    expect(t.hart.x[2]).toBe(0);
    expect(t.hart.x[3]).toBe(0);
    expect(t.hart.x[4]).toBe(0x1800);
  });

  it('implements csrrw/s/c and their immediate forms on mscratch', () => {
    const t = rig(
      [
        ...A.li(1, 0xf0f0), A.csrrw(2, Csr.mscratch, 1), A.csrrsi(3, Csr.mscratch, 0x0f), A.csrrci(4, Csr.mscratch, 0x10),
        A.csrrc(5, Csr.mscratch, 1), A.csrrwi(6, Csr.mscratch, 7), A.csrrs(7, Csr.mscratch, 0),
      ],
      { jit },
    );
    expect(t.hart.run(8)).toBe(Exit.Budget);
    expect(Array.from(t.hart.x.slice(2, 8))).toEqual([0, 0xf0f0, 0xf0ff, 0xf0ef, 0x000f, 7]);
  });

  it('keeps mtvec on a reserved mode', () => {
    const t = rig([...A.li(1, HANDLER | 1), A.csrrw(0, Csr.mtvec, 1), ...A.li(2, HANDLER | 2), A.csrrw(0, Csr.mtvec, 2),
      A.csrrs(3, Csr.mtvec, 0)], { jit });
    runAll(t.hart, 7);
    expect(t.hart.icount).toBe(7);
    expect(t.hart.x[3]).toBe((HANDLER | 1) | 0);
  });

  it('reads the delegation and counter-inhibit CSRs as WARL zero', () => {
    const t = rig([A.addi(1, 0, -1), A.csrrw(2, Csr.medeleg, 1), A.csrrs(3, Csr.medeleg, 0), A.csrrw(0, Csr.mideleg, 1),
      A.csrrs(4, Csr.mideleg, 0), A.csrrw(0, Csr.mcountinhibit, 1), A.csrrs(5, Csr.mcountinhibit, 0),
      A.csrrw(0, Csr.mhpmevent31, 1), A.csrrs(6, Csr.mhpmevent31, 0), A.csrrw(0, Csr.mstatush, 1), A.csrrs(7, Csr.mstatush, 0)], { jit });
    runAll(t.hart, 11);
    expect(t.hart.icount).toBe(11);
    expect(Array.from(t.hart.x.slice(2, 8))).toEqual([0, 0, 0, 0, 0, 0]);
  });

  it('writes with csrrs/csrrc only when the mask is non-zero, as QEMU does', () => {
    // x1 = 0 but rs1 = x1 != x0: no write, so the read-only cycle and mvendorid do not trap.
    const t = rig([A.csrrs(2, Csr.cycle, 1), A.csrrc(3, Csr.mvendorid, 1), A.csrrs(4, Csr.seed, 1)], {
      jit,
      value: () => 0x1234,
    });
    expect(t.hart.run(3)).toBe(Exit.Budget);
    expect(t.hart.x[2]).toBe(0);
    expect(t.hart.x[3]).toBe(0);
    expect(t.hart.x[4] >>> 0).toBe(0x80001234);
  });

  it('counts instret/cycle by icount and keeps icount when minstret is written', () => {
    const t = rig(
      [A.addi(0, 0, 0), A.csrrs(1, Csr.instret, 0), A.csrrs(2, Csr.mcycle, 0), A.csrrwi(0, Csr.minstret, 20),
        A.csrrs(3, Csr.minstret, 0), A.csrrs(4, Csr.instreth, 0), A.addi(0, 0, 0), A.csrrs(5, Csr.instret, 0)],
      { jit },
    );
    expect(t.hart.run(8)).toBe(Exit.Budget);
    expect(t.hart.x[1]).toBe(1);
    expect(t.hart.x[2]).toBe(2);
    // §8.1: the next instruction reads the written value; the writer does not also count.
    expect(t.hart.x[3]).toBe(20);
    expect(t.hart.x[4]).toBe(0);
    expect(t.hart.x[5]).toBe(23);
    expect(t.hart.icount).toBe(8);
  });

  it('reads time/timeh from the host at the exact icount and seed as ES16 | 16 bits', () => {
    const t = rig([A.addi(0, 0, 0), A.csrrs(1, Csr.time, 0), A.csrrs(2, Csr.timeh, 0), A.csrrw(3, Csr.seed, 0)], {
      jit,
      value: (kind) => (kind === 'mtime' ? 0x1_2345_6789 : 0xabcdef),
    });
    expect(t.hart.run(4)).toBe(Exit.Budget);
    expect(t.hart.x[1]).toBe(0x23456789);
    expect(t.hart.x[2]).toBe(1);
    expect(t.hart.x[3] >>> 0).toBe(0x8000cdef);
    expect(t.values).toEqual([{ kind: 'mtime', icount: 1 }, { kind: 'mtime', icount: 2 }, { kind: 'seed', icount: 3 }]);
  });

  it.each([
    ['unknown CSR', A.csrrs(1, 0x7c0, 0)],
    ['write to read-only cycle', A.csrrw(0, Csr.cycle, 1)],
    ['csrrsi to read-only mhartid with uimm', A.csrrsi(0, Csr.mhartid, 1)],
    ['read-only access to seed', A.csrrs(1, Csr.seed, 0)],
    ['csrrsi with uimm=0 to seed', A.csrrsi(1, Csr.seed, 0)],
    ['csrrs to read-only cycle with a non-zero mask', A.csrrs(0, Csr.cycle, 1)],
    ['mcounteren (no U-mode)', A.csrrs(1, 0x306, 0)],
    ['menvcfg (no U-mode)', A.csrrs(1, 0x30a, 0)],
    ['menvcfgh (no U-mode)', A.csrrs(1, 0x31a, 0)],
    ['sstatus (no S-mode)', A.csrrs(1, 0x100, 0)],
    ['pmpaddr0 (no PMP)', A.csrrs(1, 0x3b0, 0)],
    ['mhpmcounter3 (no HPM counters)', A.csrrs(1, 0xb03, 0)],
    ['tselect (no trigger module)', A.csrrs(1, 0x7a0, 0)],
    ['all-zero word', 0],
    ['sret (supervisor mode absent)', 0x10200073],
    ['reserved shift funct7', A.slli(1, 1, 0) | (1 << 25)],
  ])('raises illegal instruction for %s with mtval = the bits', (_name, word) => {
    const t = rig([...setMtvec(), A.addi(1, 0, 9), word, A.addi(2, 0, 1)], { jit });
    load(t.bus, HANDLER, [A.csrrs(10, Csr.mcause, 0), A.csrrs(11, Csr.mepc, 0), A.csrrs(12, Csr.mtval, 0)]);
    expect(runAll(t.hart, 3 + 1 + 3)).toBe(Exit.Budget);
    expect(t.hart.x[10]).toBe(2);
    expect(t.hart.x[11]).toBe((RAM + 16) | 0);
    expect(t.hart.x[12]).toBe(word | 0);
    expect(t.hart.x[2]).toBe(0);
    // the trapping instruction did not retire: 3 setup + addi + 3 handler instructions
    expect(t.hart.icount).toBe(7);
  });

  it('raises ecall (11), ebreak (3) and returns with mret restoring MIE', () => {
    const t = rig([...setMtvec(), A.csrrsi(0, Csr.mstatus, 8), A.ecall(), A.addi(1, 1, 1), A.ebreak(), A.addi(1, 1, 1)], { jit });
    // handler: record mcause/mstatus into x20.., skip the trapping instruction.
    load(t.bus, HANDLER, [
      A.csrrs(6, Csr.mcause, 0), A.add(20, 20, 6), A.csrrs(7, Csr.mstatus, 0), A.or(21, 21, 7),
      A.csrrs(8, Csr.mepc, 0), A.addi(8, 8, 4), A.csrrw(0, Csr.mepc, 8), A.mret(),
    ]);
    expect(runAll(t.hart, 4 + 8 + 1 + 8 + 1)).toBe(Exit.Budget);
    expect(t.hart.x[20]).toBe(11 + 3);
    expect(t.hart.csr.mtval).toBe(0); // ebreak's mtval, as on QEMU
    expect(t.hart.x[21]).toBe(0x1880); // MPIE set, MIE cleared inside the handler, MPP=M
    expect(t.hart.x[1]).toBe(2);
    expect(t.hart.csr.read(Csr.mstatus, 0, { value: () => 0 })).toBe(0x1888); // mret: MIE = MPIE, MPIE = 1
    expect(t.hart.pc).toBe(RAM + 32);
  });

  it('raises instruction-address-misaligned on the jump, with mtval = target', () => {
    for (const jump of [A.jal(0, 6), A.beq(0, 0, 6), A.jalr(1, 0, 0x402)]) {
      const t = rig([...setMtvec(), jump], { jit });
      load(t.bus, HANDLER, [A.csrrs(10, Csr.mcause, 0), A.csrrs(11, Csr.mepc, 0), A.csrrs(12, Csr.mtval, 0)]);
      expect(runAll(t.hart, 6)).toBe(Exit.Budget);
      expect(t.hart.x[10]).toBe(0);
      expect(t.hart.x[11]).toBe((RAM + 12) | 0);
      expect(t.hart.x[12] >>> 0).toBe(jump === A.jalr(1, 0, 0x402) ? 0x402 : RAM + 18);
      expect(t.hart.x[1]).toBe(0); // jalr's link not written
    }
  });

  it('raises access faults: fetch (1), load (5) and store (7) outside RAM and devices', () => {
    const t = rig([...setMtvec(), ...A.li(1, 0x4000_0000), A.lw(2, 1, 4), A.sw(2, 1, 8), A.jalr(0, 1, 0)], { jit });
    const seen: number[][] = [];
    // handler: mepc += 4 unless it was a fetch fault, in which case go back to ra.
    load(t.bus, HANDLER, [
      A.csrrs(10, Csr.mcause, 0), A.csrrs(11, Csr.mtval, 0), A.csrrs(8, Csr.mepc, 0), A.addi(8, 8, 4), A.csrrw(0, Csr.mepc, 8), A.mret(),
    ]);
    for (let k = 0; k < 3; k++) {
      runAll(t.hart, k === 0 ? 5 + 2 : 6 + 2);
      seen.push([t.hart.x[10]!, t.hart.x[11]! >>> 0]);
    }
    expect(seen).toEqual([[5, 0x4000_0004], [7, 0x4000_0008], [1, 0x4000_0000]]);
  });

  it('stops with a fault report when a trap has no handler', () => {
    const t = rig([A.addi(1, 0, 1), A.addi(1, 0, 2), 0xffffffff], { jit });
    expect(t.hart.run(100)).toBe(Exit.Fault);
    expect(t.hart.icount).toBe(2);
    expect(t.hart.fault).toMatchObject({ cause: 2, tval: 0xffffffff, pc: RAM + 8, icount: 2 });
    expect(t.hart.fault!.message).toBe('illegal instruction 0xffffffff at pc 0x80000008, icount 2, no trap handler (mtvec 0x00000000)');
    expect(t.hart.run(1)).toBe(Exit.Fault);
  });

  it('names the instruction and the cause in fault reports', () => {
    const t = rig([A.csrrs(15, 0x7c0, 0)], { jit });
    expect(t.hart.run(1)).toBe(Exit.Fault);
    expect(t.hart.fault!.message).toBe('illegal instruction 0x7c0027f3 (csrrs x15, 0x7c0, x0) at pc 0x80000000, icount 0, no trap handler (mtvec 0x00000000)');
    const u = rig([...A.li(1, 0x4000_0000), A.sw(0, 1, 0)], { jit });
    expect(u.hart.run(5)).toBe(Exit.Fault);
    expect(u.hart.fault).toMatchObject({ cause: 7, tval: 0x4000_0000, pc: RAM + 8, icount: 2 });
    expect(u.hart.fault!.message).toBe('store access fault (tval 0x40000000) at pc 0x80000008, icount 2, no trap handler (mtvec 0x00000000)');
  });

  it('takes interrupts by priority MEI > MSI > MTI, vectored, only with MIE set', () => {
    const t = rig([...setMtvec(1), ...A.li(6, MIP_MEIP | MIP_MSIP | MIP_MTIP), A.csrrw(0, Csr.mie, 6), A.addi(1, 1, 1), A.addi(1, 1, 1)], { jit });
    // vector k at HANDLER + 4k: record the cause, disable it in mie, return.
    const vec = (code: number) => HANDLER + 4 * code;
    for (const code of [3, 7, 11]) load(t.bus, vec(code), [A.jal(0, 0x100 - 4 * code)]);
    load(t.bus, HANDLER + 0x100, [
      A.csrrs(10, Csr.mcause, 0), A.slli(20, 20, 4), A.andi(11, 10, 15), A.or(20, 20, 11),
      A.addi(12, 0, 1), A.sll(12, 12, 11), A.csrrc(0, Csr.mie, 12), A.mret(),
    ]);
    t.hart.setPending(MIP_MEIP | MIP_MSIP | MIP_MTIP, true);
    expect(runAll(t.hart, 7)).toBe(Exit.Budget);
    expect(t.hart.x[20]).toBe(0); // MIE is clear: nothing taken
    expect(t.hart.mip).toBe(MIP_MEIP | MIP_MSIP | MIP_MTIP);
    t.hart.csr.mstatus = 8;
    runAll(t.hart, 3 * 9);
    expect(t.hart.x[20]).toBe(0xb37);
    expect(t.hart.csr.mcause >>> 0).toBe(0x80000007);
  });

  it('sets mepc to the next instruction when an interrupt arrives between batches', () => {
    const t = rig([...setMtvec(), A.csrrsi(0, Csr.mstatus, 8), ...A.li(6, MIP_MTIP), A.csrrw(0, Csr.mie, 6),
      A.addi(1, 1, 1), A.addi(1, 1, 1), A.addi(1, 1, 1)], { jit });
    load(t.bus, HANDLER, [A.csrrs(11, Csr.mepc, 0), A.wfi()]);
    expect(runAll(t.hart, 8)).toBe(Exit.Budget);
    expect(t.hart.icount).toBe(8);
    t.hart.setPending(MIP_MTIP, true);
    expect(t.hart.run(1)).toBe(Exit.Budget);
    expect(t.hart.x[11]).toBe((RAM + 32) | 0);
    expect(t.hart.icount).toBe(9); // taking it retired nothing; the handler's first did
    expect(t.hart.run(5)).toBe(Exit.Budget); // wfi with an enabled interrupt pending does not sleep
  });

  it('wfi retires and ends the batch only when nothing enabled is pending', () => {
    const t = rig([A.wfi(), A.addi(1, 0, 1), A.csrrwi(0, Csr.mie, 8), A.wfi(), A.addi(2, 0, 1)], { jit });
    expect(t.hart.run(10)).toBe(Exit.Wfi);
    expect(t.hart.icount).toBe(1);
    expect(t.hart.pc).toBe(RAM + 4);
    t.hart.setPending(MIP_MSIP, true);
    // MIE=0: the mie write makes nothing deliverable (no exit) and no trap is taken, but the
    // second wfi does not sleep either.
    expect(t.hart.run(4)).toBe(Exit.Budget);
    expect(t.hart.x[2]).toBe(1);
  });

  /**
   * A write to mstatus, mie or mtvec that leaves "an interrupt is pending and enabled" as it
   * was keeps the batch going; one that makes an interrupt deliverable ends it. Either way the
   * interrupt lands before the next instruction: the same icount and mepc whether the batch
   * ended there, went on, or every instruction ran in a batch of its own.
   */
  const toggles = (): number[] => [
    ...setMtvec(), // 0-2: a new trap vector: no exit
    A.csrrsi(0, Csr.mstatus, 8), // 3: MIE on, mie empty: nothing deliverable, no exit
    A.csrrci(0, Csr.mstatus, 8), // 4: MIE off: no exit
    ...A.li(6, MIP_MSIP), A.csrrw(0, Csr.mie, 6), // 5-7: MSIE, but MIE off: no exit
    // MSIP is raised here, between batches (icount 8)
    A.csrrci(0, Csr.mstatus, 8), // 8: pending, MIE still off: unchanged, no exit
    A.csrrwi(0, Csr.mscratch, 1), // 9
    A.csrrsi(0, Csr.mstatus, 8), // 10: MIE on with MSIP pending and enabled: deliverable, the batch ends
    A.addi(1, 1, 1), // 11: the interrupt is taken before this one
  ];
  const tookAt = (t: ReturnType<typeof rig>): { mepc: number; icount: number; mcause: number; x1: number } => ({
    mepc: t.hart.x[11]!, icount: t.hart.x[12]!, mcause: t.hart.csr.mcause >>> 0, x1: t.hart.x[1]!,
  });
  const handler = [A.csrrs(12, Csr.instret, 0), A.csrrs(11, Csr.mepc, 0)];

  it('ends the batch only for a CSR write that changes whether an interrupt is pending and enabled', () => {
    const t = rig(toggles(), { jit });
    load(t.bus, HANDLER, handler);
    expect(t.hart.run(8)).toBe(Exit.Budget); // eight instructions, five CSR writes, no exit
    expect(t.hart.csr.mtvec).toBe(HANDLER);
    t.hart.setPending(MIP_MSIP, true);
    expect(t.hart.run(100)).toBe(Exit.Request);
    expect(t.hart.icount).toBe(11); // the mstatus write that enabled it retired; nothing after it
    expect(t.hart.pc).toBe(RAM + 4 * 11);
    expect(t.hart.run(2)).toBe(Exit.Budget);
    // The handler's first instruction reads instret = 11: taking the interrupt retired nothing.
    expect(tookAt(t)).toEqual({ mepc: (RAM + 4 * 11) | 0, icount: 11, mcause: 0x80000003, x1: 0 });
  });

  it('takes an interrupt a CSR write made deliverable at the same icount as batches of one instruction', () => {
    const big = rig(toggles(), { jit });
    load(big.bus, HANDLER, handler);
    big.hart.run(8);
    big.hart.setPending(MIP_MSIP, true);
    runAll(big.hart, 5);
    const one = rig(toggles(), { jit });
    load(one.bus, HANDLER, handler);
    const exits: Exit[] = [];
    while (one.hart.icount < 13) {
      if (one.hart.icount === 8) one.hart.setPending(MIP_MSIP, true);
      exits.push(one.hart.run(1));
    }
    // The single-instruction run ended on a Request only after the write that enabled it.
    expect(exits.map((e, k) => (e === Exit.Request ? k : -1)).filter((k) => k >= 0)).toEqual([10]);
    expect(tookAt(one)).toEqual(tookAt(big));
    expect(one.hart.save()).toEqual(big.hart.save());
  });

  it('lets a device see the exact icount, end the batch, and halt', () => {
    const DEV = 0x1000_0000;
    const t = rig([], { jit });
    const probe = new Probe(() => t.hart);
    t.bus.map(DEV, 0x100, probe);
    probe.onWrite = (off, v) => (off === 4 ? t.hart.requestExit() : off === 8 ? t.hart.halt(v) : undefined);
    load(t.bus, RAM, [
      ...A.li(1, DEV), A.addi(2, 0, 7), A.addi(2, 2, 1), A.sb(2, 1, 0), A.lbu(3, 1, 1), A.lh(4, 1, 2),
      A.addi(5, 0, 1), A.sw(5, 1, 4), A.addi(5, 5, 1), A.sw(5, 1, 8), A.addi(6, 0, 1),
    ]);
    expect(t.hart.run(100)).toBe(Exit.Request);
    expect(t.hart.icount).toBe(9); // the sw that asked retired; nothing after it
    expect(t.hart.run(100)).toBe(Exit.Halt);
    expect(t.hart.haltCode).toBe(2);
    expect(t.hart.icount).toBe(11);
    expect(t.hart.x[6]).toBe(0);
    expect(probe.log).toEqual([
      { op: 'w', off: 0, size: 1, value: 8, icount: 4 },
      { op: 'r', off: 1, size: 1, value: 0, icount: 5 },
      { op: 'r', off: 2, size: 2, value: 0, icount: 6 },
      { op: 'w', off: 4, size: 4, value: 1, icount: 8 },
      { op: 'w', off: 8, size: 4, value: 2, icount: 10 },
    ]);
    expect(t.hart.x[3]).toBe(0x81);
    expect(t.hart.x[4]).toBe(-382); // 0xfe82 sign-extended
  });

  it('takes an interrupt a device raised during an MMIO access right after that instruction', () => {
    const DEV = 0x1000_0000;
    const t = rig([], { jit });
    const probe = new Probe(() => t.hart);
    probe.onWrite = () => t.hart.setPending(MIP_MEIP, true);
    t.bus.map(DEV, 0x100, probe);
    load(t.bus, RAM, [
      ...setMtvec(), A.addi(6, 0, 1), A.slli(6, 6, 11), A.csrrw(0, Csr.mie, 6), A.csrrsi(0, Csr.mstatus, 8),
      ...A.li(1, DEV), A.addi(2, 0, 1), A.sw(2, 1, 0), A.addi(3, 0, 1), A.addi(3, 0, 2),
    ]);
    load(t.bus, HANDLER, [A.csrrs(11, Csr.mepc, 0), A.csrrs(12, Csr.mcause, 0)]);
    expect(runAll(t.hart, 7 + 4 + 2)).toBe(Exit.Budget);
    expect(t.hart.x[3]).toBe(0); // nothing after the store ran
    expect(t.hart.x[11]).toBe((RAM + 4 * 11) | 0);
    expect(t.hart.x[12] >>> 0).toBe(0x8000000b);
  });

  it('carries instret into instreth when the low word wraps', () => {
    const t = rig([A.csrrwi(0, Csr.minstret, 0), A.addi(0, 0, 0), A.csrrs(1, Csr.minstreth, 0), A.addi(0, 0, 0), A.csrrs(2, Csr.minstreth, 0)], { jit });
    t.hart.run(1);
    // As if the instruction at icount 1 wrote 2^32 - 2: icount 2 reads 2^32 - 2, icount 4 reads 2^32.
    t.hart.csr.write(Csr.minstret, 0xfffffffe, t.hart.icount);
    expect(t.hart.run(4)).toBe(Exit.Budget);
    expect(t.hart.x[1]).toBe(0);
    expect(t.hart.x[2]).toBe(1);
  });

  it('executes code it has just stored (self-modifying code)', () => {
    // loop: x1 += 1 (the word at PATCH), then overwrite PATCH with x1 += 100, repeat.
    const patched = A.addi(1, 1, 100);
    const t = rig([...A.li(2, RAM + 0x100), ...A.li(3, patched), A.jal(0, 0x100 - 16)], { jit });
    load(t.bus, RAM + 0x100, [A.addi(1, 1, 1), A.sw(3, 2, 0), A.jal(0, -8)]);
    // 5 setup + 3 per pass
    expect(t.hart.run(5 + 3)).toBe(Exit.Budget);
    expect(t.hart.x[1]).toBe(1);
    expect(t.hart.run(3 * 3)).toBe(Exit.Budget);
    expect(t.hart.x[1]).toBe(301);
    // and DMA writes from the host drop translations too
    t.bus.writeRam(RAM + 0x100, new Uint8Array(new Uint32Array([A.addi(1, 1, -1)]).buffer));
    expect(t.hart.run(3)).toBe(Exit.Budget);
    expect(t.hart.x[1]).toBe(300);
  });

  it('saves and restores the whole hart state as JSON', () => {
    const t = rig([...setMtvec(1), A.csrrwi(0, Csr.mscratch, 5), A.csrrwi(0, Csr.minstret, 3), A.addi(1, 0, 1), A.addi(1, 1, 1), A.addi(1, 1, 1)], { jit });
    runAll(t.hart, 6);
    const s = JSON.parse(JSON.stringify(t.hart.save()));
    runAll(t.hart, 1);
    const after = t.hart.save();
    const u = rig([], { jit });
    u.bus.writeRam(RAM, t.bus.readRam(RAM, 64));
    u.hart.load(s);
    runAll(u.hart, 1);
    expect(u.hart.save()).toEqual(after);
  });
});
