// The reference interpreter: one switch with one case per row of the instruction table
// (insn.ts), every rule. Translated blocks only ever cover the easy cases and hand
// everything else (CSRs, MMIO, misaligned accesses, traps, wfi, mret) to this function, so
// it is the single definition of the semantics.
//
// The hot loop keeps pc (as a byte offset into RAM) and the retired count in locals, reads
// pre-decoded fields from the decode cache's typed arrays, and never allocates. Anything
// rare (a trap, an MMIO or misaligned access, a CSR, mret, wfi) writes pc and icount back,
// is done by a helper, and ends the call: the caller (Hart.run) then checks for interrupts,
// which only such instructions can make pending or enabled.
import { Exit } from '../types.js';
import { CODE_SHIFT, type Bus } from '../bus.js';
import { Op } from './insn.js';
import type { Decoded } from './decode.js';
import type { DecodeCache } from './decode-cache.js';
import { Csr, csrExists, isReadOnly, type Csrs, type ValueSource } from './csr.js';
import { Cause, enterTrap, leaveTrap, type TrapTarget } from './trap.js';
import { div, divu, mulh, mulhsu, mulhu, rem, remu } from './muldiv.js';

/** interpret() result: keep going (the instructions retired, or a trap was entered). */
export const STEP_OK = -1;

