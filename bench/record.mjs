// `ftvm record` against `ftvm run`: speed ratio, log bytes per 1000 instructions, seek time.
//   node bench/record.mjs [guests] [base-tree]     (needs `npm run build`)
// guests: comma-separated (default bench-timer,bench,seq). base-tree: another built checkout
// (e.g. `git worktree add /tmp/ftvm-base <commit> && npm run build` there), measured in the
// same run, interleaved, for before/after.
// Env: BENCH_PAIRS (7 run/record pairs per guest and tree), BENCH_SEEKS (8 seek targets spread
// evenly over the recording; 0: no seeks).
//
// The ratio is taken pair by pair: one `ftvm run` and one `ftvm record` back to back (their
// order alternates), so a load swing on this shared host hits both sides of a pair alike; the
// median of the per-pair ratios is the figure. Also the ratio of the best (shortest) guest
// times of all pairs: on a loaded host the shortest run is the one least disturbed. Ratios:
// - guest: the guest's own run time as each command reports it with --stats (start-up, image
//   load and exit left out). A tree whose `record` has no --stats shows "-".
// - cpu: whole-process CPU seconds (user + system, all threads; GNU time) less each command's
//   own start-up CPU (the median of 3 runs of the `hello` guest): the guest's CPU cost. A
//   loaded host inflates this far less than wall time.
// - process: whole-process wall times, Node start-up included, as a user sees them. `run`
//   loads more modules (dashboard, inspector) than `record`, so this one flatters record.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const here = fileURLToPath(new URL('..', import.meta.url));
const guests = (process.argv[2] ?? 'bench-timer,bench,seq').split(',');
const trees = [['this', here], ...(process.argv[3] ? [['base', resolve(process.argv[3])]] : [])];
const PAIRS = Number(process.env.BENCH_PAIRS ?? 7);
const SEEKS = Number(process.env.BENCH_SEEKS ?? 8);
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const range = (xs) => `${Math.min(...xs).toFixed(3)}–${Math.max(...xs).toFixed(3)}`;
const load = () => loadavg().map((x) => x.toFixed(1)).join(' ');
const dir = mkdtempSync(join(tmpdir(), 'ftvm-bench-record-'));

/** GNU time, when the host has it: the CPU seconds (user + system) a process used, which a loaded host inflates far less than wall time. */
const TIME = existsSync('/usr/bin/time') ? '/usr/bin/time' : undefined;

/** One `ftvm` process, timed; stderr kept (stats, record's summary, replay's digest). */
function ftvm(tree, args) {
  const cmd = [process.execPath, join(tree, 'bin/ftvm.js'), ...args];
  const t0 = performance.now();
  const r = TIME ? spawnSync(TIME, ['-f', 'cpu %U %S', ...cmd], { encoding: 'utf8', maxBuffer: 64 << 20 })
    : spawnSync(cmd[0], cmd.slice(1), { encoding: 'utf8', maxBuffer: 64 << 20 });
  const seconds = (performance.now() - t0) / 1000;
  if (r.status !== 0) throw new Error(`ftvm ${args.join(' ')}: exit ${r.status}\n${r.stderr}`);
  const stats = /instructions (\d+), seconds ([\d.]+)/.exec(r.stderr);
  const cpu = /^cpu ([\d.]+) ([\d.]+)$/m.exec(r.stderr);
  return { seconds, guestSeconds: stats ? Number(stats[2]) : undefined, cpuSeconds: cpu ? Number(cpu[1]) + Number(cpu[2]) : undefined, stderr: r.stderr };
}

/** Whether this tree's `ftvm record` prints --stats (older builds do not). */
const recordHasStats = (tree) => readFileSync(join(tree, 'dist/runtime/commands/record.js'), 'utf8').includes('[--stats]');

/**
 * Bytes per entry type in a log file. Version 1: frame by frame (magic, version, type, length
 * varint). Version 2: block by block; each entry's bytes (head and payload) count for its type,
 * and each block's magic, length, seq and CRC for "block framing".
 */
