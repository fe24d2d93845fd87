// How late does the live env deliver timer interrupts? For each MTIP it raises, lateness =
// host mtime at delivery - max(mtimecmp, host mtime when that mtimecmp was written): a guest
// that arms the timer in the past (mtimecmp = 0, or a periodic schedule that fell behind)
// gets it at the next boundary, and that is no lateness of ftvm's. Writes end the batch, so the
// first deliverDue after a write sees it.
// Usage: node bench/timer-lateness.mjs [guest ...]   (needs `npm run build`)
import { readFileSync } from 'node:fs';
import { Machine } from '../dist/runtime/machine.js';
import { LiveEnv } from '../dist/runtime/env/live.js';
import { runMachine } from '../dist/runtime/runner.js';

class MeasuringEnv extends LiveEnv {
  lateTicks = [];
  cmp = -1;
  armedAt = 0;
  deliverDue(m) {
    if (m.clint.mtimecmp !== this.cmp) {
      this.cmp = m.clint.mtimecmp;
      this.armedAt = this.mtimeNow();
    }
    super.deliverDue(m);
  }
  applyTimer(m) {
    this.lateTicks.push(this.mtimeNow() - Math.max(m.clint.mtimecmp, this.armedAt));
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
