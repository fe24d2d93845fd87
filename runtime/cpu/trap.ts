// Trap entry (Privileged ISA §3.1.6.1, §3.1.7, §3.1.15, §3.3.1): the one place where
// exceptions and interrupts change pc, mepc, mcause, mtval and mstatus.
import type { GuestFault } from '../types.js';
import type { Bus } from '../bus.js';
import { MIP_MEIP, MIP_MSIP, MIP_MTIP, MSTATUS_MIE, MSTATUS_MPIE, type Csrs } from './csr.js';
import { disasm } from './decode.js';

/** Exception codes (Privileged ISA Table 3.6). */
export const Cause = {
  InsnMisaligned: 0,
  InsnAccessFault: 1,
  IllegalInsn: 2,
  Breakpoint: 3,
  LoadAccessFault: 5,
  StoreAccessFault: 7,
  EcallM: 11,
} as const;
export const INTERRUPT = 0x80000000;
/** Interrupt codes: machine software, timer, external. */
export const Irq = { MSI: 3, MTI: 7, MEI: 11 } as const;

const CAUSE_NAMES: Record<number, string> = {
  0: 'instruction address misaligned',
  1: 'instruction access fault',
  2: 'illegal instruction',
  3: 'breakpoint',
  5: 'load access fault',
  7: 'store access fault',
  11: 'environment call from M-mode',
};

const hex = (v: number): string => '0x' + (v >>> 0).toString(16).padStart(8, '0');

/**
 * The interrupt to take now, or -1. §3.1.9: M-mode interrupts are enabled when mstatus.MIE
 * is set; among pending and enabled ones the order is MEI > MSI > MTI.
 */
export function pendingInterrupt(c: Csrs): number {
  if ((c.mstatus & MSTATUS_MIE) === 0) return -1;
  const p = c.mip & c.mie;
  if (p === 0) return -1;
  if (p & MIP_MEIP) return Irq.MEI;
  if (p & MIP_MSIP) return Irq.MSI;
  if (p & MIP_MTIP) return Irq.MTI;
  return -1;
}

/** State a trap touches, implemented by the Hart. */
export interface TrapTarget {
  pc: number;
  icount: number;
  readonly csr: Csrs;
  readonly bus: Bus;
  fault: GuestFault | undefined;
}

/**
 * Enter the trap handler. `epc` is the pc to resume at (the faulting instruction for an
 * exception, the next instruction for an interrupt). Returns false, leaving the state
 * untouched and `t.fault` set, when the handler address is not in RAM: a guest that traps
 * with no handler must stop with a report, never spin fetching from nowhere.
 */
export function enterTrap(t: TrapTarget, cause: number, tval: number, epc: number, insn: number): boolean {
  const c = t.csr;
  const isIrq = (cause & INTERRUPT) !== 0;
  const base = c.mtvec & ~3;
  // §3.1.7: in vectored mode only interrupts are offset, by 4 × cause.
  const handler = ((c.mtvec & 1) !== 0 && isIrq ? base + 4 * (cause & 0x7fffffff) : base) >>> 0;
  if (!t.bus.inRam(handler, 4)) {
    const what = isIrq
      ? `interrupt ${cause & 0x7fffffff}`
      : cause === Cause.IllegalInsn
        ? `illegal instruction ${hex(insn)}${disasm(insn).startsWith('illegal') ? '' : ` (${disasm(insn)})`}`
        : `${CAUSE_NAMES[cause] ?? `exception ${cause}`} (tval ${hex(tval)})`;
    t.fault = {
      cause: cause >>> 0,
      tval: tval >>> 0,
      pc: epc >>> 0,
      icount: t.icount,
      message: `${what} at pc ${hex(epc)}, icount ${t.icount}, no trap handler (mtvec ${hex(c.mtvec)})`,
    };
    return false;
  }
  c.mepc = (epc & ~3) >>> 0;
  c.mcause = cause >>> 0;
  c.mtval = tval >>> 0;
  c.mstatus = (c.mstatus & MSTATUS_MIE) !== 0 ? MSTATUS_MPIE : 0;
  t.pc = handler;
  return true;
}

/** mret (§3.3.2): pc = mepc, MIE = MPIE, MPIE = 1 (MPP stays M). */
export function leaveTrap(t: TrapTarget): void {
  const c = t.csr;
  c.mstatus = ((c.mstatus & MSTATUS_MPIE) !== 0 ? MSTATUS_MIE : 0) | MSTATUS_MPIE;
  t.pc = c.mepc >>> 0;
}