function bytesByType(path) {
  const b = readFileSync(path);
  const jsonLen = b.readUInt32LE(8);
  const names = ['gap', 'timer', 'mtime', 'rtc', 'seed', 'console', 'net-rx', 'disk-read', 'disk-done', 'progress', 'output', 'digest', 'snapshot', 'end'];
  const out = {};
  const add = (name, n) => { out[name] = (out[name] ?? 0) + n; };
  let p;
  const uv = () => { let v = 0, mul = 1; for (;;) { const x = b[p++]; v += (x & 0x7f) * mul; mul *= 128; if (x < 0x80) return v; } };
  const sv = () => { const x = b[p++]; if (x & 0x80) uv(); };
  if (b[7] === 1) {
    for (let at = 12 + jsonLen + 4; at < b.length; ) {
      p = at + 3;
      const length = uv();
      const size = p - at + length;
      add(names[b[at + 2] & 0x7f] ?? `type${b[at + 2] & 0x7f}`, size);
      at += size;
    }
    return out;
  }
  for (let at = 12 + jsonLen + 4; at < b.length; ) {
    p = at + 1;
    const length = uv();
    const end = p + length;
    uv(); // first seq
    add('block framing', p - at + 4);
    while (p < end - 4) {
      const from = p;
      const type = uv() % 16;
      switch (type) {
        case 2: case 3: case 4: sv(); break;
        case 5: p++; break;
        case 6: case 12: { const n = uv(); p += n; break; }
        case 7: { uv(); const n = uv(); p += n; break; }
        case 8: uv(); uv(); break;
        case 9: uv(); break;
        case 10: p++; sv(); break;
        case 11: { const n = b[p++]; p += n; break; }
        case 13: sv(); p++; break;
        default: break;
      }
      add(names[type], p - from);
    }
    at = end;
  }
  return out;
}

/** CPU seconds `run` and `record` take for the hello guest (start-up, module loading, exit). */
const startCpuOf = new Map();
function startCpu(tree) {
  if (!TIME) return { run: 0, record: 0 };
  if (startCpuOf.has(tree)) return startCpuOf.get(tree);
  const hello = join(tree, 'guests/hello/hello.elf');
  const run = [], record = [];
  for (let i = 0; i < 3; i++) {
    run.push(ftvm(tree, ['run', hello]).cpuSeconds);
    record.push(ftvm(tree, ['record', hello, '--log', join(dir, 'hello.log')]).cpuSeconds);
  }
  const s = { run: median(run), record: median(record) };
  startCpuOf.set(tree, s);
  console.log(`start-up CPU (${tree}): run ${s.run.toFixed(2)} s, record ${s.record.toFixed(2)} s`);
  return s;
}

console.log(`machine: ${cpus().length} CPUs, node ${process.version}, load average ${load()}; ${PAIRS} pairs per guest and tree`);
const { readLogFile } = await import(pathToFileURL(join(here, 'dist/runtime/log/file.js')).href);
const { isDeltaSnapshot } = await import(pathToFileURL(join(here, 'dist/runtime/snapshot.js')).href);

