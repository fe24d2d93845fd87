// Machine-mode CSRs (Privileged ISA §2.2 and ch. 3) plus the user counters and the Zkr seed.
import type { ValueKind } from '../types.js';

export const MIP_MSIP = 1 << 3, MIP_MTIP = 1 << 7, MIP_MEIP = 1 << 11;
/** The only interrupt bits this platform implements (§3.1.9: the rest of mip/mie is WARL 0). */
export const MIP_MASK = MIP_MSIP | MIP_MTIP | MIP_MEIP;
export const MSTATUS_MIE = 1 << 3, MSTATUS_MPIE = 1 << 7;
/** mstatus.MPP is hard-wired to M (3): machine mode only (§3.1.6.1). */
const MSTATUS_MPP_M = 3 << 11;
/** MXL=1 (32-bit), extensions I and M. */
export const MISA = 0x40001100;

export const Csr = {
  seed: 0x015,
  cycle: 0xc00, time: 0xc01, instret: 0xc02, cycleh: 0xc80, timeh: 0xc81, instreth: 0xc82,
  mvendorid: 0xf11, marchid: 0xf12, mimpid: 0xf13, mhartid: 0xf14, mconfigptr: 0xf15,
  mstatus: 0x300, misa: 0x301, medeleg: 0x302, mideleg: 0x303, mie: 0x304, mtvec: 0x305,
  mstatush: 0x310, mcountinhibit: 0x320, mhpmevent3: 0x323, mhpmevent31: 0x33f,
  mscratch: 0x340, mepc: 0x341, mcause: 0x342, mtval: 0x343, mip: 0x344,
  mcycle: 0xb00, minstret: 0xb02, mcycleh: 0xb80, minstreth: 0xb82,
} as const;

/** §2.1: csr[11:10] == 3 marks a read-only CSR; writing one is an illegal instruction. */
export const isReadOnly = (csr: number): boolean => csr >>> 10 === 3;

/**
 * The CSRs this hart has: one entry per number or range, nothing else exists. Read-only-ness
 * is not listed: it follows from the number (isReadOnly).
 *
 * misa says RV32IM, M-mode only, and the list is what QEMU 7.2 has for the same hart
 * (guests/qemu.sh: `-cpu rv32,...,s=false,u=false,pmp=false,debug=false,pmu-num=0`; DESIGN §1:
 * QEMU is the reference), probed over all 4096 numbers by guests/csr:
 * - No U- or S-mode CSRs: mcounteren, menvcfg/menvcfgh, sstatus... do not exist (§3.1.11:
 *   mcounteren exists only with U-mode; §3.1.18: menvcfg likewise).
 * - cycle/time/instret(h) do exist: M-mode may read them without U-mode, as on QEMU.
 * - medeleg/mideleg exist as on QEMU (§3.1.8 says "should not" for M-only harts); with no
 *   lower mode nothing can be delegated, so they are read-only zero (WARL).
 * - mcountinhibit and mhpmevent3..31 exist and are read-only zero (WARL): there are no
 *   programmable counters (QEMU pmu-num=0 removes mhpmcounter3..31 and hpmcounter3..31).
 * - mstatush exists and reads zero: no MBE/SBE, and MPV/GVA need the H extension.
 * - No PMP (QEMU pmp=false: pmpcfg/pmpaddr do not exist), no mseccfg (Smepmp), no
 *   debug trigger CSRs (QEMU debug=false: tselect/tdata*), no floating-point CSRs.
 * - seed (Zkr) exists; the rule that it needs a read-write form lives in the interpreter.
 */
const CSR_RANGES: readonly (readonly [first: number, last: number])[] = [
  [Csr.seed, Csr.seed],
  [Csr.cycle, Csr.instret], [Csr.cycleh, Csr.instreth],
  [Csr.mvendorid, Csr.mconfigptr],
  [Csr.mstatus, Csr.mtvec],
  [Csr.mstatush, Csr.mstatush],
  [Csr.mcountinhibit, Csr.mcountinhibit], [Csr.mhpmevent3, Csr.mhpmevent31],
  [Csr.mscratch, Csr.mip],
  [Csr.mcycle, Csr.mcycle], [Csr.minstret, Csr.minstret],
  [Csr.mcycleh, Csr.mcycleh], [Csr.minstreth, Csr.minstreth],
];

const EXISTS: Uint8Array = (() => {
  const t = new Uint8Array(4096);
  for (const [first, last] of CSR_RANGES) t.fill(1, first, last + 1);
  return t;
})();

/** Whether CSR number `csr` (0..4095) exists on this hart; accessing any other is illegal. */
export const csrExists = (csr: number): boolean => EXISTS[csr] === 1;

/** Where the CSR file gets its non-deterministic values (DESIGN §2). */
export interface ValueSource {
  value(kind: ValueKind, icount: number): number;
}

const TWO32 = 2 ** 32;

/** Counter value = icount + offset (mod 2^64), as two uint32 halves: `which` 0 = low, 1 = high. */
function counterHalf(icount: number, offLo: number, offHi: number, which: number): number {
  const sumLo = (icount % TWO32) + offLo;
  if (which === 0) return sumLo >>> 0;
  return (Math.floor(icount / TWO32) + offHi + (sumLo >= TWO32 ? 1 : 0)) >>> 0;
}

/**
 * The CSR state. icount is the replay clock and never changes on a counter write: mcycle and
 * minstret hold an offset from it instead, so `instret` reads `icount + offset`.
 */
