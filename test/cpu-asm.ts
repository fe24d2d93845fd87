// A tiny RV32IM assembler for CPU tests: each helper returns one instruction word, encoded
// straight from the base-format diagrams (Unprivileged ISA §2.2-2.3), independently of
// runtime/cpu/decode.ts so that a decoder bug cannot hide behind a matching encoder bug.
import { Bus } from '../runtime/bus.js';
import { Hart, type HartHost } from '../runtime/cpu/hart.js';

export const RAM = 0x8000_0000;

const r = (f7: number, rs2: number, rs1: number, f3: number, rd: number, opc: number): number =>
  ((f7 << 25) | (rs2 << 20) | (rs1 << 15) | (f3 << 12) | (rd << 7) | opc) >>> 0;
const i = (imm: number, rs1: number, f3: number, rd: number, opc: number): number =>
  (((imm & 0xfff) << 20) | (rs1 << 15) | (f3 << 12) | (rd << 7) | opc) >>> 0;
const s = (imm: number, rs2: number, rs1: number, f3: number, opc: number): number =>
  ((((imm >> 5) & 0x7f) << 25) | (rs2 << 20) | (rs1 << 15) | (f3 << 12) | ((imm & 0x1f) << 7) | opc) >>> 0;
const b = (imm: number, rs2: number, rs1: number, f3: number): number =>
  ((((imm >> 12) & 1) << 31) | (((imm >> 5) & 0x3f) << 25) | (rs2 << 20) | (rs1 << 15) | (f3 << 12) |
    (((imm >> 1) & 0xf) << 8) | (((imm >> 11) & 1) << 7) | 0x63) >>> 0;

export const lui = (rd: number, imm20: number): number => (((imm20 & 0xfffff) << 12) | (rd << 7) | 0x37) >>> 0;
export const auipc = (rd: number, imm20: number): number => (((imm20 & 0xfffff) << 12) | (rd << 7) | 0x17) >>> 0;
export const jal = (rd: number, off: number): number =>
  ((((off >> 20) & 1) << 31) | (((off >> 1) & 0x3ff) << 21) | (((off >> 11) & 1) << 20) | (((off >> 12) & 0xff) << 12) |
    (rd << 7) | 0x6f) >>> 0;
