// RV32IM + Zicsr + Zifencei decoding (RISC-V Unprivileged ISA, ch. 2, 7 and 34 "RV32/64G
// Instruction Set Listings"). One table, decoded once per fetch into a reusable record.

/** Every operation the hart knows. Plain numbers so the interpreter switch stays dense. */
export const Op = {
  Illegal: 0,
  Lui: 1, Auipc: 2, Jal: 3, Jalr: 4,
  Beq: 5, Bne: 6, Blt: 7, Bge: 8, Bltu: 9, Bgeu: 10,
  Lb: 11, Lh: 12, Lw: 13, Lbu: 14, Lhu: 15,
  Sb: 16, Sh: 17, Sw: 18,
  Addi: 19, Slti: 20, Sltiu: 21, Xori: 22, Ori: 23, Andi: 24, Slli: 25, Srli: 26, Srai: 27,
  Add: 28, Sub: 29, Sll: 30, Slt: 31, Sltu: 32, Xor: 33, Srl: 34, Sra: 35, Or: 36, And: 37,
  Mul: 38, Mulh: 39, Mulhsu: 40, Mulhu: 41, Div: 42, Divu: 43, Rem: 44, Remu: 45,
  Fence: 46, FenceI: 47, Ecall: 48, Ebreak: 49, Mret: 50, Wfi: 51,
  Csrrw: 52, Csrrs: 53, Csrrc: 54, Csrrwi: 55, Csrrsi: 56, Csrrci: 57,
} as const;
export type Op = (typeof Op)[keyof typeof Op];

export type Format = 'R' | 'I' | 'S' | 'B' | 'U' | 'J' | 'CSR' | 'SYS';

/** The Op table: name and format per op, indexed by Op (used by disassembly and tests). */
export const OPS: readonly { readonly name: string; readonly fmt: Format }[] = (() => {
  const t: { name: string; fmt: Format }[] = [];
  const fmtOf = (name: string): Format => {
    if (name === 'lui' || name === 'auipc') return 'U';
    if (name === 'jal') return 'J';
    if (/^b/.test(name)) return 'B';
    if (/^s[bhw]$/.test(name)) return 'S';
    if (/^csr/.test(name)) return 'CSR';
    if (['fence', 'fencei', 'ecall', 'ebreak', 'mret', 'wfi', 'illegal'].includes(name)) return 'SYS';
    if (/^(add|sub|sll|slt|sltu|xor|srl|sra|or|and|mul.*|div.*|rem.*)$/.test(name)) return 'R';
    return 'I';
  };
  for (const [k, v] of Object.entries(Op)) {
    const name = k.toLowerCase();
    t[v] = { name: name === 'fencei' ? 'fence.i' : name, fmt: fmtOf(name) };
  }
  return t;
})();

/** A decoded instruction. Reused: decode() overwrites it, so hot paths never allocate. */
export interface Decoded {
  op: Op;
  rd: number;
  rs1: number;
  rs2: number;
  /** Sign-extended immediate; shift amount for slli/srli/srai; zimm for csr*i. */
  imm: number;
  /** CSR number for Zicsr ops. */
  csr: number;
}

export const newDecoded = (): Decoded => ({ op: Op.Illegal, rd: 0, rs1: 0, rs2: 0, imm: 0, csr: 0 });

const immI = (w: number): number => w >> 20;
const immS = (w: number): number => ((w >> 25) << 5) | ((w >>> 7) & 0x1f);
const immB = (w: number): number =>
  ((w >> 31) << 12) | (((w >>> 7) & 1) << 11) | (((w >>> 25) & 0x3f) << 5) | (((w >>> 8) & 0xf) << 1);
const immU = (w: number): number => w & 0xfffff000;
const immJ = (w: number): number =>
  ((w >> 31) << 20) | (((w >>> 12) & 0xff) << 12) | (((w >>> 20) & 1) << 11) | (((w >>> 21) & 0x3ff) << 1);

const BRANCH: readonly Op[] = [Op.Beq, Op.Bne, Op.Illegal, Op.Illegal, Op.Blt, Op.Bge, Op.Bltu, Op.Bgeu];
const LOAD: readonly Op[] = [Op.Lb, Op.Lh, Op.Lw, Op.Illegal, Op.Lbu, Op.Lhu, Op.Illegal, Op.Illegal];
const STORE: readonly Op[] = [Op.Sb, Op.Sh, Op.Sw];
const OPIMM: readonly Op[] = [Op.Addi, Op.Slli, Op.Slti, Op.Sltiu, Op.Xori, Op.Srli, Op.Ori, Op.Andi];
const OP0: readonly Op[] = [Op.Add, Op.Sll, Op.Slt, Op.Sltu, Op.Xor, Op.Srl, Op.Or, Op.And];
const MULDIV: readonly Op[] = [Op.Mul, Op.Mulh, Op.Mulhsu, Op.Mulhu, Op.Div, Op.Divu, Op.Rem, Op.Remu];
const CSROPS: readonly Op[] = [Op.Illegal, Op.Csrrw, Op.Csrrs, Op.Csrrc, Op.Illegal, Op.Csrrwi, Op.Csrrsi, Op.Csrrci];

