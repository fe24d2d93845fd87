// The instruction table (in the manner of rv32emu's RV_INSN_LIST): every instruction the
// hart knows appears once below, with its encoding (match/mask, RISC-V Unprivileged ISA
// ch. 34 "RV32/64G Instruction Set Listings"), its declared format, what the translator does
// with it, and (for the pure ones) its JS expression. The decoder and the disassembler are
// built from the table (decode.ts); the interpreter (interp.ts) has one case per row and the
// translator (jit.ts) emits from the row; test/cpu-insn-table.test.ts checks all of that.

/**
 * Every operation, as a dense number for the interpreter's switch. Undecoded (0) is the
 * interpreter's "decode this word first" slot value; Illegal is every word no row matches.
 * NOTE: literal numbers rather than built from the table so that the switch cases are
 * compile-time constants for V8; the table test checks that each Op has exactly one row.
 */
export const Op = {
  Undecoded: 0, Illegal: 1,
  Lui: 2, Auipc: 3, Jal: 4, Jalr: 5,
  Beq: 6, Bne: 7, Blt: 8, Bge: 9, Bltu: 10, Bgeu: 11,
  Lb: 12, Lh: 13, Lw: 14, Lbu: 15, Lhu: 16,
  Sb: 17, Sh: 18, Sw: 19,
  Addi: 20, Slti: 21, Sltiu: 22, Xori: 23, Ori: 24, Andi: 25, Slli: 26, Srli: 27, Srai: 28,
  Add: 29, Sub: 30, Sll: 31, Slt: 32, Sltu: 33, Xor: 34, Srl: 35, Sra: 36, Or: 37, And: 38,
  Mul: 39, Mulh: 40, Mulhsu: 41, Mulhu: 42, Div: 43, Divu: 44, Rem: 45, Remu: 46,
  Fence: 47, FenceI: 48, Ecall: 49, Ebreak: 50, Mret: 51, Wfi: 52,
  Csrrw: 53, Csrrs: 54, Csrrc: 55, Csrrwi: 56, Csrrsi: 57, Csrrci: 58,
} as const;
export type Op = (typeof Op)[keyof typeof Op];

/**
 * Instruction formats (Unprivileged ISA §2.2-2.3, plus the variants that change which fields
 * mean what): which immediate the decoder extracts and how the disassembler prints operands.
 * - R: rd, rs1, rs2.         - I: rd, rs1, imm[11:0].     - Ishamt: rd, rs1, shamt (= rs2 field).
 * - Iload: rd, imm(rs1).     - S: rs2, imm(rs1).          - B: rs1, rs2, pc offset.
 * - U: rd, imm[31:12].       - J: rd, pc offset.          - Csr: rd, csr, rs1.
 * - Csri: rd, csr, uimm (= rs1 field).                   - None: no operands shown.
 */
export type Format = 'R' | 'I' | 'Ishamt' | 'Iload' | 'S' | 'B' | 'U' | 'J' | 'Csr' | 'Csri' | 'None';

/**
 * What the translator does with a row.
 * - alu: rd = expr(...) in the block (no trap, no side effect).
 * - branch / jal / jalr / load / store / fence: emitted by the matching jit.ts emitter.
 * - interp: handed back; the block ends before it and the interpreter performs it (CSRs,
 *   traps, mret, wfi: anything that may change the interrupt state or trap statically).
 */
export type JitKind = 'alu' | 'branch' | 'jal' | 'jalr' | 'load' | 'store' | 'fence' | 'interp';

export interface Insn {
  readonly op: Op;
  readonly name: string;
  readonly fmt: Format;
  readonly match: number;
  readonly mask: number;
  readonly jit: JitKind;
  /**
   * alu: the int32 JS expression for rd, given the source operand expressions `a` (rs1), `b`
   * (rs2), the decoded immediate and the instruction's pc. Same meaning as interp.ts's case.
   * branch: the taken condition over `a` and `b`.
   */
  readonly expr?: (a: string, b: string, imm: number, pc: number) => string;
  /** load/store: access size in bytes; load: sign-extend the value. */
  readonly size?: 1 | 2 | 4;
  readonly signed?: boolean;
}