for (const guest of guests) {
  const elf = (tree) => join(tree, 'guests', guest, `${guest}.elf`);
  const res = Object.fromEntries(trees.map(([name, tree]) => [name, { stats: recordHasStats(tree), start: startCpu(tree), guest: [], runBest: Infinity, recBest: Infinity, cpu: [], process: [], kb: [], last: undefined }]));
  // Interleaved: the trees take turns, and within a pair run and record swap order each time.
  for (let i = 0; i < PAIRS; i++) {
    for (const [name, tree] of trees) {
      const r = res[name];
      const log = join(dir, `${guest}-${name}.log`);
      const doRun = () => ftvm(tree, ['run', '--stats', elf(tree)]);
      const doRecord = () => ftvm(tree, ['record', elf(tree), '--log', log, ...(r.stats ? ['--stats'] : [])]);
      let run, rec;
      if (i % 2 === 0) { run = doRun(); rec = doRecord(); } else { rec = doRecord(); run = doRun(); }
      r.process.push(run.seconds / rec.seconds);
      if (rec.guestSeconds !== undefined) {
        r.guest.push(run.guestSeconds / rec.guestSeconds);
        r.runBest = Math.min(r.runBest, run.guestSeconds);
        r.recBest = Math.min(r.recBest, rec.guestSeconds);
      }
      if (rec.cpuSeconds !== undefined) r.cpu.push((run.cpuSeconds - r.start.run) / (rec.cpuSeconds - r.start.record));
      const summary = /log (\d+) entries, (\d+) bytes, ([\d.]+) bytes per 1000/.exec(rec.stderr);
      r.kb.push(Number(summary[3]));
      r.last = { log, summary: summary[0], digest: /digest (\w+) icount (\d+)/.exec(rec.stderr), run, rec };
    }
  }
  console.log(`\n== ${guest} (load average ${load()})`);
  for (const [name, tree] of trees) {
    const r = res[name];
    const icount = Number(r.last.digest[2]);
    console.log(`${name} (${tree}): ${icount} instructions`);
    console.log(`  record/run speed, guest time:   ${r.guest.length ? `median ${median(r.guest).toFixed(3)} (${range(r.guest)}; pairs ${r.guest.map((x) => x.toFixed(2)).join(' ')})` : '-'}`);
    if (r.guest.length) console.log(`  record/run speed, best guest times: ${(r.runBest / r.recBest).toFixed(3)} (run ${r.runBest.toFixed(3)} s, record ${r.recBest.toFixed(3)} s)`);
    console.log(`  record/run speed, process CPU time: ${r.cpu.length ? `median ${median(r.cpu).toFixed(3)} (${range(r.cpu)})` : '-'}`);
    console.log(`  record/run speed, process time: median ${median(r.process).toFixed(3)} (${range(r.process)})`);
    console.log(`  log bytes per 1000 instructions: median ${median(r.kb).toFixed(3)} (${range(r.kb)}); last: ${r.last.summary}`);
    const { entries } = await readLogFile(r.last.log);
    let full = 0, delta = 0, fullBytes = 0, deltaBytes = 0;
    for (const e of entries) {
      if (e.type !== 'snapshot') continue;
      if (isDeltaSnapshot(e.data)) { delta++; deltaBytes += e.data.length; } else { full++; fullBytes += e.data.length; }
    }
    const per = (b) => ((b * 1000) / icount).toFixed(3);
    const types = Object.entries(bytesByType(r.last.log)).sort((a, b) => b[1] - a[1]).map(([t, b]) => `${t} ${per(b)}`).join(', ');
    console.log(`  by frame type, B/kinstr: ${types}`);
    console.log(`  snapshots: ${full} full (${fullBytes} B), ${delta} delta (${deltaBytes} B)`);
    if (SEEKS === 0) continue;
    const times = [];
    for (let k = 1; k <= SEEKS; k++) {
      const until = Math.floor((icount * k) / (SEEKS + 1));
      const s = ftvm(tree, ['replay', elf(tree), '--log', r.last.log, '--until', String(until)]);
      if (!new RegExp(`icount ${until}\\b`).test(s.stderr)) throw new Error(`seek to ${until} ended elsewhere: ${s.stderr}`);
      times.push(s.seconds);
    }
    const whole = ftvm(tree, ['replay', elf(tree), '--log', r.last.log]);
    if (!whole.stderr.includes(`digest ${r.last.digest[1]} icount ${icount}`)) throw new Error(`replay ended in another digest: ${whole.stderr}`);
    console.log(`  seek (replay --until, ${SEEKS} targets): median ${median(times).toFixed(3)} s, max ${Math.max(...times).toFixed(3)} s; whole replay ${whole.seconds.toFixed(3)} s`);
  }
}
rmSync(dir, { recursive: true, force: true });