/** Decode instruction word `w` into `d`. Reserved encodings decode to Op.Illegal. */
export function decode(w: number, d: Decoded): void {
  const f3 = (w >>> 12) & 7;
  const f7 = w >>> 25;
  d.rd = (w >>> 7) & 31;
  d.rs1 = (w >>> 15) & 31;
  d.rs2 = (w >>> 20) & 31;
  d.imm = 0;
  d.csr = 0;
  let op: Op = Op.Illegal;
  // Bits 1:0 != 11 are compressed encodings: without the C extension they are illegal.
  switch (w & 0x7f) {
    case 0x37: op = Op.Lui; d.imm = immU(w); break;
    case 0x17: op = Op.Auipc; d.imm = immU(w); break;
    case 0x6f: op = Op.Jal; d.imm = immJ(w); break;
    case 0x67: if (f3 === 0) { op = Op.Jalr; d.imm = immI(w); } break;
    case 0x63: op = BRANCH[f3]!; d.imm = immB(w); break;
    case 0x03: op = LOAD[f3]!; d.imm = immI(w); break;
    case 0x23: op = STORE[f3] ?? Op.Illegal; d.imm = immS(w); break;
    case 0x13:
      op = OPIMM[f3]!;
      d.imm = immI(w);
      if (f3 === 1) {
        if (f7 !== 0) op = Op.Illegal;
        d.imm = d.rs2;
      } else if (f3 === 5) {
        // RV32: shamt[5] must be 0; funct7 0x20 selects srai.
        op = f7 === 0 ? Op.Srli : f7 === 0x20 ? Op.Srai : Op.Illegal;
        d.imm = d.rs2;
      }
      break;
    case 0x33:
      if (f7 === 0) op = OP0[f3]!;
      else if (f7 === 1) op = MULDIV[f3]!;
      else if (f7 === 0x20) op = f3 === 0 ? Op.Sub : f3 === 5 ? Op.Sra : Op.Illegal;
      break;
    case 0x0f:
      // fence's fm/pred/succ/rs1/rd fields are reserved-for-hints: every value is a fence.
      if (f3 === 0) op = Op.Fence;
      else if (f3 === 1) op = Op.FenceI;
      break;
    case 0x73:
      if (f3 === 0) {
        if (w === 0x00000073) op = Op.Ecall;
        else if (w === 0x00100073) op = Op.Ebreak;
        else if (w === 0x30200073) op = Op.Mret;
        else if (w === 0x10500073) op = Op.Wfi;
      } else {
        op = CSROPS[f3]!;
        d.csr = w >>> 20;
        d.imm = d.rs1; // zimm for the *i forms
      }
      break;
    default:
      break;
  }
  d.op = op;
}

const hex = (v: number): string => '0x' + (v >>> 0).toString(16);

/** Human-readable form for fault messages and debugging. */
export function disasm(w: number): string {
  const d = newDecoded();
  decode(w, d);
  const { name, fmt } = OPS[d.op]!;
  const r = (i: number): string => 'x' + i;
  switch (fmt) {
    case 'R': return `${name} ${r(d.rd)}, ${r(d.rs1)}, ${r(d.rs2)}`;
    case 'I':
      if (d.op >= Op.Lb && d.op <= Op.Lhu) return `${name} ${r(d.rd)}, ${d.imm}(${r(d.rs1)})`;
      return `${name} ${r(d.rd)}, ${r(d.rs1)}, ${d.imm}`;
    case 'S': return `${name} ${r(d.rs2)}, ${d.imm}(${r(d.rs1)})`;
    case 'B': return `${name} ${r(d.rs1)}, ${r(d.rs2)}, ${d.imm}`;
    case 'U': return `${name} ${r(d.rd)}, ${hex(d.imm >>> 12)}`;
    case 'J': return `${name} ${r(d.rd)}, ${d.imm}`;
    case 'CSR': return `${name} ${r(d.rd)}, ${hex(d.csr)}, ${d.op >= Op.Csrrwi ? d.imm : r(d.rs1)}`;
    default: return d.op === Op.Illegal ? `illegal ${hex(w)}` : name;
  }
}