const R = 0xfe00707f, F3 = 0x0000707f, OPC = 0x0000007f, ALL = 0xffffffff;

const alu = (op: Op, name: string, fmt: Format, match: number, mask: number, expr: Insn['expr']): Insn =>
  ({ op, name, fmt, match, mask, jit: 'alu', expr });
const br = (op: Op, name: string, f3: number, cond: (a: string, b: string) => string): Insn =>
  ({ op, name, fmt: 'B', match: 0x63 | (f3 << 12), mask: F3, jit: 'branch', expr: (a, b) => cond(a, b) });
const ld = (op: Op, name: string, f3: number, size: 1 | 2 | 4, signed: boolean): Insn =>
  ({ op, name, fmt: 'Iload', match: 0x03 | (f3 << 12), mask: F3, jit: 'load', size, signed });
const st = (op: Op, name: string, f3: number, size: 1 | 2 | 4): Insn =>
  ({ op, name, fmt: 'S', match: 0x23 | (f3 << 12), mask: F3, jit: 'store', size });
const opi = (op: Op, name: string, f3: number, expr: Insn['expr']): Insn => alu(op, name, 'I', 0x13 | (f3 << 12), F3, expr);
const sh = (op: Op, name: string, f7f3: number, expr: Insn['expr']): Insn => alu(op, name, 'Ishamt', 0x13 | f7f3, R, expr);
const rr = (op: Op, name: string, f7f3: number, expr: Insn['expr']): Insn => alu(op, name, 'R', 0x33 | f7f3, R, expr);
const sys = (op: Op, name: string, fmt: Format, match: number, mask: number): Insn => ({ op, name, fmt, match, mask, jit: 'interp' });

