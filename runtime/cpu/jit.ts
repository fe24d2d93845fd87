// Basic-block translation into JS functions (DESIGN §4). Speed trick only: the meaning of
// every instruction lives in interp.ts, and a block hands anything unusual back to it.
//
// Exactness rules a block keeps:
// - It runs only when its whole length fits in the remaining budget (checked by the caller);
//   a branch or jal back to its own start loops inside the function only while another full
//   pass still fits, so the count retired is exact.
// - It holds only instructions that cannot trap statically and touch no CSR: the first
//   csr/ecall/ebreak/mret/wfi/illegal word, or a branch/jal with a misaligned target, ends
//   the block before it.
// - A load/store whose address is not in RAM, or is misaligned, or a jalr to a misaligned
//   target, bails out *before* that instruction with the exact count retired so far; the
//   interpreter then performs it (MMIO sees an exact icount, traps an exact pc).
// - A store into a code granule ends the block right after the store; the caller drops the
//   granule's translations before running anything else.
//
// A block is a trace: it follows straight-line code, falls through conditional branches
// (taken = side exit), follows jal into its target, and after a `ret` whose link register
// still holds the return address of a call made earlier in the same trace, continues at that
// return address (checked at run time). So a block may cover any code granules; each granule
// keeps the ids of the blocks that read it.
import { CODE_SHIFT, type Bus, type CodeSink } from '../bus.js';
import { decode, newDecoded, Op, type Decoded } from './decode.js';
import { div, divu, mulh, mulhsu, mulhu, rem, remu } from './muldiv.js';

/** Block results besides the returned count. One per Jit, reused: no allocation per block. */
export class BlockExit {
  pc = 0;
  /** Why the block stopped early: 0 normal, BAIL or SMC (one field, so one test per block). */
  flag = 0;
  /** With SMC: the code granule written by the block's last store. */
  granule = 0;
}
/** The block stopped before an instruction the interpreter must do. */
const BAIL = 1;
/** The block's last store hit a code granule. */
const SMC = 2;

/** A translated block: runs from its start pc, retires at most `lim`, returns how many it retired. */
export type BlockFn = (s: BlockExit, lim: number) => number;

/** Longest block, in instructions (bounds stepping near a budget's end). */
export const MAX_BLOCK = 64;
/** A granule whose blocks were dropped this often is left to the interpreter (hot self-modifying or data-in-code). */
const MAX_DROPS = 64;

/** Translation state of one trace. */
interface Trace {
  start: number;
  /** pcs already in the trace: jumping to one ends it (no code duplication, no cycles). */
  visited: number[];
  /** Return addresses of calls (jal with a link) followed into, innermost last. */
  links: number[];
}

/** One instruction's JS, and the pc the trace continues at (-1: the code always leaves). */
interface Emitted {
  code: string;
  next: number;
}

/** Placeholder for the block length in emitted code. */
const LEN = '@LEN@';

type Factory = (...args: unknown[]) => BlockFn;

