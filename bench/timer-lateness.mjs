// How late does the live env deliver timer interrupts? For each MTIP it raises, lateness =
// host mtime at delivery - mtimecmp (10 MHz ticks). Runs guests that arm the timer often.
// Usage: node bench/timer-lateness.mjs [guest ...]   (needs `npm run build`)
import { readFileSync } from 'node:fs';
import { Machine } from '../dist/runtime/machine.js';
import { LiveEnv } from '../dist/runtime/env/live.js';
import { runMachine } from '../dist/runtime/runner.js';

class MeasuringEnv extends LiveEnv {
  lateTicks = [];
  applyTimer(m) {
    this.lateTicks.push(this.mtimeNow() - m.clint.mtimecmp);
    super.applyTimer(m);
  }
}

const pct = (xs, p) => xs[Math.min(xs.length - 1, Math.floor((p / 100) * xs.length))];
for (const guest of process.argv.slice(2).length ? process.argv.slice(2) : ['timer', 'irqstress']) {
  const env = new MeasuringEnv();
  const m = new Machine({ env });
  m.loadElf(readFileSync(new URL(`../guests/${guest}/${guest}.elf`, import.meta.url)));
  const o = await runMachine(m, {});
  const us = env.lateTicks.map((t) => t / 10).sort((a, b) => a - b);
  console.log(`${guest}: ${o.reason} after ${o.icount} instructions in ${o.seconds.toFixed(2)} s; ${us.length} timer interrupts, lateness µs p50 ${pct(us, 50)}, p99 ${pct(us, 99)}, max ${us.at(-1)}`);
}