/** The table. Expressions are int32 (`| 0` where JS would give a uint32 or a double). */
export const INSNS: readonly Insn[] = [
  alu(Op.Lui, 'lui', 'U', 0x37, OPC, (_a, _b, i) => `${i | 0}`),
  alu(Op.Auipc, 'auipc', 'U', 0x17, OPC, (_a, _b, i, pc) => `${(pc + i) | 0}`),
  { op: Op.Jal, name: 'jal', fmt: 'J', match: 0x6f, mask: OPC, jit: 'jal' },
  { op: Op.Jalr, name: 'jalr', fmt: 'I', match: 0x67, mask: F3, jit: 'jalr' },

  br(Op.Beq, 'beq', 0, (a, b) => `${a} === ${b}`),
  br(Op.Bne, 'bne', 1, (a, b) => `${a} !== ${b}`),
  br(Op.Blt, 'blt', 4, (a, b) => `${a} < ${b}`),
  br(Op.Bge, 'bge', 5, (a, b) => `${a} >= ${b}`),
  br(Op.Bltu, 'bltu', 6, (a, b) => `(${a} >>> 0) < (${b} >>> 0)`),
  br(Op.Bgeu, 'bgeu', 7, (a, b) => `(${a} >>> 0) >= (${b} >>> 0)`),

  ld(Op.Lb, 'lb', 0, 1, true),
  ld(Op.Lh, 'lh', 1, 2, true),
  ld(Op.Lw, 'lw', 2, 4, true),
  ld(Op.Lbu, 'lbu', 4, 1, false),
  ld(Op.Lhu, 'lhu', 5, 2, false),
  st(Op.Sb, 'sb', 0, 1),
  st(Op.Sh, 'sh', 1, 2),
  st(Op.Sw, 'sw', 2, 4),

  opi(Op.Addi, 'addi', 0, (a, _b, i) => `(${a} + ${i}) | 0`),
  opi(Op.Slti, 'slti', 2, (a, _b, i) => `${a} < ${i} ? 1 : 0`),
  opi(Op.Sltiu, 'sltiu', 3, (a, _b, i) => `(${a} >>> 0) < ${i >>> 0} ? 1 : 0`),
  opi(Op.Xori, 'xori', 4, (a, _b, i) => `${a} ^ ${i}`),
  opi(Op.Ori, 'ori', 6, (a, _b, i) => `${a} | ${i}`),
  opi(Op.Andi, 'andi', 7, (a, _b, i) => `${a} & ${i}`),
  // RV32: shamt[5] must be 0, so funct7 is matched whole (§2.4.1).
  sh(Op.Slli, 'slli', 0x1000, (a, _b, i) => `${a} << ${i}`),
  sh(Op.Srli, 'srli', 0x5000, (a, _b, i) => `(${a} >>> ${i}) | 0`),
  sh(Op.Srai, 'srai', 0x40005000, (a, _b, i) => `${a} >> ${i}`),

  rr(Op.Add, 'add', 0x0000, (a, b) => `(${a} + ${b}) | 0`),
  rr(Op.Sub, 'sub', 0x40000000, (a, b) => `(${a} - ${b}) | 0`),
  // §2.4.2: register shifts use only the low 5 bits of rs2 (JS shifts mask the same way).
  rr(Op.Sll, 'sll', 0x1000, (a, b) => `${a} << ${b}`),
  rr(Op.Slt, 'slt', 0x2000, (a, b) => `${a} < ${b} ? 1 : 0`),
  rr(Op.Sltu, 'sltu', 0x3000, (a, b) => `(${a} >>> 0) < (${b} >>> 0) ? 1 : 0`),
  rr(Op.Xor, 'xor', 0x4000, (a, b) => `${a} ^ ${b}`),
  rr(Op.Srl, 'srl', 0x5000, (a, b) => `(${a} >>> ${b}) | 0`),
  rr(Op.Sra, 'sra', 0x40005000, (a, b) => `${a} >> ${b}`),
  rr(Op.Or, 'or', 0x6000, (a, b) => `${a} | ${b}`),
  rr(Op.And, 'and', 0x7000, (a, b) => `${a} & ${b}`),

  // M extension (ch. 13): the helpers in muldiv.ts, shared with the interpreter.
  rr(Op.Mul, 'mul', 0x02000000, (a, b) => `Math.imul(${a}, ${b})`),
  rr(Op.Mulh, 'mulh', 0x02001000, (a, b) => `mulh(${a}, ${b})`),
  rr(Op.Mulhsu, 'mulhsu', 0x02002000, (a, b) => `mulhsu(${a}, ${b})`),
  rr(Op.Mulhu, 'mulhu', 0x02003000, (a, b) => `mulhu(${a}, ${b})`),
  rr(Op.Div, 'div', 0x02004000, (a, b) => `div(${a}, ${b})`),
  rr(Op.Divu, 'divu', 0x02005000, (a, b) => `divu(${a}, ${b})`),
  rr(Op.Rem, 'rem', 0x02006000, (a, b) => `rem(${a}, ${b})`),
  rr(Op.Remu, 'remu', 0x02007000, (a, b) => `remu(${a}, ${b})`),

  // fence's fm/pred/succ/rs1/rd fields are reserved for hints: every value is a fence.
  { op: Op.Fence, name: 'fence', fmt: 'None', match: 0x0f, mask: F3, jit: 'fence' },
  { op: Op.FenceI, name: 'fence.i', fmt: 'None', match: 0x100f, mask: F3, jit: 'fence' },
  sys(Op.Ecall, 'ecall', 'None', 0x00000073, ALL),
  sys(Op.Ebreak, 'ebreak', 'None', 0x00100073, ALL),
  sys(Op.Mret, 'mret', 'None', 0x30200073, ALL),
  sys(Op.Wfi, 'wfi', 'None', 0x10500073, ALL),
  sys(Op.Csrrw, 'csrrw', 'Csr', 0x1073, F3),
  sys(Op.Csrrs, 'csrrs', 'Csr', 0x2073, F3),
  sys(Op.Csrrc, 'csrrc', 'Csr', 0x3073, F3),
  sys(Op.Csrrwi, 'csrrwi', 'Csri', 0x5073, F3),
  sys(Op.Csrrsi, 'csrrsi', 'Csri', 0x6073, F3),
  sys(Op.Csrrci, 'csrrci', 'Csri', 0x7073, F3),
];

/** Row by Op (undefined for Undecoded and Illegal). */
export const INSN_BY_OP: readonly (Insn | undefined)[] = (() => {
  const t: (Insn | undefined)[] = [];
  for (const i of INSNS) t[i.op] = i;
  return t;
})();
