// The reference interpreter: one instruction, every rule. Translated blocks only ever
// cover the easy cases and hand everything else (CSRs, MMIO, misaligned accesses, traps,
// wfi, mret) to this function, so it is the single definition of the semantics.
import { Exit } from '../types.js';
import type { Bus } from '../bus.js';
import { Op, type Decoded } from './decode.js';
import type { DecodeCache } from './decode-cache.js';
import { Csr, csrExists, isReadOnly, type Csrs, type ValueSource } from './csr.js';
import { Cause, enterTrap, leaveTrap, type TrapTarget } from './trap.js';
import { div, divu, mulh, mulhsu, mulhu, rem, remu } from './muldiv.js';

/** step() result: keep going (the instruction retired, or a trap was entered). */
export const STEP_OK = -1;

/** What the interpreter needs of the hart. */
export interface StepTarget extends TrapTarget {
  readonly x: Int32Array;
  readonly dec: Decoded;
  readonly dcache: DecodeCache;
  readonly host: ValueSource;
  /** Set by a device (requestExit) during an MMIO access. */
  exitRequested: boolean;
  /** Set by a device (halt) during an MMIO access. */
  haltRequested: boolean;
  /** Set when a load/store hit no RAM and no device. */
  accessFault: boolean;
}

function trap(h: StepTarget, cause: number, tval: number, insn: number): number {
  return enterTrap(h, cause, tval, h.pc, insn) ? STEP_OK : Exit.Fault;
}

/** Load `size` bytes at unsigned `a` as an unsigned value; sets h.accessFault if nothing is there. */
function load(h: StepTarget, bus: Bus, a: number, size: 1 | 2 | 4): number {
  const off = (a - bus.ramBase) >>> 0;
  if (off <= bus.ramBytes - size) {
    const m = bus.ram;
    // Misaligned accesses are performed byte by byte, as QEMU 7.2 does (the EEI may).
    if (size === 4) return (off & 3) === 0 ? bus.ram32[off >>> 2]! >>> 0 : (m[off]! | (m[off + 1]! << 8) | (m[off + 2]! << 16) | (m[off + 3]! << 24)) >>> 0;
    if (size === 2) return m[off]! | (m[off + 1]! << 8);
    return m[off]!;
  }
  const i = bus.deviceAt(a);
  if (i < 0) {
    h.accessFault = true;
    return 0;
  }
  const v = bus.device(i).read((a - bus.deviceBase(i)) >>> 0, size);
  // A device's stray high bits must not leak into lbu/lhu (nor sign-extend lb/lh wrongly).
  return size === 4 ? v >>> 0 : v & (size === 2 ? 0xffff : 0xff);
}

function store(h: StepTarget, bus: Bus, a: number, size: 1 | 2 | 4, v: number): void {
  const off = (a - bus.ramBase) >>> 0;
  if (off <= bus.ramBytes - size) {
    const m = bus.ram;
    m[off] = v;
    if (size >= 2) m[off + 1] = v >>> 8;
    if (size === 4) {
      m[off + 2] = v >>> 16;
      m[off + 3] = v >>> 24;
    }
    bus.noteWrite(off, size);
    return;
  }
  const i = bus.deviceAt(a);
  if (i < 0) {
    h.accessFault = true;
    return;
  }
  const mask = size === 4 ? 0xffffffff : size === 2 ? 0xffff : 0xff;
  bus.device(i).write((a - bus.deviceBase(i)) >>> 0, size, (v & mask) >>> 0);
}

const CSR_RETIRE = 10, CSR_RETIRE_END = 11;