export class Csrs {
  /** Only MIE and MPIE are stored; MPP reads as 3. */
  mstatus = 0;
  mie = 0;
  mip = 0;
  mtvec = 0;
  mscratch = 0;
  mepc = 0;
  mcause = 0;
  mtval = 0;
  cycleOffLo = 0;
  cycleOffHi = 0;
  instretOffLo = 0;
  instretOffHi = 0;

  /** Read an existing CSR during the instruction that follows `icount` retired ones. */
  read(csr: number, icount: number, src: ValueSource): number {
    switch (csr) {
      case Csr.mstatus: return (this.mstatus | MSTATUS_MPP_M) >>> 0;
      case Csr.misa: return MISA;
      case Csr.mie: return this.mie;
      case Csr.mip: return this.mip;
      case Csr.mtvec: return this.mtvec >>> 0;
      case Csr.mscratch: return this.mscratch >>> 0;
      case Csr.mepc: return this.mepc >>> 0;
      case Csr.mcause: return this.mcause >>> 0;
      case Csr.mtval: return this.mtval >>> 0;
      case Csr.mcycle: case Csr.cycle: return counterHalf(icount, this.cycleOffLo, this.cycleOffHi, 0);
      case Csr.mcycleh: case Csr.cycleh: return counterHalf(icount, this.cycleOffLo, this.cycleOffHi, 1);
      case Csr.minstret: case Csr.instret: return counterHalf(icount, this.instretOffLo, this.instretOffHi, 0);
      case Csr.minstreth: case Csr.instreth: return counterHalf(icount, this.instretOffLo, this.instretOffHi, 1);
      case Csr.time: return src.value('mtime', icount) % TWO32 >>> 0;
      case Csr.timeh: return Math.floor(src.value('mtime', icount) / TWO32) >>> 0;
      // Zkr §4.1: OPST = ES16 (0b10) in bits 31:30, 16 bits of entropy in 15:0.
      case Csr.seed: return (0x80000000 | (src.value('seed', icount) & 0xffff)) >>> 0;
      default: return 0;
    }
  }

  /** Whether an interrupt is pending and enabled, i.e. would be taken before the next instruction (§3.1.9). */
  deliverable(): boolean {
    return (this.mstatus & MSTATUS_MIE) !== 0 && (this.mip & this.mie) !== 0;
  }

  /**
   * Write an existing, writable CSR (WARL fields legalised here). `icount` is the count
   * before the writing instruction retires. Returns true if the batch should end: the write
   * changed whether an interrupt is pending and enabled.
   *
   * NOTE the hart takes an interrupt before the next instruction whether or not the batch
   * ends (Hart.run looks after every interpreted instruction), and mip changes only at batch
   * boundaries or in an MMIO access, never through these CSRs; so the exit decides nothing
   * about where an interrupt lands. A write that leaves the interrupt state as it was (the
   * nested disable windows' mstatus writes with nothing pending, a new mtvec) therefore keeps
   * the batch going: each batch costs the CPU chart one event (docs/BENCHMARKS.md, "CPU
   * chart"). One that does change it still ends the batch (STYLE "Exits and traps"); that is
   * rare (a window reopened over a pending interrupt) and costs one event.
   */
  write(csr: number, v: number, icount: number): boolean {
    switch (csr) {
      case Csr.mstatus: {
        const was = this.deliverable();
        this.mstatus = v & (MSTATUS_MIE | MSTATUS_MPIE);
        return this.deliverable() !== was;
      }
      case Csr.mie: {
        const was = this.deliverable();
        this.mie = v & MIP_MASK;
        return this.deliverable() !== was;
      }
      // mtvec.MODE >= 2 is reserved (§3.1.7, WARL): like QEMU 7.2, ignore such a write.
      case Csr.mtvec: if ((v & 3) < 2) this.mtvec = v >>> 0; return false;
      case Csr.mscratch: this.mscratch = v >>> 0; return false;
      case Csr.mepc: this.mepc = (v & ~3) >>> 0; return false; // IALIGN=32 (§3.1.14)
      case Csr.mcause: this.mcause = v >>> 0; return false;
      case Csr.mtval: this.mtval = v >>> 0; return false;
      case Csr.mcycle: case Csr.mcycleh: case Csr.minstret: case Csr.minstreth:
        this.writeCounter(csr, v >>> 0, icount);
        return false;
      // mip's MSIP/MTIP/MEIP are read-only here (§3.1.9): they follow the CLINT and PLIC.
      default: return false;
    }
  }

  /**
   * §3.1.11 / Unprivileged §8.1: a CSR write to a counter takes effect after the writing
   * instruction, which does not also increment it. So the next instruction (icount + 1)
   * must read the written value: offset = value - (icount + 1).
   */
  private writeCounter(csr: number, v: number, icount: number): void {
    const isCycle = csr === Csr.mcycle || csr === Csr.mcycleh;
    const offLo = isCycle ? this.cycleOffLo : this.instretOffLo;
    const offHi = isCycle ? this.cycleOffHi : this.instretOffHi;
    let lo = counterHalf(icount, offLo, offHi, 0);
    let hi = counterHalf(icount, offLo, offHi, 1);
    if (csr === Csr.mcycle || csr === Csr.minstret) lo = v;
    else hi = v;
    // new offset = (hi:lo) - (icount + 1) mod 2^64, computed in 32-bit halves.
    const next = icount + 1;
    const nLo = next % TWO32, nHi = Math.floor(next / TWO32);
    const dLo = lo - nLo;
    const newLo = dLo >>> 0;
    const newHi = (hi - nHi - (dLo < 0 ? 1 : 0)) >>> 0;
    if (isCycle) { this.cycleOffLo = newLo; this.cycleOffHi = newHi; }
    else { this.instretOffLo = newLo; this.instretOffHi = newHi; }
  }
}
