// The worker pair's output-rule delay against its backup's replay lag (issue 14, eighth pass):
//   node bench/worker-lag.mjs [checkout ...]
// For each checkout (default: this one), ROUNDS (default 3) alternated runs of bench-timer as
// `createPair({ backupIn: 'worker' })` (long suspicion: no failover on a loaded host). While it
// runs, the primary's stats are sampled every 5 ms (on this thread's turns): the largest
// `lagMs` seen (age of the oldest unacknowledged entry) and how many samples found the primary
// throttled. Prints per run the primary's output-rule delay p50/p99: bench-timer's console
// outputs come in one burst at its end, so the p50 is that burst's wait, which follows the
// replay lag at that moment (a lagging backup acks only what it replayed: ReplayBacklog).
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const self = fileURLToPath(import.meta.url);
const here = fileURLToPath(new URL('..', import.meta.url));

if (process.argv[2] === '--child') {
  const dir = process.argv[3];
  const { createPair } = await import(join(dir, 'dist/runtime/pair.js'));
  const image = readFileSync(join(dir, 'guests/bench-timer/bench-timer.elf'));
  const pair = createPair({ image, backupIn: 'worker', timing: { suspectMs: 5000, confirmMs: 2500, suspectMaxMs: 10000 } });
  await pair.ready();
  let maxLag = 0, samples = 0, paused = 0;
  const t = setInterval(() => {
    const s = pair.stats().primary;
    maxLag = Math.max(maxLag, s.lagMs);
    samples++;
    if (s.paused) paused++;
  }, 5);
  const t0 = performance.now();
  await pair.start();
  clearInterval(t);
  const s = pair.stats().primary;
  console.log(`wall ${(performance.now() - t0).toFixed(0)} ms; output delay p50 ${s.outputDelay.p50Ms.toFixed(2)} ms, p99 ${s.outputDelay.p99Ms.toFixed(2)} ms; largest lagMs seen ${maxLag.toFixed(1)}; throttled in ${paused} of ${samples} samples; failovers ${pair.stats().generation - 1}`);
  process.exit(0);
}

const trees = process.argv.slice(2).map((p) => resolve(p));
if (trees.length === 0) trees.push(here);
const rounds = Number(process.env.ROUNDS ?? 3);
console.log(`bench-timer, worker pair, ${rounds} rounds, load average at the start ${loadavg().map((x) => x.toFixed(1)).join(' ')}`);
for (let r = 1; r <= rounds; r++) {
  for (const tree of trees) {
    const out = execFileSync(process.execPath, [self, '--child', tree], { encoding: 'utf8' }).trim();
    console.log(`round ${r} ${tree}: ${out}`);
  }
}
console.log(`load average at the end ${loadavg().map((x) => x.toFixed(1)).join(' ')}`);
