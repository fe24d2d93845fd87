// Interpreter MIPS (DESIGN §6): a loop-heavy RV32IM kernel run in exact batches, as the
// runner does, by the reference interpreter and by the block JIT.
// Run: npx tsc --outDir /tmp/ftvm-bench --module nodenext --moduleResolution nodenext \
//        --target es2022 --skipLibCheck bench/cpu.ts && node /tmp/ftvm-bench/bench/cpu.js
import { Exit } from '../runtime/types.js';
import * as A from '../test/cpu-asm.js';
import { RAM, rig } from '../test/cpu-asm.js';

const DATA = RAM + 0x10000;

/** Nested loops over a 1 KiB array: load, mul, add, store, branch (9 instructions inside). */
const kernel = [
  ...A.li(1, DATA), ...A.li(5, 0x7fffffff), A.addi(7, 0, 1),
  // outer:
  A.addi(2, 0, 0), A.addi(3, 0, 256),
  // inner:
  A.slli(4, 2, 2), A.add(4, 4, 1), A.lw(6, 4, 0), A.mul(6, 6, 2), A.add(6, 6, 7), A.sw(6, 4, 0),
  A.addi(2, 2, 1), A.add(7, 7, 6), A.bne(2, 3, -32),
  A.addi(5, 5, -1), A.bne(5, 0, -48),
  A.jal(0, 0),
];

/** Recursive fib(20) forever: calls and returns the trace cannot follow, so blocks of 5-8. */
const SP = 2, RA = 1, A0 = 10, S0 = 8, S1 = 9, A5 = 15;
const fib = [
  ...A.li(SP, RAM + 0x80000),
  A.addi(A0, 0, 20), A.jal(RA, 12), A.jal(0, -8), A.addi(0, 0, 0),
  // fib(a0), at word 6:
  A.addi(SP, SP, -16), A.sw(RA, SP, 12), A.sw(S0, SP, 8), A.sw(S1, SP, 4), A.addi(S0, A0, 0), A.addi(A5, 0, 1),
  A.bge(A5, A0, 28), A.addi(A0, A0, -1), A.jal(RA, -32), A.addi(S1, A0, 0), A.addi(A0, S0, -2), A.jal(RA, -44),
  A.add(A0, A0, S1),
  A.lw(RA, SP, 12), A.lw(S0, SP, 8), A.lw(S1, SP, 4), A.addi(SP, SP, 16), A.jalr(0, RA, 0),
];

/** Instructions per second of wall time and of this process's CPU time (the box may be shared). */
function measure(program: number[], jit: boolean, instructions: number, batch: number): { wall: number; cpu: number } {
  const t = rig(program, { jit, ramKiB: 1024 });
  const t0 = process.hrtime.bigint();
  const c0 = process.cpuUsage();
  while (t.hart.icount < instructions) {
    const e = t.hart.run(Math.min(batch, instructions - t.hart.icount));
    if (e !== Exit.Budget) throw new Error(`unexpected exit ${e}`);
  }
  const c = process.cpuUsage(c0);
  const wall = Number(process.hrtime.bigint() - t0) / 1e9;
  return { wall: instructions / wall / 1e6, cpu: instructions / ((c.user + c.system) / 1e6) / 1e6 };
}

/** The kernels compute what they should (else the numbers mean nothing). */
function verify(): void {
  const t = rig(fib, { jit: true, ramKiB: 1024 });
  while (t.hart.pc !== RAM + 16) t.hart.run(1);
  if (t.hart.x[A0] !== 6765) throw new Error(`fib(20) = ${t.hart.x[A0]}`);
}

verify();
const batch = Number(process.env.BATCH ?? 100_000);
const runs = [
  ['loop', kernel, false, 20e6], ['loop', kernel, true, 300e6],
  ['fib', fib, false, 20e6], ['fib', fib, true, 100e6],
] as const;
for (const [name, program, jit, n] of runs) {
  measure(program, jit, n / 10, batch); // warm-up
  const { wall, cpu } = measure(program, jit, n, batch);
  const what = `${name} ${jit ? 'jit' : 'interpreter'}`;
  console.log(`${what.padEnd(18)} ${wall.toFixed(0).padStart(6)} MIPS wall ${cpu.toFixed(0).padStart(6)} MIPS cpu  (${n / 1e6}M instructions, batches of ${batch})`);
}
