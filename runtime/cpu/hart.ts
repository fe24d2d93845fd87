// One RV32IM + Zicsr hart in machine mode, run in exact batches (DESIGN §4: "a block runs
// only when its whole length fits in the remaining budget").
import { Exit, type GuestFault, type ValueKind } from '../types.js';
import type { Bus } from '../bus.js';
import { Csrs, MIP_MASK } from './csr.js';
import { newDecoded } from './decode.js';
import { interpret, STEP_OK } from './interp.js';
import { INTERRUPT, enterTrap, pendingInterrupt } from './trap.js';
import { Jit } from './jit.js';
import { DecodeCache } from './decode-cache.js';

export { MIP_MSIP, MIP_MTIP, MIP_MEIP } from './csr.js';

// NOTE: a module constant, not `Exit.Budget`: V8 compiles run()'s loop on-stack before the
// return after it ever executed, and a property load there without type feedback made it
// deoptimize at the end of every batch (measured: 300 deopts in 300 batches).
const BUDGET: Exit = Exit.Budget;

export interface HartHost {
  /** Non-deterministic values for the time/timeh and seed CSRs: forwards to the machine's current Env. */
  value(kind: ValueKind, icount: number): number;
}

export interface HartOptions {
  /**
   * Translate code into JS functions (default true, unless the environment variable
   * FTVM_JIT is `0`). false = reference interpreter only.
   */
  jit?: boolean;
}

/** JSON-able hart state for snapshots (DESIGN §3, re-protection). */
export interface HartState {
  x: number[];
  pc: number;
  icount: number;
  halted: boolean;
  haltCode: number | null;
  csr: {
    mstatus: number; mie: number; mip: number; mtvec: number; mscratch: number; mepc: number;
    mcause: number; mtval: number; cycleOffLo: number; cycleOffHi: number; instretOffLo: number; instretOffHi: number;
  };
}

export class Hart {
  readonly x = new Int32Array(32);
  /** Unsigned, always 4-byte aligned except transiently after reset(). */
  pc = 0;
  /** Instructions retired (= minstret minus its write offset): the replay clock. */
  icount = 0;
  haltCode: number | undefined;
  fault: GuestFault | undefined;
  readonly csr = new Csrs();
  /** Scratch decode record for the interpreter. */
  readonly dec = newDecoded();
  /** Pre-decoded instructions for the interpreter. */
  readonly dcache: DecodeCache;
  exitRequested = false;
  haltRequested = false;
  accessFault = false;
  private readonly jit: Jit | undefined;

  constructor(
    readonly bus: Bus,
    readonly host: HartHost,
    opts: HartOptions = {},
  ) {
    this.dcache = new DecodeCache(bus);
    const useJit = opts.jit ?? process.env['FTVM_JIT'] !== '0';
    const jit = (this.jit = useJit ? new Jit(bus, this.x) : undefined);
    const dcache = this.dcache;
    // Both caches hold code from RAM; a write into a granule with code drops it from both.
    bus.codeSink = {
      dropGranule(g: number): void {
        dcache.dropGranule(g);
        if (jit !== undefined) jit.dropGranule(g);
        bus.code[g] = 0;
      },
      dropAll(): void {
        dcache.dropAll();
        if (jit !== undefined) jit.dropAll();
      },
    };
  }

  get mip(): number {
    return this.csr.mip;
  }
  get mie(): number {
    return this.csr.mie;
  }

  /** Raise/lower bits of mip (MSIP/MTIP from the CLINT, MEIP from the PLIC). Takes effect at the next instruction boundary. */
  setPending(mask: number, level: boolean): void {
    if (level) this.csr.mip |= mask & MIP_MASK;
    else this.csr.mip &= ~mask;
  }

  /** A device asks, during an MMIO access, to end the batch after the current instruction. */
  requestExit(): void {
    this.exitRequested = true;
  }

  /** sifive_test: stop the machine once the current instruction retires. */
  halt(code: number): void {
    this.haltCode = code;
    this.haltRequested = true;
  }

