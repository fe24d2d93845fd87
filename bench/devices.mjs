// `node bench/devices.mjs [ROOT...]`: guest speed of one or more ftvm builds side by side
// (each ROOT a checkout with `npm run build` done; default: this one), runs alternating so
// host load hits them alike. Guests: `bench` (the CPU benchmark, live env as `npm run bench`)
// and `irqstress` (timer, software and UART interrupts through the CLINT, PLIC and UART; a
// deterministic env, so every run executes the same instructions). Median of RUNS runs.
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = fileURLToPath(new URL('..', import.meta.url));
const roots = (process.argv.length > 2 ? process.argv.slice(2) : [here]).map((r) => resolve(r));
const RUNS = Number(process.env.BENCH_RUNS ?? 5);
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

const child = `
  const [root, elf, det] = process.argv.slice(1);
  const { Machine } = await import(root + '/dist/runtime/machine.js');
  const { runMachine } = await import(root + '/dist/runtime/runner.js');
  const { LiveEnv } = await import(root + '/dist/runtime/env/live.js');
  const { DeterministicEnv } = await import(root + '/dist/runtime/env/deterministic.js');
  const { readFileSync } = await import('node:fs');
  const m = new Machine({ env: det === '1' ? new DeterministicEnv({ seed: 7 }) : new LiveEnv() });
  m.loadElf(readFileSync(elf));
  const t0 = process.hrtime.bigint();
  const o = await runMachine(m, {});
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  process.stdout.write(JSON.stringify({ reason: o.reason, instructions: o.icount, seconds }));
`;

const cpuModel = (readFileSync('/proc/cpuinfo', 'utf8').match(/model name\s*:\s*(.*)/) ?? [])[1] ?? cpus()[0]?.model;
console.log(`machine: ${cpus().length} CPUs (${cpuModel}), node ${process.version}, ${RUNS} runs each, median`);
for (const [guest, det] of [['bench', '0'], ['irqstress', '1']]) {
  const elf = join(here, 'guests', guest, `${guest}.elf`);
  const res = roots.map(() => []);
  for (let i = 0; i < RUNS; i++) {
    roots.forEach((root, k) => {
      res[k].push(JSON.parse(execFileSync(process.execPath, ['--input-type=module', '-e', child, root, elf, det], { encoding: 'utf8' })));
    });
  }
  roots.forEach((root, k) => {
    const insns = median(res[k].map((r) => r.instructions));
    const mips = median(res[k].map((r) => r.instructions / r.seconds / 1e6));
    console.log(`${guest.padEnd(10)} ${root}: ${insns} instructions, ${mips.toFixed(1)} MIPS (runs: ${res[k].map((r) => (r.instructions / r.seconds / 1e6).toFixed(1)).join(' ')})`);
  });
}
