// Basic-block translation into JS functions (DESIGN §4). Speed trick only: the meaning of
// every instruction lives in interp.ts, and a block hands anything unusual back to it.
//
// Exactness rules a block keeps:
// - It runs only when its whole length fits in the remaining budget (checked by the caller);
//   a block ending in a branch back to its own start loops internally only while another
//   full pass still fits, so the count retired is exact.
// - It holds only instructions that cannot trap statically and touch no CSR: the first
//   csr/ecall/ebreak/mret/wfi/illegal word, or a branch/jal with a misaligned target, ends
//   the block before it.
// - A load/store whose address is not in RAM, or is misaligned, or a jalr to a misaligned
//   target, bails out *before* that instruction with the exact count retired so far; the
//   interpreter then performs it (MMIO sees an exact icount, traps an exact pc).
// - A store into a code granule ends the block right after the store; the caller drops the
//   granule's translations before running anything else.
import { CODE_SHIFT, type Bus, type CodeSink } from '../bus.js';
import { decode, newDecoded, Op } from './decode.js';
import { div, divu, mulh, mulhsu, mulhu, rem, remu } from './muldiv.js';

/** Block results besides the returned count. One per Jit, reused: no allocation per block. */
export class BlockExit {
  pc = 0;
  /** Code granule written by the block's last store, or -1. */
  smc = -1;
  /** 1 if the block stopped before an instruction the interpreter must do. */
  bail = 0;
}

/** A translated block: runs from its start pc, returns the number of instructions retired. */
export type BlockFn = (s: BlockExit, rem: number) => number;

/** Longest block. Keeps every block within two code granules (see dropGranule). */
export const MAX_BLOCK = 1 << (CODE_SHIFT - 2);
/** A granule whose blocks were dropped this often is left to the interpreter (hot self-modifying or data-in-code). */
const MAX_DROPS = 64;

/** Placeholder for the block length in emitted code. */
const LEN = '@LEN@';

type Factory = (...args: unknown[]) => BlockFn;

export class Jit implements CodeSink {
  /** Per RAM word: 0 = not translated, -1 = interpret, >0 = index into fns. */
  private readonly ids: Int32Array;
  /** Per RAM word: length in instructions of the block starting there. */
  private readonly lens: Uint8Array;
  private readonly drops: Uint8Array;
  private fns: (BlockFn | undefined)[] = [undefined];
  private free: number[] = [];
  private readonly s = new BlockExit();
  private readonly dec = newDecoded();
  private readonly words: number;
  private readonly env: unknown[];
  /** Blocks translated so far (for tests and benchmarks). */
  translated = 0;

  constructor(
    private readonly bus: Bus,
    x: Int32Array,
  ) {
    this.words = bus.ramBytes >>> 2;
    this.ids = new Int32Array(this.words);
    this.lens = new Uint8Array(this.words);
    this.drops = new Uint8Array(bus.code.length);
    const buf = bus.ram.buffer;
    this.env = [
      x, bus.ram, new Int8Array(buf), new Uint16Array(buf), new Int16Array(buf), bus.ram32,
      bus.dirty, bus.code, mulh, mulhsu, mulhu, div, divu, rem, remu,
    ];
    bus.codeSink = this;
  }

  /** pc after the last run(). */
  pc = 0;

  /**
   * Run translated blocks from `pc0` while they fit in `budget`; returns the number retired
   * and leaves the next pc in this.pc. Returns when the next instruction needs the
   * interpreter. Interrupts need no check between blocks: see the invariant on Hart.run.
   * NOTE: takes and returns plain numbers rather than writing the hart's fields: V8 kept
   * deoptimizing the loop's exit (the OSR code had no feedback for those stores).
   */
  run(pc0: number, budget: number): number {
    const ids = this.ids, lens = this.lens, s = this.s, base = this.bus.ramBase, words = this.words;
    let pc = pc0;
    let total = 0;
    for (;;) {
      const w = (pc - base) >>> 2;
      if (w >= words || (pc & 3) !== 0) break;
      let id = ids[w]!;
      if (id === 0) id = this.translate(w);
      if (id < 0 || lens[w]! > budget - total) break;
      total += this.fns[id]!(s, budget - total);
      pc = s.pc;
      if (s.smc >= 0) {
        this.dropGranule(s.smc);
        s.smc = -1;
      }
      if (s.bail !== 0) {
        s.bail = 0;
        break;
      }
    }
    this.pc = pc;
    return total;
  }