/** Zicsr: CSR_RETIRE(_END) if it retires (and must end the batch), else the trap's step result. */
function csrOp(h: StepTarget, d: Decoded, w: number): number {
  const c: Csrs = h.csr;
  const op = d.op;
  const isImm = op >= Op.Csrrwi;
  const kind = isImm ? op - Op.Csrrwi : op - Op.Csrrw; // 0 rw, 1 rs, 2 rc
  const src = isImm ? d.imm : h.x[d.rs1]!;
  // §9.1: csrrs/csrrc with rs1=x0 and csrrsi/csrrci with uimm=0 never write.
  const readForm = kind !== 0 && (isImm ? d.imm === 0 : d.rs1 === 0);
  // NOTE: with rs1 != x0 the spec has csrrs/csrrc write even when x[rs1] is 0, so a read-only
  // CSR would trap. QEMU 7.2, the reference (DESIGN §1), writes with x[rs1] as the mask and
  // checks read-only-ness against the mask's value: a zero mask neither writes nor traps.
  // Follow QEMU so that guests run the same on both; csrrw and csrrwi always write.
  const writes = !readForm && (kind === 0 || src !== 0);
  if (!csrExists(d.csr) || (writes && isReadOnly(d.csr))) return trap(h, Cause.IllegalInsn, w, w);
  // Zkr §4.1: seed must be accessed with a read-write form; the read forms are illegal
  // (QEMU: by form, so csrrs with a zero-valued rs1 != x0 is legal).
  if (d.csr === Csr.seed && readForm) return trap(h, Cause.IllegalInsn, w, w);
  // §9.1: csrrw with rd=x0 does not read (and so causes no read side effects).
  const reads = kind !== 0 || d.rd !== 0 || d.csr === Csr.seed;
  const old = reads ? c.read(d.csr, h.icount, h.host) : 0;
  let end = false;
  if (writes) {
    const nv = kind === 0 ? src : kind === 1 ? old | src : old & ~src;
    end = c.write(d.csr, nv, h.icount);
  }
  if (d.rd !== 0) h.x[d.rd] = old;
  return end ? CSR_RETIRE_END : CSR_RETIRE;
}

/**
 * Execute the instruction at h.pc. On return either it retired (icount+1, pc advanced), or
 * a trap was entered (nothing retired, pc = handler), or the result is Exit.Fault (fatal,
 * state untouched). Returns STEP_OK to keep going, or the Exit that ends the batch.
 */