/** What the interpreter needs of the hart. */
export interface StepTarget extends TrapTarget {
  readonly x: Int32Array;
  /** Scratch record (kept for API compatibility; the interpreter reads the decode cache). */
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

/** Enter a trap for the instruction at h.pc (h.pc and h.icount already written back). */
function trap(h: StepTarget, cause: number, tval: number, insn: number): number {
  return enterTrap(h, cause, tval, h.pc, insn) ? STEP_OK : Exit.Fault;
}

/** After an instruction that retired through a helper: did a device ask to stop? */
function retire(h: StepTarget): number {
  h.pc = (h.pc + 4) >>> 0;
  h.icount++;
  return h.haltRequested ? Exit.Halt : h.exitRequested ? Exit.Request : STEP_OK;
}

/** Load `size` bytes at unsigned `a` as an unsigned value; sets h.accessFault if nothing is there. */
function load(h: StepTarget, bus: Bus, a: number, size: 1 | 2 | 4): number {
  const off = (a - bus.ramBase) >>> 0;
  if (off <= bus.ramBytes - size) {
    const m = bus.ram;
    // Misaligned accesses are performed byte by byte, as QEMU 7.2 does (the EEI may).
    if (size === 4) return (m[off]! | (m[off + 1]! << 8) | (m[off + 2]! << 16) | (m[off + 3]! << 24)) >>> 0;
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

/** A taken branch or jump to a misaligned target (§2.5): the trap is on the jump itself. */
function misaligned(h: StepTarget, pc: number, icount: number, target: number, insn: number): number {
  h.pc = pc >>> 0;
  h.icount = icount;
  return trap(h, Cause.InsnMisaligned, target >>> 0, insn);
}

/** A load the fast path does not do (MMIO, misaligned, or nothing there), at RAM word w. */
function loadSlow(h: StepTarget, w: number, a: number, size: 1 | 2 | 4, signed: boolean): number {
  h.accessFault = false;
  const u = load(h, h.bus, a, size);
  if (h.accessFault) return trap(h, Cause.LoadAccessFault, a, h.bus.ram32[w]!);
  const rd = h.dcache.rd[w]!;
  if (rd !== 0) h.x[rd] = !signed ? u | 0 : size === 1 ? (u << 24) >> 24 : size === 2 ? (u << 16) >> 16 : u | 0;
  return retire(h);
}

/** A store the fast path does not do (MMIO, misaligned, code granule, or nothing there). */
function storeSlow(h: StepTarget, w: number, a: number, size: 1 | 2 | 4): number {
  h.accessFault = false;
  store(h, h.bus, a, size, h.x[h.dcache.rs2[w]!]!);
  if (h.accessFault) return trap(h, Cause.StoreAccessFault, a, h.bus.ram32[w]!);
  return retire(h);
}

/** Zicsr (ch. 7) for the instruction at RAM word w. */
function csrOp(h: StepTarget, w: number, op: number): number {
  const c: Csrs = h.csr, dc = h.dcache;
  const insn = h.bus.ram32[w]!;
  const csr = dc.csr[w]!, rd = dc.rd[w]!, rs1 = dc.rs1[w]!;
  const isImm = op >= Op.Csrrwi;
  const kind = isImm ? op - Op.Csrrwi : op - Op.Csrrw; // 0 rw, 1 rs, 2 rc
  const src = isImm ? rs1 : h.x[rs1]!;
  // §7.1: csrrs/csrrc with rs1=x0 and csrrsi/csrrci with uimm=0 never write.
  const readForm = kind !== 0 && rs1 === 0;
  // NOTE: with rs1 != x0 the spec has csrrs/csrrc write even when x[rs1] is 0, so a read-only
  // CSR would trap. QEMU 7.2, the reference (DESIGN §1), writes with x[rs1] as the mask and
  // checks read-only-ness against the mask's value: a zero mask neither writes nor traps.
  // Follow QEMU so that guests run the same on both; csrrw and csrrwi always write.
  const writes = !readForm && (kind === 0 || src !== 0);
  if (!csrExists(csr) || (writes && isReadOnly(csr))) return trap(h, Cause.IllegalInsn, insn, insn);
  // Zkr §4.1: seed must be accessed with a read-write form; the read forms are illegal
  // (QEMU: by form, so csrrs with a zero-valued rs1 != x0 is legal).
  if (csr === Csr.seed && readForm) return trap(h, Cause.IllegalInsn, insn, insn);
  // §7.1: csrrw with rd=x0 does not read (and so causes no read side effects).
  const reads = kind !== 0 || rd !== 0 || csr === Csr.seed;
  const old = reads ? c.read(csr, h.icount, h.host) : 0;
  let end = false;
  if (writes) {
    const nv = kind === 0 ? src : kind === 1 ? old | src : old & ~src;
    end = c.write(csr, nv, h.icount);
  }
  if (rd !== 0) h.x[rd] = old;
  const r = retire(h);
  // A write that changes whether an interrupt is pending and enabled ends the batch (Csrs.write).
  return r === STEP_OK && end ? Exit.Request : r;
}

/**
 * Run up to `budget` instructions from h.pc. On return h.pc and h.icount are exact: every
 * instruction counted retired; a trap, if any, was entered (nothing retired for it, pc =
 * handler) and the result is STEP_OK, or it could not be (Exit.Fault, state untouched).
 * Returns STEP_OK to keep going, or the Exit that ends the batch. Returns early (STEP_OK)
 * after any instruction done by a helper, so the caller can take a newly enabled interrupt.
 */
export function interpret(h: StepTarget, budget: number): number {
  const bus = h.bus, x = h.x, dc = h.dcache;
  const ops = dc.op, rdA = dc.rd, rs1A = dc.rs1, rs2A = dc.rs2, immA = dc.imm;
  const base = bus.ramBase, lastWord = bus.ramBytes - 4;
  const m8 = bus.ram, m32 = bus.ram32, dirty = bus.dirty, code = bus.code, cshift = CODE_SHIFT;
  const ic0 = h.icount;
  // pc as an unsigned byte offset from the RAM base: small integers in the hot loop.
  let off = (h.pc - base) >>> 0;
  let n = 0;
  // Only jalr and reset() can produce a misaligned pc, and jalr checks; so the loop need not.
  if ((off & 3) !== 0) return trap(h, Cause.InsnMisaligned, h.pc, 0);
  while (n < budget) {
    if (off > lastWord) {
      h.pc = (base + off) >>> 0;
      h.icount = ic0 + n;
      return trap(h, Cause.InsnAccessFault, h.pc, 0);
    }
    const w = off >>> 2;
    switch (ops[w]) {
      case Op.Undecoded:
        dc.decodeAt(w);
        continue;
      case Op.Lui: x[rdA[w]!] = immA[w]!; break;
      case Op.Auipc: x[rdA[w]!] = (base + off + immA[w]!) | 0; break;
      case Op.Jal: {
        // §2.5: a jump to a target not aligned to IALIGN=32 raises the exception on the jump.
        // off is aligned and the offset even, so bit 1 alone tells.
        const t = (off + immA[w]!) >>> 0;
        if ((t & 2) !== 0) return misaligned(h, base + off, ic0 + n, base + t, m32[w]!);
        x[rdA[w]!] = (base + off + 4) | 0;
        off = t;
        n++;
        x[0] = 0;
        continue;
      }
      case Op.Jalr: {
        const t = ((x[rs1A[w]!]! + immA[w]!) & ~1) >>> 0;
        if ((t & 2) !== 0) return misaligned(h, base + off, ic0 + n, t, m32[w]!);
        x[rdA[w]!] = (base + off + 4) | 0;
        off = (t - base) >>> 0;
        n++;
        x[0] = 0;
        continue;
      }
      // Branches: a taken branch to a misaligned target traps (§2.5); the offset is even.
      case Op.Beq:
        if (x[rs1A[w]!] === x[rs2A[w]!]) {
          const i = immA[w]!;
          if ((i & 2) !== 0) return misaligned(h, base + off, ic0 + n, base + off + i, m32[w]!);
          off = (off + i) >>> 0;
        } else off += 4;
        n++;
        continue;
      case Op.Bne:
        if (x[rs1A[w]!] !== x[rs2A[w]!]) {
          const i = immA[w]!;
          if ((i & 2) !== 0) return misaligned(h, base + off, ic0 + n, base + off + i, m32[w]!);
          off = (off + i) >>> 0;
        } else off += 4;
        n++;
        continue;
      case Op.Blt:
        if (x[rs1A[w]!]! < x[rs2A[w]!]!) {
          const i = immA[w]!;
          if ((i & 2) !== 0) return misaligned(h, base + off, ic0 + n, base + off + i, m32[w]!);
          off = (off + i) >>> 0;
        } else off += 4;
        n++;
        continue;
      case Op.Bge:
        if (x[rs1A[w]!]! >= x[rs2A[w]!]!) {
          const i = immA[w]!;
          if ((i & 2) !== 0) return misaligned(h, base + off, ic0 + n, base + off + i, m32[w]!);
          off = (off + i) >>> 0;
        } else off += 4;
        n++;
        continue;
      case Op.Bltu:
        if (x[rs1A[w]!]! >>> 0 < x[rs2A[w]!]! >>> 0) {
          const i = immA[w]!;
          if ((i & 2) !== 0) return misaligned(h, base + off, ic0 + n, base + off + i, m32[w]!);
          off = (off + i) >>> 0;
        } else off += 4;
        n++;
        continue;
      case Op.Bgeu:
        if (x[rs1A[w]!]! >>> 0 >= x[rs2A[w]!]! >>> 0) {
          const i = immA[w]!;
          if ((i & 2) !== 0) return misaligned(h, base + off, ic0 + n, base + off + i, m32[w]!);
          off = (off + i) >>> 0;
        } else off += 4;
        n++;
        continue;
      case Op.Lb: case Op.Lh: case Op.Lw: case Op.Lbu: case Op.Lhu: {
        const op = ops[w]!;
        const a = (x[rs1A[w]!]! + immA[w]!) >>> 0;
        const o = (a - base) >>> 0;
        const size = op === Op.Lw ? 4 : op === Op.Lh || op === Op.Lhu ? 2 : 1;
        if (o > bus.ramBytes - size || (o & (size - 1)) !== 0) {
          h.pc = (base + off) >>> 0;
          h.icount = ic0 + n;
          return loadSlow(h, w, a, size, op === Op.Lb || op === Op.Lh);
        }
        x[rdA[w]!] =
          op === Op.Lw ? m32[o >>> 2]!
            : op === Op.Lbu ? m8[o]!
              : op === Op.Lb ? (m8[o]! << 24) >> 24
                : op === Op.Lhu ? m8[o]! | (m8[o + 1]! << 8)
                  : ((m8[o]! | (m8[o + 1]! << 8)) << 16) >> 16;
        off += 4;
        n++;
        x[0] = 0;
        continue;
      }
      case Op.Sb: case Op.Sh: case Op.Sw: {
        const op = ops[w]!;
        const a = (x[rs1A[w]!]! + immA[w]!) >>> 0;
        const o = (a - base) >>> 0;
        const size = op === Op.Sw ? 4 : op === Op.Sh ? 2 : 1;
        // A store into a granule holding decoded code goes the slow way, which drops it.
        if (o > bus.ramBytes - size || (o & (size - 1)) !== 0 || code[o >>> cshift] !== 0) {
          h.pc = (base + off) >>> 0;
          h.icount = ic0 + n;
          return storeSlow(h, w, a, size);
        }
        const v = x[rs2A[w]!]!;
        if (size === 4) m32[o >>> 2] = v;
        else {
          m8[o] = v;
          if (size === 2) m8[o + 1] = v >>> 8;
        }
        dirty[o >>> 12] = 1;
        off += 4;
        n++;
        continue;
      }
      case Op.Addi: x[rdA[w]!] = (x[rs1A[w]!]! + immA[w]!) | 0; break;
      case Op.Slti: x[rdA[w]!] = x[rs1A[w]!]! < immA[w]! ? 1 : 0; break;
      case Op.Sltiu: x[rdA[w]!] = x[rs1A[w]!]! >>> 0 < immA[w]! >>> 0 ? 1 : 0; break;
      case Op.Xori: x[rdA[w]!] = x[rs1A[w]!]! ^ immA[w]!; break;
      case Op.Ori: x[rdA[w]!] = x[rs1A[w]!]! | immA[w]!; break;
      case Op.Andi: x[rdA[w]!] = x[rs1A[w]!]! & immA[w]!; break;
      case Op.Slli: x[rdA[w]!] = x[rs1A[w]!]! << immA[w]!; break;
      case Op.Srli: x[rdA[w]!] = x[rs1A[w]!]! >>> immA[w]!; break;
      case Op.Srai: x[rdA[w]!] = x[rs1A[w]!]! >> immA[w]!; break;
      case Op.Add: x[rdA[w]!] = x[rs1A[w]!]! + x[rs2A[w]!]!; break;
      case Op.Sub: x[rdA[w]!] = x[rs1A[w]!]! - x[rs2A[w]!]!; break;
      // §2.4.2: register shifts use only the low 5 bits of rs2 (JS shifts mask the same way).
      case Op.Sll: x[rdA[w]!] = x[rs1A[w]!]! << x[rs2A[w]!]!; break;
      case Op.Slt: x[rdA[w]!] = x[rs1A[w]!]! < x[rs2A[w]!]! ? 1 : 0; break;
      case Op.Sltu: x[rdA[w]!] = x[rs1A[w]!]! >>> 0 < x[rs2A[w]!]! >>> 0 ? 1 : 0; break;
      case Op.Xor: x[rdA[w]!] = x[rs1A[w]!]! ^ x[rs2A[w]!]!; break;
      case Op.Srl: x[rdA[w]!] = x[rs1A[w]!]! >>> x[rs2A[w]!]!; break;
      case Op.Sra: x[rdA[w]!] = x[rs1A[w]!]! >> x[rs2A[w]!]!; break;
      case Op.Or: x[rdA[w]!] = x[rs1A[w]!]! | x[rs2A[w]!]!; break;
      case Op.And: x[rdA[w]!] = x[rs1A[w]!]! & x[rs2A[w]!]!; break;
      case Op.Mul: x[rdA[w]!] = Math.imul(x[rs1A[w]!]!, x[rs2A[w]!]!); break;
      case Op.Mulh: x[rdA[w]!] = mulh(x[rs1A[w]!]!, x[rs2A[w]!]!); break;
      case Op.Mulhsu: x[rdA[w]!] = mulhsu(x[rs1A[w]!]!, x[rs2A[w]!]!); break;
      case Op.Mulhu: x[rdA[w]!] = mulhu(x[rs1A[w]!]!, x[rs2A[w]!]!); break;
      case Op.Div: x[rdA[w]!] = div(x[rs1A[w]!]!, x[rs2A[w]!]!); break;
      case Op.Divu: x[rdA[w]!] = divu(x[rs1A[w]!]!, x[rs2A[w]!]!); break;
      case Op.Rem: x[rdA[w]!] = rem(x[rs1A[w]!]!, x[rs2A[w]!]!); break;
      case Op.Remu: x[rdA[w]!] = remu(x[rs1A[w]!]!, x[rs2A[w]!]!); break;
      // One hart, no caches to sync: fences order nothing. Stores already drop stale
      // decodings and translations, so fence.i has nothing left to do either.
      case Op.Fence: case Op.FenceI: off += 4; n++; continue;
      default: {
        // Everything else leaves the loop: write pc and icount back, let a helper do it.
        const op = ops[w]!;
        h.pc = (base + off) >>> 0;
        h.icount = ic0 + n;
        const insn = m32[w]!;
        switch (op) {
          case Op.Ecall: return trap(h, Cause.EcallM, 0, insn);
          // §3.1.16 lets mtval be 0 or the pc for a breakpoint; QEMU 7.2 (the reference) writes 0.
          case Op.Ebreak: return trap(h, Cause.Breakpoint, 0, insn);
          case Op.Mret:
            leaveTrap(h);
            h.icount++;
            return STEP_OK;
          case Op.Wfi:
            h.pc = (h.pc + 4) >>> 0;
            h.icount++;
            // §3.3.3: wfi may resume when any enabled interrupt is pending, even with MIE clear.
            return (h.csr.mip & h.csr.mie) === 0 ? Exit.Wfi : STEP_OK;
          case Op.Csrrw: case Op.Csrrs: case Op.Csrrc: case Op.Csrrwi: case Op.Csrrsi: case Op.Csrrci:
            return csrOp(h, w, op);
          default:
            return trap(h, Cause.IllegalInsn, insn, insn);
        }
      }
    }
    // Cases that `break` wrote x[rd] (x0 included: undone here) and go on to the next word.
    off += 4;
    n++;
    x[0] = 0;
  }
  h.pc = (base + off) >>> 0;
  h.icount = ic0 + n;
  return STEP_OK;
}

/** Execute exactly the one instruction at h.pc (or enter its trap). */
export function step(h: StepTarget): number {
  return interpret(h, 1);
}
