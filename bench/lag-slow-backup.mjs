// A backup three times slower than its primary, in one process (the nodes of test/ft/bounded-lag.test.ts),
// with the lag bound on (the defaults) and off (acks on receipt, no time mark: main before the
// bound), alternated. Not a test: prints numbers.
//   node bench/lag-slow-backup.mjs     (needs `npm run build`)
// The guest is seq-long. The primary is crashed and the channel cut
// BENCH_KILL_MS (default 1500) after the start; measured: the largest backlog the backup had
// (its oldest entry received and not yet replayed), sampled every 10 ms; the replay after the
// claim was won (the backlog a failover waits for: `claim won` -> `replayed`); lines lost.
import { readFileSync } from 'node:fs';
import { loadavg } from 'node:os';

const dist = (p) => new URL(`../dist/${p}`, import.meta.url).href;
const { Machine } = await import(dist('runtime/machine.js'));
const { LiveEnv } = await import(dist('runtime/env/live.js'));
const { createInProcessChannel } = await import(dist('runtime/channel/in-process.js'));
const { InProcessArbiter } = await import(dist('runtime/arbiter/in-process.js'));
const { PrimaryNode } = await import(dist('runtime/ft/primary-node.js'));
const { BackupNode } = await import(dist('runtime/ft/backup-node.js'));
const { SeqChecker } = await import(dist('runtime/demo/seq-checker.js'));
const { guestPath } = await import(dist('runtime/guests.js'));

const RUNS = Number(process.env.BENCH_RUNS ?? 3);
const KILL_MS = Number(process.env.BENCH_KILL_MS ?? 1500);
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const image = readFileSync(guestPath('seq-long'));
const boot = () => {
  const m = new Machine({ env: new LiveEnv() });
  m.loadElf(image);
  return m;
};

async function once(bound, i) {
  const arbiter = new InProcessArbiter();
  const ch = createInProcessChannel(bound ? {} : { highWaterMs: Infinity });
  // A short detection (the slow host's batches stall this thread too): the backlog is what is left after it.
  const timing = { suspectMs: 300, confirmMs: 100 };
  const primary = new PrimaryNode({ name: 'primary', pairId: `b${i}`, generation: 1, machine: boot(), arbiter, channel: ch.primary, timing });
  const machine = boot();
  const step = machine.step.bind(machine);
  machine.step = (max, soft) => {
    const t0 = performance.now();
    const exit = step(max, soft);
    for (const until = performance.now() + 2 * (performance.now() - t0); performance.now() < until;) { /* the slow host */ }
    return exit;
  };
  const backup = new BackupNode({ name: 'backup', pairId: `b${i}`, generation: 1, machine, channel: ch.backup, arbiter, timing, ...(bound ? {} : { ackLagMs: Infinity }) });
  const checker = new SeqChecker();
  primary.released$.subscribe((o) => checker.accept(o));
  let maxBacklogMs = 0;
  const sample = setInterval(() => { maxBacklogMs = Math.max(maxBacklogMs, backup.stats().lagMs); }, 10);
  const bDone = backup.run();
  const pDone = primary.run();
  await new Promise((r) => setTimeout(r, KILL_MS));
  clearInterval(sample);
  const lines = checker.lines;
  primary.crash();
  ch.cut();
  await pDone;
  const outcome = await bDone;
  if (outcome.reason !== 'live') throw new Error(`backup ${outcome.reason}`);
  outcome.primary.released$.subscribe((o) => checker.accept(o));
  const end = await outcome.primary.run();
  const line = backup.phases.line();
  const at = (step) => Number(new RegExp(`${step} ([\\d.]+)`).exec(line)?.[1]);
  return { maxBacklogMs, drainMs: at('replayed') - at('claim won'), lines, lost: checker.lost, ok: checker.ok && end.code === 0 };
}

console.log(`lag-slow-backup: backup 3x slower, in one process, seq-long guest, kill at ${KILL_MS} ms, ${RUNS} rounds, load ${loadavg()[0].toFixed(1)}`);
const rows = { on: [], off: [] };
for (let r = 0; r < RUNS; r++) {
  for (const bound of [false, true]) {
    const x = await once(bound, `${r}${bound}`);
    rows[bound ? 'on' : 'off'].push(x);
    console.log(`  bound ${bound ? 'on ' : 'off'} round ${r}: largest backlog ${x.maxBacklogMs.toFixed(0)} ms, replay after the claim ${x.drainMs.toFixed(0)} ms, lines before the kill ${x.lines}, lost ${x.lost}, run ok ${x.ok}`);
  }
}
for (const k of ['off', 'on']) {
  const xs = rows[k];
  console.log(`bound ${k}: largest backlog median ${median(xs.map((x) => x.maxBacklogMs)).toFixed(0)} ms; replay after the claim median ${median(xs.map((x) => x.drainMs)).toFixed(0)} ms (${xs.map((x) => x.drainMs.toFixed(0)).join(', ')}); lines before the kill median ${median(xs.map((x) => x.lines))}; lost ${xs.reduce((n, x) => n + x.lost, 0)}; load ${loadavg()[0].toFixed(1)}`);
}
