// The replay loop's own cost, without a primary or a channel (issue 14): a bench-timer log
// recorded once (`ftvm record`), then replayed in one thread with the whole log known, the
// way a worker backup replays it (40 µs slices sized by BatchSlicer, chained by BatchChain
// for 1 ms, the ReplayEnv's stops at every logged input) and with whole batches, against the
// guest alone (live env). CPU time of the replaying thread (schedstat), per instruction.
//   node bench/replay-slices.mjs [checkout ...]     (default: this one; alternated, ROUNDS=5)
// Every checkout replays the same log (recorded by the first checkout), so the runs differ only
// in the code. Each run is a child process of its own.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const self = fileURLToPath(import.meta.url);
const here = fileURLToPath(new URL('..', import.meta.url));
const GUEST = process.env.BENCH_GUEST ?? 'bench-timer';
const MODES = (process.env.MODES ?? 'alone,whole,sliced').split(',');

const schedstat = () => {
  const [cpu, wait] = readFileSync('/proc/thread-self/schedstat', 'utf8').trim().split(/\s+/).map(Number);
  return { cpu: cpu / 1e6, wait: wait / 1e6 };
};

async function child(dir, mode, logPath) {
  const d = (p) => import(join(dir, 'dist/runtime', p));
  const { Machine } = await d('machine.js');
  const image = readFileSync(join(dir, 'guests', GUEST, `${GUEST}.elf`));
  if (mode === 'alone') {
    const { LiveEnv } = await d('env/live.js');
    const { runMachine } = await d('runner.js');
    const m = new Machine({ env: new LiveEnv() });
    m.loadElf(image);
    const s0 = schedstat();
    const r = await runMachine(m, {});
    const s1 = schedstat();
    return { icount: r.icount, cpu: s1.cpu - s0.cpu, batches: NaN };
  }
  const { ReplayEnv } = await d('env/replay.js');
  const { readLogFile } = await d('log/file.js');
  const { runOnCpuActor } = await d('cpu-actor.js');
  const { BatchChain, BatchSlicer } = await d('ft/batch-slice.js');
  const { entries } = await readLogFile(logPath);
  let outputs = 0;
  const env = new ReplayEnv({ digest: (m) => m.digest(), outputCount: () => outputs });
  const m = new Machine({ env, onOutput: () => outputs++ });
  m.loadElf(image);
  for (const e of entries) env.push(e);
  let batches = 0;
  const opts = { mode: 'replay', onBatch: () => batches++ };
  if (mode === 'sliced') {
    // The worker backup's loop (runtime/ft/backup-node.ts with backup-worker.ts's chainMs 1).
    const slicer = new BatchSlicer(m, 1_000_000, 0.04, () => true);
    Object.assign(opts, { batch: slicer.budget, schedule: new BatchChain(1).schedule, onBatch: () => { batches++; slicer.ended(); } });
    // As BackupNode sets them where the checkout has them (several slices a batch, soft slice ends).
    if (typeof slicer.more === 'function') Object.assign(opts, { softBatch: true, moreSlices: () => slicer.more(1) });
  } else {
    Object.assign(opts, { batch: 1_000_000, yieldMs: 4 });
  }
  const s0 = schedstat();
  const r = await runOnCpuActor(m, opts).done;
  const s1 = schedstat();
  if (r.reason !== 'halt') throw new Error(`replay ended with ${r.reason}`);
  return { icount: r.icount, cpu: s1.cpu - s0.cpu, batches };
}

if (process.argv[2] === '--child') {
  process.stdout.write(JSON.stringify(await child(process.argv[3], process.argv[4], process.argv[5])) + '\n');
  process.exit(0);
}

const dirs = process.argv.slice(2).map((p) => resolve(p));
if (dirs.length === 0) dirs.push(here);
const ROUNDS = Number(process.env.ROUNDS ?? 5);
const tmp = mkdtempSync(join(tmpdir(), 'replaycost-slices-'));
const log = join(tmp, 'guest.log');
execFileSync(process.execPath, [join(dirs[0], 'bin/ftvm.js'), 'record', join(dirs[0], 'guests', GUEST, `${GUEST}.elf`), '--log', log], { stdio: 'ignore' });
console.log(`${GUEST}, ${ROUNDS} rounds, modes ${MODES.join(', ')}; load average at the start ${loadavg().map((x) => x.toFixed(1)).join(' ')}`);
const res = new Map();
for (let round = 0; round < ROUNDS; round++) {
  for (const dir of dirs) {
    let alone;
    for (const mode of MODES) {
      const r = JSON.parse(execFileSync(process.execPath, [self, '--child', dir, mode, log], { encoding: 'utf8' }).trim());
      const ns = (r.cpu * 1e6) / r.icount;
      if (mode === 'alone') alone = ns;
      const k = `${dir} ${mode}`;
      if (!res.has(k)) res.set(k, { ns: [], ratio: [] });
      res.get(k).ns.push(ns);
      if (alone !== undefined) res.get(k).ratio.push(ns / alone);
      console.log(`round ${round + 1} ${k}: ${ns.toFixed(3)} ns CPU/instr${alone !== undefined && mode !== 'alone' ? ` (x${(ns / alone).toFixed(3)} alone)` : ''}, ${r.batches} batches`);
    }
  }
}
// The minimum too: on a shared host preemption only adds CPU time (caches refilled), so the
// least of several runs is the steadier estimate of what the code itself costs.
for (const [k, s] of res) console.log(`median ${k}: ${median(s.ns).toFixed(3)} ns CPU/instr (min ${Math.min(...s.ns).toFixed(3)})${s.ratio.length && !k.endsWith('alone') ? `, x${median(s.ratio).toFixed(3)} alone` : ''}`);
console.log(`load average at the end ${loadavg().map((x) => x.toFixed(1)).join(' ')}`);
rmSync(tmp, { recursive: true, force: true });