export class Jit implements CodeSink {
  /** Per RAM word: 0 = not translated, -1 = interpret, >0 = index into fns. */
  private readonly ids: Int32Array;
  /** Per RAM word: length in instructions of the block starting there. */
  private readonly lens: Uint8Array;
  private readonly drops: Uint8Array;
  /** Block functions by id. Ids are never reused, so a stale id in byGranule is harmless. */
  private readonly fns: (BlockFn | undefined)[] = [undefined];
  /** Start word of each block id. */
  private readonly starts: number[] = [0];
  /** Per code granule: ids of the blocks holding instructions from it. */
  private byGranule: (number[] | undefined)[] = [];
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
    const ids = this.ids, lens = this.lens, fns = this.fns, s = this.s, base = this.bus.ramBase, words = this.words;
    let pc = pc0;
    let total = 0;
    // Blocks only ever leave to aligned pcs (misaligned jumps bail first), so one check here does.
    if ((pc & 3) !== 0) {
      this.pc = pc;
      return 0;
    }
    for (;;) {
      const w = (pc - base) >>> 2;
      if (w >= words) break;
      let id = ids[w]!;
      if (id <= 0) {
        if (id < 0) break;
        id = this.translate(w);
        if (id < 0) break;
      }
      const left = budget - total;
      if (lens[w]! > left) break;
      total += fns[id]!(s, left);
      pc = s.pc;
      if (s.flag !== 0) {
        const f = s.flag;
        s.flag = 0;
        if (f === BAIL) break;
        // Through the bus's sink: the interpreter's decode cache holds the granule too.
        (this.bus.codeSink ?? this).dropGranule(s.granule);
      }
    }
    this.pc = pc;
    return total;
  }

  dropGranule(g: number): void {
    const ids = this.ids, lens = this.lens, fns = this.fns;
    let dropped = false;
    const list = this.byGranule[g];
    if (list !== undefined) {
      for (const id of list) {
        if (fns[id] === undefined) continue;
        fns[id] = undefined;
        const w = this.starts[id]!;
        if (ids[w] === id) {
          ids[w] = 0;
          lens[w] = 0;
        }
        dropped = true;
      }
      this.byGranule[g] = undefined;
    }
    // Words marked "interpret" in this granule may hold translatable code now.
    const per = 1 << (CODE_SHIFT - 2);
    for (let w = g * per; w < (g + 1) * per && w < this.words; w++) if (ids[w] === -1) ids[w] = 0;
    if (dropped && this.drops[g]! < 255) this.drops[g]!++;
    this.bus.code[g] = 0;
  }

  dropAll(): void {
    this.ids.fill(0);
    this.lens.fill(0);
    this.drops.fill(0);
    // Truncate in place: run() holds on to these arrays.
    this.fns.length = 1;
    this.starts.length = 1;
    this.byGranule = [];
  }

  /** Translate the trace starting at RAM word `w0`; returns its id, or -1 to interpret. */
  private translate(w0: number): number {
    const bus = this.bus, d = this.dec, cg = bus.code, base = bus.ramBase;
    const gshift = CODE_SHIFT - 2;
    const g0 = w0 >>> gshift;
    cg[g0] = 1;
    if (this.drops[g0]! >= MAX_DROPS) return (this.ids[w0] = -1);
    const t: Trace = { start: (base + w0 * 4) >>> 0, visited: [], links: [] };
    const out: string[] = [];
    const granules: number[] = [];
    let pc = t.start;
    let len = 0;
    let ended = false;
    while (len < MAX_BLOCK) {
      const w = (pc - base) >>> 2;
      if (w >= this.words || (len > 0 && (pc === t.start || t.visited.includes(pc)))) break;
      decode(bus.ram32[w]!, d);
      const r = this.emit(d, pc, len, t);
      if (r === undefined) break;
      t.visited.push(pc);
      if (!granules.includes(w >>> gshift)) granules.push(w >>> gshift);
      out.push(r.code);
      len++;
      if (r.next < 0) {
        ended = true;
        break;
      }
      pc = r.next;
    }
    if (len === 0) return (this.ids[w0] = -1);
    if (!ended) out.push(`s.pc = ${pc}; return n + ${len};`);
    // In a block that loops on itself, guest registers live in JS locals (r1..r31): loaded
    // on entry, and the ones the block assigns stored back before every return (every exit
    // is a `return n ...`). Every emitted expression is int32, so a local equals what the
    // Int32Array would hold. Other blocks run once per call, where the loads and stores
    // around them cost more than they save (measured on the bench guest), so their
    // registers stay in the Int32Array.
    let code = out.join('\n    ').replaceAll(LEN, String(len));
    if (!code.includes('continue;')) code = code.replace(/\br(\d+)\b/g, 'x[$1]');
    const used = [...new Set([...code.matchAll(/\br(\d+)\b/g)].map((m) => Number(m[1])))].sort((p, q) => p - q);
    const written = [...new Set([...code.matchAll(/\br(\d+) = /g)].map((m) => Number(m[1])))].sort((p, q) => p - q);
    const load = used.length > 0 ? `let ${used.map((r) => `r${r} = x[${r}]`).join(', ')};` : '';
    const store = written.map((r) => `x[${r}] = r${r}; `).join('');
    code = code.replaceAll('return n', `${store}return n`);
    const body = `return function block_${t.start.toString(16)}(s, lim) {\n  let n = 0, o = 0, t = 0;\n  ${load}\n  for (;;) {\n    ${code}\n  }\n};`;
    const factory = new Function(
      'x', 'm8', 's8', 'm16', 's16', 'm32', 'dirty', 'cg', 'mulh', 'mulhsu', 'mulhu', 'div', 'divu', 'rem', 'remu',
      body,
    ) as Factory;
    const id = this.fns.length;
    this.fns.push(factory(...this.env));
    this.starts.push(w0);
    for (const g of granules) {
      cg[g] = 1;
      (this.byGranule[g] ??= []).push(id);
    }
    this.ids[w0] = id;
    this.lens[w0] = len;
    this.translated++;
    return id;
  }

  /** JS for one instruction at index k of the block, or undefined if the block must end before it. */
  private emit(d: Decoded, pc: number, k: number, tr: Trace): Emitted | undefined {
    const start = tr.start;
    const { rd, rs1, rs2, imm } = d;
    const a = rs1 === 0 ? '0' : `r${rs1}`, b = rs2 === 0 ? '0' : `r${rs2}`;
    const set = (e: string): string => (rd === 0 ? '' : `r${rd} = ${e};`);
    const bail = `{ s.pc = ${pc}; s.flag = ${BAIL}; return n + ${k}; }`;
    const L = k + 1;
    const next = (pc + 4) >>> 0;
    // A jump back to the block's start loops inside the function if a whole further pass
    // still fits in the budget (LEN is patched in once the block's length is known).
    const leave = (target: number): string =>
      (target === start ? `if (n + ${L} + ${LEN} <= lim) { n += ${L}; continue; } ` : '') + `s.pc = ${target}; return n + ${L};`;
    const ramLimit = (size: number): number => this.bus.ramBytes - size;
    const addr = `o = (${a} + ${imm - this.bus.ramBase}) >>> 0;`;
    const op = (code: string): Emitted => ({ code, next });
    const end = (code: string): Emitted => ({ code, next: -1 });
    /** Continue the trace at `target` unless that would repeat code already in it. */
    const follows = (target: number): boolean => target !== start && !tr.visited.includes(target) && target !== pc;
    const branch = (cond: string): Emitted | undefined => {
      const t = (pc + imm) >>> 0;
      if ((t & 3) !== 0) return undefined;
      // Not taken: fall through within the block (a side exit, so loops with ifs stay one block).
      return op(`if (${cond}) { ${leave(t)} }`);
    };
    const load = (size: number, view: string, shift: number): Emitted =>
      op(`${addr} if (o > ${ramLimit(size)}${size > 1 ? ` || (o & ${size - 1}) !== 0` : ''}) ${bail} ${set(`${view}[o${shift ? ` >>> ${shift}` : ''}]`)}`);
    const store = (size: number, view: string, shift: number): Emitted =>
      op(
        `${addr} if (o > ${ramLimit(size)}${size > 1 ? ` || (o & ${size - 1}) !== 0` : ''}) ${bail} ` +
          `${view}[o${shift ? ` >>> ${shift}` : ''}] = ${b}; dirty[o >>> 12] = 1; ` +
          `if (cg[o >>> ${CODE_SHIFT}] !== 0) { s.pc = ${next}; s.flag = ${SMC}; s.granule = o >>> ${CODE_SHIFT}; return n + ${L}; }`,
      );
    switch (d.op) {
      case Op.Lui: return op(set(`${imm | 0}`));
      case Op.Auipc: return op(set(`${(pc + imm) | 0}`));
      case Op.Jal: {
        const t = (pc + imm) >>> 0;
        if ((t & 3) !== 0) return undefined;
        if (!follows(t) || !this.bus.inRam(t, 4)) return end(`${set(`${next | 0}`)} ${leave(t)}`);
        if (rd !== 0) tr.links.push(next);
        return { code: set(`${next | 0}`), next: t };
      }
      case Op.Jalr: {
        const head = `t = (${a} + ${imm}) & -2; if ((t & 2) !== 0) ${bail} ${set(`${next | 0}`)}`;
        const ret = tr.links.length > 0 ? tr.links[tr.links.length - 1]! : -1;
        // A return to the call made earlier in this trace: keep going if the link still matches.
        if (rd === 0 && ret >= 0 && follows(ret)) {
          tr.links.pop();
          return { code: `${head} if (t !== ${ret | 0}) { s.pc = t >>> 0; return n + ${L}; }`, next: ret };
        }
        return end(`${head} s.pc = t >>> 0; return n + ${L};`);
      }
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