  dropGranule(g: number): void {
    const ids = this.ids, lens = this.lens;
    // A block starts in g-1 or g if it covers g: blocks are at most one granule long.
    const per = 1 << (CODE_SHIFT - 2);
    const from = Math.max(0, (g - 1) * per), to = Math.min(this.words, (g + 1) * per);
    let dropped = false;
    for (let w = from; w < to; w++) {
      const id = ids[w]!;
      if (id === 0) continue;
      if (id > 0) {
        this.fns[id] = undefined;
        this.free.push(id);
        dropped = true;
      }
      ids[w] = 0;
      lens[w] = 0;
    }
    if (dropped && this.drops[g]! < 255) this.drops[g]!++;
    this.bus.code[g] = 0;
  }

  dropAll(): void {
    this.ids.fill(0);
    this.lens.fill(0);
    this.drops.fill(0);
    this.fns = [undefined];
    this.free = [];
  }

  /** Translate the block starting at RAM word `w0`; returns its id, or -1 to interpret. */
  private translate(w0: number): number {
    const bus = this.bus, d = this.dec, cg = bus.code;
    const g0 = w0 >>> (CODE_SHIFT - 2);
    cg[g0] = 1;
    if (this.drops[g0]! >= MAX_DROPS) return (this.ids[w0] = -1);
    const base = bus.ramBase;
    const start = (base + w0 * 4) >>> 0;
    const out: string[] = [];
    let len = 0;
    let ended = false;
    for (let w = w0; w < this.words && len < MAX_BLOCK && !ended; w++) {
      decode(bus.ram32[w]!, d);
      const pc = (base + w * 4) >>> 0;
      const src = this.emit(d, pc, len, start);
      if (src === undefined) break;
      out.push(src.code);
      ended = src.ends;
      len++;
    }
    if (len === 0) return (this.ids[w0] = -1);
    if (!ended) out.push(`s.pc = ${(start + 4 * len) >>> 0}; return n + ${len};`);
    const code = out.join('\n    ').replaceAll(LEN, String(len));
    for (let g = g0; g <= (w0 + len - 1) >>> (CODE_SHIFT - 2); g++) cg[g] = 1;
    const body = `return function block_${start.toString(16)}(s, lim) {\n  let n = 0, o = 0, t = 0;\n  for (;;) {\n    ${code}\n  }\n};`;
    const factory = new Function(
      'x', 'm8', 's8', 'm16', 's16', 'm32', 'dirty', 'cg', 'mulh', 'mulhsu', 'mulhu', 'div', 'divu', 'rem', 'remu',
      body,
    ) as Factory;
    const fn = factory(...this.env);
    const id = this.free.length > 0 ? this.free.pop()! : this.fns.length;
    this.fns[id] = fn;
    this.ids[w0] = id;
    this.lens[w0] = len;
    this.translated++;
    return id;
  }

