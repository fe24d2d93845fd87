// The cost of one batch (the CPU chart's `cpu.batchEnded` and the runner around it), in
// µs, for one or more built checkouts, alternating between them (the host may be shared):
//   node bench/batch-cost.mjs [checkout ...]        (default: this one)
// Each checkout runs in its own process: `runMachine` in 200-instruction batches
// (BATCH, BATCHES) with the deterministic env, on a `j .` loop (the batch's own overhead
// alone) and on the bench-timer guest's code. Best of REPS repetitions per process; ROUNDS
// alternations; prints each round and the median of the rounds, wall and CPU time.
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const BATCH = Number(process.env.BATCH ?? 200);
const BATCHES = Number(process.env.BATCHES ?? 50_000);
const REPS = Number(process.env.REPS ?? 6);
const ROUNDS = Number(process.env.ROUNDS ?? 3);
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

async function child(dir, program) {
  const d = (p) => import(join(dir, 'dist/runtime', p));
  const { Machine } = await d('machine.js');
  const { DeterministicEnv } = await d('env/deterministic.js');
  const { runMachine } = await d('runner.js');
  const m = new Machine({ env: new DeterministicEnv(), memoryMiB: 16 });
  if (program === 'spin') {
    m.bus.writeRam(0x8000_0000, new Uint8Array(Int32Array.of(0x0000_006f).buffer)); // j .
    m.hart.reset(0x8000_0000);
  } else {
    m.loadElf(readFileSync(join(dir, 'guests/bench-timer/bench-timer.elf')));
  }
  let best = Infinity;
  let bestCpu = Infinity;
  for (let r = 0; r < REPS; r++) {
    let batches = 0;
    const t0 = performance.now();
    const c0 = process.cpuUsage();
    const o = await runMachine(m, { maxInstructions: BATCH * BATCHES, batch: BATCH, onBatch: () => batches++ });
    const c = process.cpuUsage(c0);
    if (o.reason !== 'limit') throw new Error(`${dir} ${program}: stopped on ${o.reason}`);
    best = Math.min(best, ((performance.now() - t0) * 1000) / batches);
    bestCpu = Math.min(bestCpu, (c.user + c.system) / batches);
  }
  process.stdout.write(`${best} ${bestCpu}\n`);
}

if (process.argv[2] === '--child') {
  await child(process.argv[3], process.argv[4]);
} else {
  const here = fileURLToPath(new URL('..', import.meta.url));
  const dirs = process.argv.length > 2 ? process.argv.slice(2).map((p) => resolve(p)) : [here];
  const self = fileURLToPath(import.meta.url);
  const results = new Map(dirs.flatMap((d) => ['spin', 'bench-timer'].map((p) => [`${d} ${p}`, { wall: [], cpu: [] }])));
  console.log(`batches of ${BATCH} instructions, ${BATCHES} per repetition, best of ${REPS}, ${ROUNDS} rounds`);
  for (let round = 0; round < ROUNDS; round++) {
    for (const dir of dirs) {
      for (const program of ['spin', 'bench-timer']) {
        const [us, cpu] = execFileSync(process.execPath, [self, '--child', dir, program], { encoding: 'utf8' }).trim().split(' ').map(Number);
        results.get(`${dir} ${program}`).wall.push(us);
        results.get(`${dir} ${program}`).cpu.push(cpu);
        console.log(`round ${round + 1}: ${dir} ${program.padEnd(11)} ${us.toFixed(2)} µs wall, ${cpu.toFixed(2)} µs CPU per batch`);
      }
    }
  }
  // NOTE CPU time (this process, all threads) is the steadier figure on a shared host: wall
  // time also counts the time the core was given to others.
  for (const [key, { wall, cpu }] of results) console.log(`median: ${key.padEnd(40)} ${median(wall).toFixed(2)} µs wall, ${median(cpu).toFixed(2)} µs CPU per batch`);
}
