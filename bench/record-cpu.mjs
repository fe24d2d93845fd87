// `ftvm record` against `ftvm run` in CPU time, both commands run in this one process:
//   node bench/record-cpu.mjs [guests] [base-tree] > /dev/null      (results on stderr)
// guests: comma-separated (default bench-timer,seq). base-tree: another built checkout,
// measured the same way, interleaved. Env: BENCH_ROUNDS (5), BENCH_RECORD_ARGS (extra `record`
// arguments, e.g. "--digest-every 100000000000" to see what digests cost).
//
// Each round calls each tree's `run` and `record` commands (their exported `command.run`, as
// `ftvm run --stats` and `ftvm record --stats` do) and takes the process's CPU time
// (process.cpuUsage, user + system) around each call. Modules are loaded once, by a warm-up
// call of each, so start-up is not in the figures, and CPU time, unlike wall time, hardly
// grows on a loaded host: the ratio run/record is steady where bench/record.mjs's wall-time
// ratios swing with other processes. The guest's console goes to this process's stdout:
// send it to /dev/null. Order alternates (run first, then record first) from round to round.
//
// Two figures per call: the process's CPU (every thread: the guest's, libuv's pool, V8's GC
// helpers) and the CPU of the thread that runs the guest alone (/proc/self/task/PID/stat,
// in clock ticks of 10 ms: medians of several rounds). On a host with a core to spare, the
// guest's thread is what a command's speed depends on (V8's GC helpers and libuv's pool run
// beside it); the process figure is what it costs the host in all.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const here = fileURLToPath(new URL('..', import.meta.url));
const guests = (process.argv[2] ?? 'bench-timer,seq').split(',');
const trees = [['this', here], ...(process.argv[3] ? [['base', resolve(process.argv[3])]] : [])];
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5);
const dir = mkdtempSync(join(tmpdir(), 'ftvm-bench-record-cpu-'));
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const say = (s) => process.stderr.write(`${s}\n`);
const TICK_MS = 1000 / Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim());
/** CPU ms of this process's main thread (user + system), from /proc. */
const threadMs = () => {
  const stat = readFileSync(`/proc/self/task/${process.pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) * TICK_MS;
};
const load = () => loadavg().map((x) => x.toFixed(1)).join(' ');

const cmds = {};
for (const [name, tree] of trees) {
  const mod = (c) => import(pathToFileURL(join(tree, `dist/runtime/commands/${c}.js`)).href);
  cmds[name] = { run: (await mod('run')).command, record: (await mod('record')).command };
}

/** CPU ms of one command call; throws on a non-zero exit. Its stderr (stats, summary) is kept quiet. */
async function cpuOf(cmd, argv) {
  const write = process.stderr.write;
  let err = '';
  process.stderr.write = (s) => { err += s; return true; };
  const t0 = threadMs();
  const c0 = process.cpuUsage();
  let code;
  try {
    code = await cmd.run(argv);
  } finally {
    process.stderr.write = write;
  }
  const c = process.cpuUsage(c0);
  const thread = threadMs() - t0;
  if (code !== 0) throw new Error(`${argv.join(' ')}: exit ${code}\n${err}`);
  return { ms: (c.user + c.system) / 1000, thread, err };
}

say(`machine: ${cpus().length} CPUs, node ${process.version}, load average ${load()}; ${ROUNDS} rounds`);
for (const guest of guests) {
  const res = Object.fromEntries(trees.map(([name]) => [name, { run: [], record: [], ratio: [], trun: [], trecord: [], tratio: [], summary: '' }]));
  const elf = (tree) => join(tree, 'guests', guest, `${guest}.elf`);
  for (let i = -1; i < ROUNDS; i++) {
    for (const [name, tree] of trees) {
      const log = join(dir, `${guest}-${name}.log`);
      const doRun = () => cpuOf(cmds[name].run, ['--stats', elf(tree)]);
      const doRecord = () => cpuOf(cmds[name].record, [elf(tree), '--log', log, ...(process.env.BENCH_RECORD_ARGS?.split(' ').filter(Boolean) ?? [])]);
      let run, rec;
      if (i % 2 === 0) { run = await doRun(); rec = await doRecord(); } else { rec = await doRecord(); run = await doRun(); }
      if (i < 0) continue; // warm-up: module loading and V8's first compiles
      const r = res[name];
      r.run.push(run.ms);
      r.record.push(rec.ms);
      r.ratio.push(run.ms / rec.ms);
      r.trun.push(run.thread);
      r.trecord.push(rec.thread);
      r.tratio.push(run.thread / rec.thread);
      r.summary = /log .*/.exec(rec.err)?.[0] ?? '';
    }
  }
  say(`== ${guest} (load average ${load()})`);
  for (const [name, tree] of trees) {
    const r = res[name];
    say(`${name} (${tree}): CPU ms run median ${median(r.run).toFixed(0)}, record median ${median(r.record).toFixed(0)}; ` +
      `run/record per round median ${median(r.ratio).toFixed(3)} (${r.ratio.map((x) => x.toFixed(2)).join(' ')}); ${r.summary}`);
    say(`${name} guest thread: CPU ms run median ${median(r.trun).toFixed(0)}, record median ${median(r.trecord).toFixed(0)}; ` +
      `run/record per round median ${median(r.tratio).toFixed(3)} (${r.tratio.map((x) => x.toFixed(2)).join(' ')})`);
  }
}
rmSync(dir, { recursive: true, force: true });