  /** JS for one instruction at index k of the block, or undefined if the block must end before it. */
  private emit(d: ReturnType<typeof newDecoded>, pc: number, k: number, start: number): { code: string; ends: boolean } | undefined {
    const { rd, rs1, rs2, imm } = d;
    const a = `x[${rs1}]`, b = `x[${rs2}]`;
    const set = (e: string): string => (rd === 0 ? '' : `x[${rd}] = ${e};`);
    const bail = `{ s.pc = ${pc}; s.bail = 1; return n + ${k}; }`;
    const L = k + 1;
    const next = (pc + 4) >>> 0;
    // A jump back to the block's start loops inside the function if a whole further pass
    // still fits in the budget (LEN is patched in once the block's length is known).
    const leave = (target: number): string =>
      (target === start ? `if (n + ${L} + ${LEN} <= lim) { n += ${L}; continue; } ` : '') + `s.pc = ${target}; return n + ${L};`;
    const ramLimit = (size: number): number => this.bus.ramBytes - size;
    const addr = `o = (${a} + ${imm - this.bus.ramBase}) >>> 0;`;
    const op = (code: string): { code: string; ends: boolean } => ({ code, ends: false });
    const end = (code: string): { code: string; ends: boolean } => ({ code, ends: true });
    const branch = (cond: string): { code: string; ends: boolean } | undefined => {
      const t = (pc + imm) >>> 0;
      if ((t & 3) !== 0) return undefined;
      // Not taken: fall through within the block (a side exit, so loops with ifs stay one block).
      return op(`if (${cond}) { ${leave(t)} }`);
    };
    const load = (size: number, view: string, shift: number): { code: string; ends: boolean } =>
      op(`${addr} if (o > ${ramLimit(size)}${size > 1 ? ` || (o & ${size - 1}) !== 0` : ''}) ${bail} ${set(`${view}[o${shift ? ` >>> ${shift}` : ''}]`)}`);
    const store = (size: number, view: string, shift: number): { code: string; ends: boolean } =>
      op(
        `${addr} if (o > ${ramLimit(size)}${size > 1 ? ` || (o & ${size - 1}) !== 0` : ''}) ${bail} ` +
          `${view}[o${shift ? ` >>> ${shift}` : ''}] = ${b}; dirty[o >>> 12] = 1; ` +
          `if (cg[o >>> ${CODE_SHIFT}] !== 0) { s.pc = ${next}; s.smc = o >>> ${CODE_SHIFT}; return n + ${L}; }`,
      );
    switch (d.op) {
      case Op.Lui: return op(set(`${imm | 0}`));
      case Op.Auipc: return op(set(`${(pc + imm) | 0}`));
      case Op.Jal: {
        const t = (pc + imm) >>> 0;
        if ((t & 3) !== 0) return undefined;
        return end(`${set(`${next | 0}`)} ${leave(t)}`);
      }
      case Op.Jalr:
        return end(`t = (${a} + ${imm}) & -2; if ((t & 2) !== 0) ${bail} ${set(`${next | 0}`)} s.pc = t >>> 0; return n + ${L};`);
      case Op.Beq: return branch(`${a} === ${b}`);
      case Op.Bne: return branch(`${a} !== ${b}`);
      case Op.Blt: return branch(`${a} < ${b}`);
      case Op.Bge: return branch(`${a} >= ${b}`);
      case Op.Bltu: return branch(`(${a} >>> 0) < (${b} >>> 0)`);
      case Op.Bgeu: return branch(`(${a} >>> 0) >= (${b} >>> 0)`);
      case Op.Lb: return load(1, 's8', 0);
      case Op.Lbu: return load(1, 'm8', 0);
      case Op.Lh: return load(2, 's16', 1);
      case Op.Lhu: return load(2, 'm16', 1);
      case Op.Lw: return load(4, 'm32', 2);
      case Op.Sb: return store(1, 'm8', 0);
      case Op.Sh: return store(2, 'm16', 1);
      case Op.Sw: return store(4, 'm32', 2);
      case Op.Addi: return op(set(`(${a} + ${imm}) | 0`));
      case Op.Slti: return op(set(`${a} < ${imm} ? 1 : 0`));
      case Op.Sltiu: return op(set(`(${a} >>> 0) < ${imm >>> 0} ? 1 : 0`));
      case Op.Xori: return op(set(`${a} ^ ${imm}`));
      case Op.Ori: return op(set(`${a} | ${imm}`));
      case Op.Andi: return op(set(`${a} & ${imm}`));
      case Op.Slli: return op(set(`${a} << ${imm}`));
      case Op.Srli: return op(set(`(${a} >>> ${imm}) | 0`));
      case Op.Srai: return op(set(`${a} >> ${imm}`));
      case Op.Add: return op(set(`(${a} + ${b}) | 0`));
      case Op.Sub: return op(set(`(${a} - ${b}) | 0`));
      case Op.Sll: return op(set(`${a} << (${b} & 31)`));
      case Op.Slt: return op(set(`${a} < ${b} ? 1 : 0`));
      case Op.Sltu: return op(set(`(${a} >>> 0) < (${b} >>> 0) ? 1 : 0`));
      case Op.Xor: return op(set(`${a} ^ ${b}`));
      case Op.Srl: return op(set(`(${a} >>> (${b} & 31)) | 0`));
      case Op.Sra: return op(set(`${a} >> (${b} & 31)`));
      case Op.Or: return op(set(`${a} | ${b}`));
      case Op.And: return op(set(`${a} & ${b}`));
      case Op.Mul: return op(set(`Math.imul(${a}, ${b})`));
      case Op.Mulh: return op(set(`mulh(${a}, ${b})`));
      case Op.Mulhsu: return op(set(`mulhsu(${a}, ${b})`));
      case Op.Mulhu: return op(set(`mulhu(${a}, ${b})`));
      case Op.Div: return op(set(`div(${a}, ${b})`));
      case Op.Divu: return op(set(`divu(${a}, ${b})`));
      case Op.Rem: return op(set(`rem(${a}, ${b})`));
      case Op.Remu: return op(set(`remu(${a}, ${b})`));
      case Op.Fence: case Op.FenceI: return op('');
      default: return undefined; // csr*, ecall, ebreak, mret, wfi, illegal: the interpreter's
    }
  }
}
