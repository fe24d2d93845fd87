// Preloaded into ftvm processes by bench/detect.mjs (NODE_OPTIONS=--import): records the
// event-loop delay histogram (perf_hooks.monitorEventLoopDelay, 1 ms resolution) and writes
// it to $FTVM_ELD_DIR/<role>-<pid>.json at exit, with the stalls over 50 ms and when they were.
// Changes nothing in the process it watches but one 5 ms timer.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';

const dir = process.env.FTVM_ELD_DIR;
if (dir) {
  const h = monitorEventLoopDelay({ resolution: 1 });
  h.enable();
  const role = process.argv.find((a) => a === 'primary' || a === 'backup') ?? 'other';
  // The stalls themselves, on the wall clock both sides share: [start ms, length ms] of every
  // gap over 50 ms between 5 ms ticks, so bench/detect.mjs can tell whether the host stalls
  // both sides at once.
  const stalls = [];
  let prev = performance.now();
  setInterval(() => {
    const now = performance.now();
    if (now - prev > 50) stalls.push([Math.round(performance.timeOrigin + prev), Math.round(now - prev)]);
    prev = now;
  }, 5).unref();
  process.on('exit', () => {
    h.disable();
    const ms = (ns) => ns / 1e6;
    writeFileSync(join(dir, `${role}-${process.pid}.json`), JSON.stringify({
      role, count: h.count, mean: ms(h.mean), p50: ms(h.percentile(50)), p99: ms(h.percentile(99)),
      p999: ms(h.percentile(99.9)), max: ms(h.max),
      over: Object.fromEntries([20, 50, 100, 150].map((t) => [t, [...h.percentiles].length && countOver(h, t)])),
      stalls,
    }));
  });
}

/** Share of samples above `t` ms, from the histogram's percentile table. */
function countOver(h, t) {
  let below = 0;
  for (const [pct, v] of h.percentiles) if (v / 1e6 <= t) below = pct;
  return +(100 - below).toFixed(3);
}