export const jalr = (rd: number, rs1: number, off: number): number => i(off, rs1, 0, rd, 0x67);
export const beq = (a: number, c: number, off: number): number => b(off, c, a, 0);
export const bne = (a: number, c: number, off: number): number => b(off, c, a, 1);
export const blt = (a: number, c: number, off: number): number => b(off, c, a, 4);
export const bge = (a: number, c: number, off: number): number => b(off, c, a, 5);
export const bltu = (a: number, c: number, off: number): number => b(off, c, a, 6);
export const bgeu = (a: number, c: number, off: number): number => b(off, c, a, 7);
export const lb = (rd: number, rs1: number, off: number): number => i(off, rs1, 0, rd, 0x03);
export const lh = (rd: number, rs1: number, off: number): number => i(off, rs1, 1, rd, 0x03);
export const lw = (rd: number, rs1: number, off: number): number => i(off, rs1, 2, rd, 0x03);
export const lbu = (rd: number, rs1: number, off: number): number => i(off, rs1, 4, rd, 0x03);
export const lhu = (rd: number, rs1: number, off: number): number => i(off, rs1, 5, rd, 0x03);
export const sb = (rs2: number, rs1: number, off: number): number => s(off, rs2, rs1, 0, 0x23);
export const sh = (rs2: number, rs1: number, off: number): number => s(off, rs2, rs1, 1, 0x23);
export const sw = (rs2: number, rs1: number, off: number): number => s(off, rs2, rs1, 2, 0x23);
export const addi = (rd: number, rs1: number, imm: number): number => i(imm, rs1, 0, rd, 0x13);
export const slti = (rd: number, rs1: number, imm: number): number => i(imm, rs1, 2, rd, 0x13);
export const sltiu = (rd: number, rs1: number, imm: number): number => i(imm, rs1, 3, rd, 0x13);
export const xori = (rd: number, rs1: number, imm: number): number => i(imm, rs1, 4, rd, 0x13);
export const ori = (rd: number, rs1: number, imm: number): number => i(imm, rs1, 6, rd, 0x13);
export const andi = (rd: number, rs1: number, imm: number): number => i(imm, rs1, 7, rd, 0x13);
export const slli = (rd: number, rs1: number, sh: number): number => r(0, sh, rs1, 1, rd, 0x13);
export const srli = (rd: number, rs1: number, sh: number): number => r(0, sh, rs1, 5, rd, 0x13);
export const srai = (rd: number, rs1: number, sh: number): number => r(0x20, sh, rs1, 5, rd, 0x13);
const R = (f7: number, f3: number) => (rd: number, a: number, c: number): number => r(f7, c, a, f3, rd, 0x33);
export const add = R(0, 0), sub = R(0x20, 0), sll = R(0, 1), slt = R(0, 2), sltu = R(0, 3), xor = R(0, 4);
export const srl = R(0, 5), sra = R(0x20, 5), or = R(0, 6), and = R(0, 7);
export const mul = R(1, 0), mulh = R(1, 1), mulhsu = R(1, 2), mulhu = R(1, 3);
export const div = R(1, 4), divu = R(1, 5), rem = R(1, 6), remu = R(1, 7);
export const fence = (): number => 0x0ff0000f;
export const fencei = (): number => 0x0000100f;
export const ecall = (): number => 0x00000073;
export const ebreak = (): number => 0x00100073;
export const mret = (): number => 0x30200073;
export const wfi = (): number => 0x10500073;
export const csrrw = (rd: number, csr: number, rs1: number): number => i(csr, rs1, 1, rd, 0x73);
export const csrrs = (rd: number, csr: number, rs1: number): number => i(csr, rs1, 2, rd, 0x73);
export const csrrc = (rd: number, csr: number, rs1: number): number => i(csr, rs1, 3, rd, 0x73);
export const csrrwi = (rd: number, csr: number, z: number): number => i(csr, z, 5, rd, 0x73);
export const csrrsi = (rd: number, csr: number, z: number): number => i(csr, z, 6, rd, 0x73);
export const csrrci = (rd: number, csr: number, z: number): number => i(csr, z, 7, rd, 0x73);

/** Load a full 32-bit constant into rd (lui + addi, accounting for addi's sign extension). */
export function li(rd: number, v: number): number[] {
  const lo = (v << 20) >> 20;
  const hi = ((v - lo) >>> 12) & 0xfffff;
  return [lui(rd, hi), addi(rd, rd, lo)];
}

export interface Rig {
  bus: Bus;
  hart: Hart;
  /** Values handed out for each kind, in order of request. */
  values: { kind: string; icount: number }[];
}

/** A bus with `ramKiB` of RAM at 0x8000_0000 holding `words` from its start, and a hart reset there. */
export function rig(words: number[], opts: { jit?: boolean; ramKiB?: number; value?: (kind: string, icount: number) => number } = {}): Rig {
  const bus = new Bus(RAM, (opts.ramKiB ?? 64) * 1024);
  const values: Rig['values'] = [];
  const host: HartHost = {
    value: (kind, icount) => {
      values.push({ kind, icount });
      return opts.value ? opts.value(kind, icount) : 0;
    },
  };
  const hart = new Hart(bus, host, { jit: opts.jit });
  load(bus, RAM, words);
  hart.reset(RAM);
  return { bus, hart, values };
}

export function load(bus: Bus, addr: number, words: number[]): void {
  const bytes = new Uint8Array(words.length * 4);
  words.forEach((w, k) => new DataView(bytes.buffer).setUint32(k * 4, w >>> 0, true));
  bus.writeRam(addr, bytes);
}