  reset(pc: number): void {
    this.x.fill(0);
    this.pc = pc >>> 0;
    this.icount = 0;
    this.haltCode = undefined;
    this.fault = undefined;
    this.exitRequested = false;
    this.haltRequested = false;
    const c = this.csr;
    c.mstatus = c.mie = c.mip = c.mtvec = c.mscratch = c.mepc = c.mcause = c.mtval = 0;
    c.cycleOffLo = c.cycleOffHi = c.instretOffLo = c.instretOffHi = 0;
  }

  /**
   * Run at most `budget` instructions; returns why it stopped. Exactly `budget` retire on
   * Exit.Budget.
   *
   * INVARIANT (interrupts): a pending-and-enabled interrupt is taken just before the next
   * instruction executes, i.e. at the top of this loop. That check is exact even though
   * translated blocks run many instructions between checks, because (mip & mie) and
   * mstatus.MIE change only through (1) setPending, called either between batches or by a
   * device inside an MMIO access, and MMIO always runs in the interpreter; (2) csr writes,
   * mret and trap entry, which also run only there. The interpreter returns here after each
   * of these, and a translated block contains none of them, so the interrupt state seen at
   * the start of an interpreter stretch or a block holds until its end. A batch that ends with budget 0
   * leaves a pending interrupt untaken; the next run() takes it before its first
   * instruction, so the state at a given icount does not depend on how batches were split.
   *
   * `soft`: the budget is a slice of time, not a count (a replay slice that only bounds how
   * long the backup goes without reading its log port). Once something ran, the batch may
   * end with Exit.Budget before the budget is spent, where the next translated block does not
   * fit, instead of stepping the interpreter through the rest (up to a block's length per
   * batch, with a JIT call per instruction). Never pass it for a budget that is an exact
   * target (an env's next input, `cpu.runUntil`, a test's count).
   */
  run(budget: number, soft = false): Exit {
    // A self-looping block spins until the budget is spent: an unbounded one would never return.
    if (!Number.isSafeInteger(budget) || budget < 0) throw new RangeError(`run: budget must be a safe integer >= 0, got ${budget}`);
    if (this.haltCode !== undefined) return Exit.Halt;
    if (this.fault !== undefined) return Exit.Fault;
    this.exitRequested = false;
    this.haltRequested = false;
    const jit = this.jit;
    const c = this.csr;
    let left = budget;
    while (left > 0) {
      if ((c.mip & c.mie) !== 0) {
        const irq = pendingInterrupt(c);
        if (irq >= 0 && !enterTrap(this, INTERRUPT | irq, 0, this.pc, 0)) return Exit.Fault;
      }
      if (jit !== undefined) {
        const n = jit.run(this.pc, left);
        this.pc = jit.pc;
        if (n > 0) {
          this.icount += n;
          left -= n;
          if (soft && jit.short) return BUDGET;
          continue;
        }
        if (soft && jit.short && left < budget) return BUDGET;
      }
      // The interpreter alone runs the whole budget; behind the JIT it does the one
      // instruction the JIT handed back, then the JIT goes on.
      const before = this.icount;
      const r = interpret(this, jit === undefined ? left : 1);
      left -= this.icount - before;
      if (r !== STEP_OK) return r as Exit;
    }
    return BUDGET;
  }

  save(): HartState {
    const c = this.csr;
    return {
      x: Array.from(this.x),
      pc: this.pc,
      icount: this.icount,
      halted: this.haltCode !== undefined,
      haltCode: this.haltCode ?? null,
      csr: {
        mstatus: c.mstatus, mie: c.mie, mip: c.mip, mtvec: c.mtvec, mscratch: c.mscratch, mepc: c.mepc,
        mcause: c.mcause, mtval: c.mtval, cycleOffLo: c.cycleOffLo, cycleOffHi: c.cycleOffHi,
        instretOffLo: c.instretOffLo, instretOffHi: c.instretOffHi,
      },
    };
  }

  load(s: HartState): void {
    if (s.x.length !== 32) throw new Error(`hart state: expected 32 registers, got ${s.x.length}`);
    this.x.set(s.x);
    this.x[0] = 0;
    this.pc = s.pc >>> 0;
    this.icount = s.icount;
    this.haltCode = s.halted ? (s.haltCode ?? 0) : undefined;
    this.fault = undefined;
    this.exitRequested = false;
    this.haltRequested = false;
    Object.assign(this.csr, s.csr);
  }
}