export function step(h: StepTarget): number {
  const bus = h.bus, x = h.x, d = h.dec;
  const pc = h.pc;
  const off = (pc - bus.ramBase) >>> 0;
  if ((pc & 3) !== 0) return trap(h, Cause.InsnMisaligned, pc, 0);
  if (off > bus.ramBytes - 4) return trap(h, Cause.InsnAccessFault, pc, 0);
  const wi = off >>> 2;
  const w = bus.ram32[wi]!;
  const pg = h.dcache.page(wi);
  const si = (wi & 1023) * 2;
  const meta = pg[si]!;
  d.op = ((meta >>> 1) & 0x7f) as Op;
  d.rd = (meta >>> 8) & 31;
  d.rs1 = (meta >>> 13) & 31;
  d.rs2 = (meta >>> 18) & 31;
  if (d.op >= Op.Csrrw) {
    d.csr = pg[si + 1]!;
    d.imm = d.rs1;
  } else {
    d.imm = pg[si + 1]!;
  }
  const rd = d.rd, a = x[d.rs1]!, b = x[d.rs2]!, imm = d.imm;
  let next = (pc + 4) >>> 0;
  let v = 0;
  let result = STEP_OK;
  switch (d.op) {
    case Op.Lui: v = imm; break;
    case Op.Auipc: v = (pc + imm) | 0; break;
    case Op.Jal:
    case Op.Jalr: {
      const t = (d.op === Op.Jal ? pc + imm : (a + imm) & ~1) >>> 0;
      // §2.5: a jump to a target not aligned to IALIGN=32 raises the exception on the jump.
      if ((t & 3) !== 0) return trap(h, Cause.InsnMisaligned, t, w);
      v = next | 0;
      next = t;
      break;
    }
    case Op.Beq: case Op.Bne: case Op.Blt: case Op.Bge: case Op.Bltu: case Op.Bgeu: {
      const op = d.op;
      const taken =
        op === Op.Beq ? a === b : op === Op.Bne ? a !== b : op === Op.Blt ? a < b : op === Op.Bge ? a >= b
          : op === Op.Bltu ? a >>> 0 < b >>> 0 : a >>> 0 >= b >>> 0;
      if (taken) {
        const t = (pc + imm) >>> 0;
        if ((t & 3) !== 0) return trap(h, Cause.InsnMisaligned, t, w);
        next = t;
      }
      x[0] = 0;
      h.pc = next;
      h.icount++;
      return STEP_OK;
    }
    case Op.Lb: case Op.Lh: case Op.Lw: case Op.Lbu: case Op.Lhu: {
      const addr = (a + imm) >>> 0;
      const op = d.op;
      const size = op === Op.Lw ? 4 : op === Op.Lh || op === Op.Lhu ? 2 : 1;
      h.accessFault = false;
      const u = load(h, bus, addr, size);
      if (h.accessFault) return trap(h, Cause.LoadAccessFault, addr, w);
      v = op === Op.Lb ? (u << 24) >> 24 : op === Op.Lh ? (u << 16) >> 16 : u | 0;
      break;
    }
    case Op.Sb: case Op.Sh: case Op.Sw: {
      const addr = (a + imm) >>> 0;
      h.accessFault = false;
      store(h, bus, addr, d.op === Op.Sw ? 4 : d.op === Op.Sh ? 2 : 1, b);
      if (h.accessFault) return trap(h, Cause.StoreAccessFault, addr, w);
      h.pc = next;
      h.icount++;
      return h.haltRequested ? Exit.Halt : h.exitRequested ? Exit.Request : STEP_OK;
    }
    case Op.Addi: v = (a + imm) | 0; break;
    case Op.Slti: v = a < imm ? 1 : 0; break;
    case Op.Sltiu: v = a >>> 0 < imm >>> 0 ? 1 : 0; break;
    case Op.Xori: v = a ^ imm; break;
    case Op.Ori: v = a | imm; break;
    case Op.Andi: v = a & imm; break;
    case Op.Slli: v = a << imm; break;
    case Op.Srli: v = (a >>> imm) | 0; break;
    case Op.Srai: v = a >> imm; break;
    case Op.Add: v = (a + b) | 0; break;
    case Op.Sub: v = (a - b) | 0; break;
    // §2.4.2: register shifts use only the low 5 bits of rs2 (JS shifts mask the same way).
    case Op.Sll: v = a << (b & 31); break;
    case Op.Slt: v = a < b ? 1 : 0; break;
    case Op.Sltu: v = a >>> 0 < b >>> 0 ? 1 : 0; break;
    case Op.Xor: v = a ^ b; break;
    case Op.Srl: v = (a >>> (b & 31)) | 0; break;
    case Op.Sra: v = a >> (b & 31); break;
    case Op.Or: v = a | b; break;
    case Op.And: v = a & b; break;
    case Op.Mul: v = Math.imul(a, b); break;
    case Op.Mulh: v = mulh(a, b); break;
    case Op.Mulhsu: v = mulhsu(a, b); break;
    case Op.Mulhu: v = mulhu(a, b); break;
    case Op.Div: v = div(a, b); break;
    case Op.Divu: v = divu(a, b); break;
    case Op.Rem: v = rem(a, b); break;
    case Op.Remu: v = remu(a, b); break;
    // One hart, no caches to sync: fences order nothing. Stores already drop stale
    // translations, so fence.i has nothing left to do either.
    case Op.Fence: case Op.FenceI:
      h.pc = next;
      h.icount++;
      return STEP_OK;
    case Op.Ecall: return trap(h, Cause.EcallM, 0, w);
    // §3.1.16 lets mtval be 0 or the pc for a breakpoint; QEMU 7.2 (the reference) writes 0.
    case Op.Ebreak: return trap(h, Cause.Breakpoint, 0, w);
    case Op.Mret:
      leaveTrap(h);
      h.icount++;
      return STEP_OK;
    case Op.Wfi:
      h.pc = next;
      h.icount++;
      // §3.3.3: wfi may resume when any enabled interrupt is pending, even with MIE clear.
      return (h.csr.mip & h.csr.mie) === 0 ? Exit.Wfi : STEP_OK;
    case Op.Csrrw: case Op.Csrrs: case Op.Csrrc: case Op.Csrrwi: case Op.Csrrsi: case Op.Csrrci: {
      const r = csrOp(h, d, w);
      if (r !== CSR_RETIRE && r !== CSR_RETIRE_END) return r; // trapped: nothing retired
      h.pc = next;
      h.icount++;
      return h.haltRequested ? Exit.Halt : r === CSR_RETIRE_END || h.exitRequested ? Exit.Request : STEP_OK;
    }
    default:
      return trap(h, Cause.IllegalInsn, w, w);
  }
  if (rd !== 0) x[rd] = v;
  h.pc = next;
  h.icount++;
  return h.haltRequested ? Exit.Halt : h.exitRequested ? Exit.Request : STEP_OK;
}
