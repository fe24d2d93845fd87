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
import { decode, newDecoded } from './decode.js';
import { INSN_BY_OP, type Insn } from './insn.js';
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

/** One instruction of a trace, as found by plan(). */
interface Step {
  w: number;
  pc: number;
  row: Insn;
  rd: number;
  rs1: number;
  rs2: number;
  imm: number;
  /** branch, jal: the target; jalr: the return address the trace continues at; else -1. */
  target: number;
  /** jal, jalr: the trace continues at the target (else the instruction leaves it). */
  follow: boolean;
}

/** How an emitted trace names guest registers, and which it reads and writes. */
interface Regs {
  locals: boolean;
  used: Uint8Array;
  written: Uint8Array;
}

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
   * The last run() stopped because the next block did not fit in its budget (the caller then
   * steps the interpreter up to the budget, or, with a soft budget, ends the batch here).
   */
  short = false;

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
    this.short = false;
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
      if (lens[w]! > left) {
        this.short = true;
        break;
      }
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
    // Only granules marked in bus.code can hold a translated or interpret-marked word (as in
    // DecodeCache.dropAll). Clearing all of ids and lens wrote 20 MiB for a 16 MiB guest, most
    // of it never touched before: a page fault per 4 KiB, 170-230 ms of each `replay --until`.
    const code = this.bus.code;
    const per = 1 << (CODE_SHIFT - 2);
    for (let g = 0; g < code.length; g++) {
      if (code[g] === 0) continue;
      this.ids.fill(0, g * per, (g + 1) * per);
      this.lens.fill(0, g * per, (g + 1) * per);
    }
    this.drops.fill(0);
    // Truncate in place: run() holds on to these arrays.
    this.fns.length = 1;
    this.starts.length = 1;
    this.byGranule = [];
  }

  /** Translate the trace starting at RAM word `w0`; returns its id, or -1 to interpret. */
  private translate(w0: number): number {
    const bus = this.bus, cg = bus.code;
    const gshift = CODE_SHIFT - 2;
    const g0 = w0 >>> gshift;
    cg[g0] = 1;
    if (this.drops[g0]! >= MAX_DROPS) return (this.ids[w0] = -1);
    const steps: Step[] = [];
    const endPc = this.plan(w0, steps);
    const len = steps.length;
    if (len === 0) return (this.ids[w0] = -1);
    const start = steps[0]!.pc;
    // In a trace that loops on itself, guest registers live in JS locals (r1..r31): loaded
    // on entry, and the ones it assigns stored back once on the way out (every exit breaks
    // out of the loop). Every emitted expression is int32, so a local equals what the
    // Int32Array would hold. Other traces run once per call, where the loads and stores
    // around them cost more than they save (measured on the bench guest), so their
    // registers stay in the Int32Array.
    const loops = steps.some((st) => st.target === start && st.row.jit !== 'jalr' && !st.follow);
    const regs: Regs = { locals: loops, used: new Uint8Array(32), written: new Uint8Array(32) };
    const out: string[] = [];
    const granules: number[] = [];
    steps.forEach((st, k) => {
      const g = st.w >>> gshift;
      if (!granules.includes(g)) granules.push(g);
      out.push(this.emit(st, k, len, start, regs));
    });
    if (endPc >= 0) out.push(`s.pc = ${endPc}; n += ${len}; break L;`);
    let load = '', store = '';
    if (loops) {
      const live: number[] = [];
      for (let r = 1; r < 32; r++) if (regs.used[r] !== 0 || regs.written[r] !== 0) live.push(r);
      if (live.length > 0) load = `let ${live.map((r) => `r${r} = x[${r}]`).join(', ')};`;
      for (let r = 1; r < 32; r++) if (regs.written[r] !== 0) store += `x[${r}] = r${r}; `;
    }
    const body =
      `return function block_${start.toString(16)}(s, lim) {\n  let n = 0, o = 0, t = 0;\n  ${load}\n` +
      `  L: for (;;) {\n    ${out.join('\n    ')}\n  }\n  ${store}\n  return n;\n};`;
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

  /**
   * Find the trace from RAM word `w0` into `steps`: straight-line code, through conditional
   * branches (taken = side exit), into jal targets, and after a `ret` whose link register
   * still holds the return address of a call made earlier in the trace, on at that return
   * address (checked at run time). It ends before a row the interpreter must do, before a
   * jump to a misaligned target, at a pc already in it, or after MAX_BLOCK instructions.
   * Returns the pc it runs off at, or -1 if its last instruction always leaves.
   */
  private plan(w0: number, steps: Step[]): number {
    const bus = this.bus, d = this.dec, base = bus.ramBase;
    const start = (base + w0 * 4) >>> 0;
    const visited: number[] = [];
    /** Return addresses of calls (jal with a link) followed into, innermost last. */
    const links: number[] = [];
    let pc = start;
    while (steps.length < MAX_BLOCK) {
      const w = (pc - base) >>> 2;
      if (w >= this.words || (steps.length > 0 && (pc === start || visited.includes(pc)))) break;
      decode(bus.ram32[w]!, d);
      const row = INSN_BY_OP[d.op];
      if (row === undefined || row.jit === 'interp') break;
      /** Continue the trace at `t` unless that would repeat code already in it. */
      const follows = (t: number): boolean => t !== start && !visited.includes(t) && t !== pc;
      const st: Step = { w, pc, row, rd: d.rd, rs1: d.rs1, rs2: d.rs2, imm: d.imm, target: -1, follow: false };
      let next = (pc + 4) >>> 0;
      let leaves = false;
      if (row.jit === 'branch' || row.jit === 'jal') {
        st.target = (pc + d.imm) >>> 0;
        // §2.5: the jump to a misaligned target traps: the interpreter's job.
        if ((st.target & 3) !== 0) break;
        if (row.jit === 'jal') {
          if (follows(st.target) && bus.inRam(st.target, 4)) {
            if (d.rd !== 0) links.push(next);
            st.follow = true;
            next = st.target;
          } else leaves = true;
        }
      } else if (row.jit === 'jalr') {
        const ret = links.length > 0 ? links[links.length - 1]! : -1;
        if (d.rd === 0 && ret >= 0 && follows(ret)) {
          links.pop();
          st.target = ret;
          st.follow = true;
          next = ret;
        } else leaves = true;
      }
      visited.push(pc);
      steps.push(st);
      if (leaves) return -1;
      pc = next;
    }
    return pc;
  }

  /** JS for step `st`, at index k of a trace of `len` starting at pc `start`. Every exit sets s.pc and n, then breaks out of L. */
  private emit(st: Step, k: number, len: number, start: number, regs: Regs): string {
    const { row, rd, rs1, rs2, imm, pc } = st;
    const base = this.bus.ramBase;
    const reg = (r: number): string => (regs.locals ? `r${r}` : `x[${r}]`);
    const src = (r: number): string => {
      if (r === 0) return '0';
      regs.used[r] = 1;
      return reg(r);
    };
    const set = (e: string): string => {
      if (rd === 0) return '';
      regs.written[rd] = 1;
      return `${reg(rd)} = ${e};`;
    };
    const a = src(rs1);
    const b = row.jit === 'store' || row.jit === 'branch' || row.fmt === 'R' ? src(rs2) : '0';
    const L = k + 1;
    const next = (pc + 4) >>> 0;
    const bail = `{ s.pc = ${pc}; s.flag = ${BAIL}; n += ${k}; break L; }`;
    // A jump back to the trace's start loops inside the function if a whole further pass
    // still fits in the budget.
    const leave = (target: number): string =>
      (target === start ? `if (n + ${L + len} <= lim) { n += ${L}; continue L; } ` : '') + `s.pc = ${target}; n += ${L}; break L;`;
    const check = (size: number): string =>
      `o = (${a} + ${imm - base}) >>> 0; if (o > ${this.bus.ramBytes - size}${size > 1 ? ` || (o & ${size - 1}) !== 0` : ''}) ${bail}`;
    const at = (size: number): string => (size === 4 ? 'o >>> 2' : size === 2 ? 'o >>> 1' : 'o');
    switch (row.jit) {
      case 'alu':
        return set(row.expr!(a, b, imm, pc));
      case 'fence':
        return '';
      case 'load': {
        const size = row.size!;
        const view = size === 4 ? 'm32' : size === 2 ? (row.signed ? 's16' : 'm16') : row.signed ? 's8' : 'm8';
        return `${check(size)} ${set(`${view}[${at(size)}]`)}`;
      }
      case 'store': {
        const size = row.size!;
        const view = size === 4 ? 'm32' : size === 2 ? 'm16' : 'm8';
        return `${check(size)} ${view}[${at(size)}] = ${b}; dirty[o >>> 12] = 1; ` +
          `if (cg[o >>> ${CODE_SHIFT}] !== 0) { s.pc = ${next}; s.flag = ${SMC}; s.granule = o >>> ${CODE_SHIFT}; n += ${L}; break L; }`;
      }
      case 'branch':
        // Not taken: fall through within the trace (a side exit, so loops with ifs stay one trace).
        return `if (${row.expr!(a, b, imm, pc)}) { ${leave(st.target)} }`;
      case 'jal':
        return st.follow ? set(`${next | 0}`) : `${set(`${next | 0}`)} ${leave(st.target)}`;
      case 'jalr': {
        const head = `t = (${a} + ${imm}) & -2; if ((t & 2) !== 0) ${bail} ${set(`${next | 0}`)}`;
        // A return to the call made earlier in this trace: keep going if the link still matches.
        if (st.follow) return `${head} if (t !== ${st.target | 0}) { s.pc = t >>> 0; n += ${L}; break L; }`;
        return `${head} s.pc = t >>> 0; n += ${L}; break L;`;
      }
      case 'interp':
        throw new Error(`jit: ${row.name} is the interpreter's`);
    }
  }
}
