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

/** A call per iteration: short blocks (1, 5 and 2 instructions) measure dispatch between blocks. */
const calls = [
  ...A.li(8, DATA), ...A.li(5, 0x7fffffff),
  A.jal(1, 16), A.addi(5, 5, -1), A.bne(5, 0, -8), // loop: call f 4 words ahead
  A.jal(0, 0),
  A.lw(6, 8, 0), A.add(6, 6, 5), A.sw(6, 8, 0), A.xor(7, 7, 6), A.jalr(0, 1, 0), // f
];

function measure(program: number[], jit: boolean, instructions: number, batch: number): number {
  const t = rig(program, { jit, ramKiB: 1024 });
  const t0 = process.hrtime.bigint();
  while (t.hart.icount < instructions) {
    const e = t.hart.run(Math.min(batch, instructions - t.hart.icount));
    if (e !== Exit.Budget) throw new Error(`unexpected exit ${e}`);
  }
  const s = Number(process.hrtime.bigint() - t0) / 1e9;
  return instructions / s / 1e6;
}

const batch = Number(process.env.BATCH ?? 100_000);
const runs = [
  ['loop', kernel, false, 20e6], ['loop', kernel, true, 300e6],
  ['calls', calls, false, 20e6], ['calls', calls, true, 100e6],
] as const;
for (const [name, program, jit, n] of runs) {
  measure(program, jit, n / 10, batch); // warm-up
  const mips = measure(program, jit, n, batch);
  const what = `${name} ${jit ? 'jit' : 'interpreter'}`;
  console.log(`${what.padEnd(18)} ${mips.toFixed(1).padStart(7)} MIPS  (${n / 1e6}M instructions, batches of ${batch})`);
}
