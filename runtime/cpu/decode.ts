// Decoding and disassembly, both built from the instruction table (insn.ts): the row whose
// mask/match fits the word gives the op, and the row's declared format says which
// immediate to extract (Unprivileged ISA §2.3) and how to print the operands.
import { INSNS, INSN_BY_OP, Op, type Format, type Insn } from './insn.js';

export { Op, type Format } from './insn.js';

/** Name and format per op, indexed by Op (disassembly and tests). */
export const OPS: readonly { readonly name: string; readonly fmt: Format }[] = (() => {
  const t: { name: string; fmt: Format }[] = [{ name: 'undecoded', fmt: 'None' }, { name: 'illegal', fmt: 'None' }];
  for (const i of INSNS) t[i.op] = { name: i.name, fmt: i.fmt };
  return t;
})();

/** A decoded instruction. Reused: decode() overwrites it, so hot paths never allocate. */
export interface Decoded {
  op: Op;
  rd: number;
  rs1: number;
  rs2: number;
  /** Sign-extended immediate; shift amount for Ishamt; zimm (the rs1 field) for CSR ops. */
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

/** Rows by major opcode (bits 6:0), so a decode looks at a handful of rows. */
const BY_OPCODE: readonly (readonly Insn[])[] = (() => {
  const t: Insn[][] = Array.from({ length: 128 }, () => []);
  for (const i of INSNS) t[i.match & 0x7f]!.push(i);
  return t;
})();

/** The table row matching word `w`, or undefined (reserved encodings, compressed words). */
export function lookup(w: number): Insn | undefined {
  for (const i of BY_OPCODE[w & 0x7f]!) if (((w & i.mask) >>> 0) === i.match >>> 0) return i;
  return undefined;
}

/** Decode instruction word `w` into `d`. Reserved encodings decode to Op.Illegal. */
export function decode(w: number, d: Decoded): void {
  d.rd = (w >>> 7) & 31;
  d.rs1 = (w >>> 15) & 31;
  d.rs2 = (w >>> 20) & 31;
  d.imm = 0;
  d.csr = 0;
  const i = lookup(w);
  if (i === undefined) {
    d.op = Op.Illegal;
    return;
  }
  d.op = i.op;
  switch (i.fmt) {
    case 'I': case 'Iload': d.imm = immI(w); break;
    case 'Ishamt': d.imm = d.rs2; break;
    case 'S': d.imm = immS(w); break;
    case 'B': d.imm = immB(w); break;
    case 'U': d.imm = immU(w); break;
    case 'J': d.imm = immJ(w); break;
    case 'Csr': case 'Csri': d.csr = w >>> 20; d.imm = d.rs1; break;
    case 'R': case 'None': break;
  }
}

const hex = (v: number): string => '0x' + (v >>> 0).toString(16);

/** Human-readable form for fault messages and debugging. */
export function disasm(w: number): string {
  const d = newDecoded();
  decode(w, d);
  const row = INSN_BY_OP[d.op];
  if (row === undefined) return `illegal ${hex(w)}`;
  const r = (i: number): string => 'x' + i;
  const name = row.name;
  switch (row.fmt) {
    case 'R': return `${name} ${r(d.rd)}, ${r(d.rs1)}, ${r(d.rs2)}`;
    case 'I': case 'Ishamt': return `${name} ${r(d.rd)}, ${r(d.rs1)}, ${d.imm}`;
    case 'Iload': return `${name} ${r(d.rd)}, ${d.imm}(${r(d.rs1)})`;
    case 'S': return `${name} ${r(d.rs2)}, ${d.imm}(${r(d.rs1)})`;
    case 'B': return `${name} ${r(d.rs1)}, ${r(d.rs2)}, ${d.imm}`;
    case 'U': return `${name} ${r(d.rd)}, ${hex(d.imm >>> 12)}`;
    case 'J': return `${name} ${r(d.rd)}, ${d.imm}`;
    case 'Csr': return `${name} ${r(d.rd)}, ${hex(d.csr)}, ${r(d.rs1)}`;
    case 'Csri': return `${name} ${r(d.rd)}, ${hex(d.csr)}, ${d.imm}`;
    case 'None': return name;
  }
}
