// `ftvm record` against `ftvm run`, log bytes per 1000 instructions and seek time (replay --until).
//   node bench/record.mjs [guest] [base-tree]     (needs `npm run build`; guest: bench-timer)
// base-tree: another built checkout (e.g. `git worktree add /tmp/ftvm-main main && npm run build`
// there) measured in the same run, interleaved, for before/after. Env: BENCH_RUNS (5),
// BENCH_SEEKS (8 targets spread evenly over the recording).
// Times are whole processes (Node start-up included, as a user sees them); medians.
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const here = fileURLToPath(new URL('..', import.meta.url));
const guest = process.argv[2] ?? 'bench-timer';
const trees = [['this', here], ...(process.argv[3] ? [['base', resolve(process.argv[3])]] : [])];
const RUNS = Number(process.env.BENCH_RUNS ?? 5);
const SEEKS = Number(process.env.BENCH_SEEKS ?? 8);
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const dir = mkdtempSync(join(tmpdir(), 'ftvm-bench-record-'));

/** One `ftvm` process, timed; stderr kept (record's summary, replay's digest). */
function ftvm(tree, args) {
  const t0 = performance.now();
  const r = spawnSync(process.execPath, [join(tree, 'bin/ftvm.js'), ...args], { encoding: 'utf8', maxBuffer: 64 << 20 });
  const seconds = (performance.now() - t0) / 1000;
  if (r.status !== 0) throw new Error(`ftvm ${args.join(' ')}: exit ${r.status}\n${r.stderr}`);
  return { seconds, stderr: r.stderr };
}

console.log(`machine: ${cpus().length} CPUs, node ${process.version}, load average ${loadavg().map((x) => x.toFixed(1)).join(' ')}`);
const elf = (tree) => join(tree, 'guests', guest, `${guest}.elf`);
const res = Object.fromEntries(trees.map(([name]) => [name, { run: [], record: [], log: '' }]));
// Interleaved: run and record of each tree take turns, so host load hits all alike.
for (let i = 0; i < RUNS; i++) {
  for (const [name, tree] of trees) {
    res[name].run.push(ftvm(tree, ['run', elf(tree)]).seconds);
    const log = join(dir, `${name}.log`);
    const r = ftvm(tree, ['record', elf(tree), '--log', log]);
    res[name].record.push(r.seconds);
    res[name].summary = /log .*/.exec(r.stderr)?.[0];
    res[name].digest = /digest (\w+) icount (\d+)/.exec(r.stderr);
    res[name].log = log;
  }
}

const { readLogFile } = await import(pathToFileURL(join(here, 'dist/runtime/log/file.js')).href);
const { isDeltaSnapshot } = await import(pathToFileURL(join(here, 'dist/runtime/snapshot.js')).href);
for (const [name, tree] of trees) {
  const r = res[name];
  const icount = Number(r.digest[2]);
  const { entries } = await readLogFile(r.log);
  let full = 0, delta = 0, fullBytes = 0, deltaBytes = 0;
  for (const e of entries) {
    if (e.type !== 'snapshot') continue;
    if (isDeltaSnapshot(e.data)) { delta++; deltaBytes += e.data.length; } else { full++; fullBytes += e.data.length; }
  }
  const run = median(r.run), rec = median(r.record);
  console.log(`${name} (${tree}): ${guest}, ${icount} instructions`);
  console.log(`  ftvm run ${run.toFixed(3)} s, ftvm record ${rec.toFixed(3)} s: record/run speed ${(run / rec).toFixed(3)} (median of ${RUNS}; runs ${r.run.map((x) => x.toFixed(2)).join(' ')} / ${r.record.map((x) => x.toFixed(2)).join(' ')})`);
  console.log(`  ${r.summary}`);
  console.log(`  snapshots: ${full} full (${fullBytes} B, ${((fullBytes * 1000) / icount).toFixed(3)} B/kinstr), ${delta} delta (${deltaBytes} B, ${((deltaBytes * 1000) / icount).toFixed(3)} B/kinstr)`);
  const times = [];
  for (let k = 1; k <= SEEKS; k++) {
    const until = Math.floor((icount * k) / (SEEKS + 1));
    const s = ftvm(tree, ['replay', elf(tree), '--log', r.log, '--until', String(until)]);
    if (!new RegExp(`icount ${until}\\b`).test(s.stderr)) throw new Error(`seek to ${until} ended elsewhere: ${s.stderr}`);
    times.push(s.seconds);
  }
  const whole = ftvm(tree, ['replay', elf(tree), '--log', r.log]);
  if (!whole.stderr.includes(`digest ${r.digest[1]} icount ${icount}`)) throw new Error(`replay ended in another digest: ${whole.stderr}`);
  console.log(`  seek (replay --until, ${SEEKS} targets spread evenly): median ${median(times).toFixed(3)} s, max ${Math.max(...times).toFixed(3)} s; whole replay ${whole.seconds.toFixed(3)} s`);
}
rmSync(dir, { recursive: true, force: true });
