// Seeking (`ftvm replay --until`) in CPU time, trees side by side in one process:
//   node bench/seek-cpu.mjs [guests] [tree...] > /dev/null      (results on stderr)
// guests: comma-separated (default bench-timer,seq); trees: built checkouts (default: this
// one). Each tree records its own log of each guest with its own `record` (in this process),
// then every round seeks each tree's log with that tree's `replay --until` to the same
// targets (BENCH_TARGETS, comma-separated icounts; default 7 spread over the run), trees in
// turn, the order reversed every round. Figures: CPU ms of this process's main thread (where
// the seek runs; /proc, 10 ms ticks) and of the whole process, per seek, median over rounds
// and targets; every seek must exit 0. Start-up (Node, modules) is out of the figures: a
// warm-up seek of each tree loads its modules first.
// Env: BENCH_ROUNDS (3), BENCH_CROSS=1 also seeks the first tree's log with every tree
// (the same bytes read by each build).
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { cpus, loadavg, tmpdir } from 'node:os';
import { fileURLToPath, pathToFileURL } from 'node:url';

const here = fileURLToPath(new URL('..', import.meta.url));
const guests = (process.argv[2] ?? 'bench-timer,seq').split(',');
const trees = (process.argv.length > 3 ? process.argv.slice(3) : [here]).map((t) => resolve(t));
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const dir = mkdtempSync(join(tmpdir(), 'ftvm-bench-seek-'));
const say = (s) => process.stderr.write(`${s}\n`);
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const TICK_MS = 1000 / Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim());
const threadMs = () => {
  const stat = readFileSync(`/proc/self/task/${process.pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) * TICK_MS;
};

const cmds = [];
for (const tree of trees) {
  const mod = async (c) => (await import(pathToFileURL(join(tree, `dist/runtime/commands/${c}.js`)).href)).command;
  cmds.push({ tree, record: await mod('record'), replay: await mod('replay') });
}

/** Runs a command quietly; returns its stderr; throws on a non-zero exit. */
async function call(cmd, argv) {
  const write = process.stderr.write;
  let err = '';
  process.stderr.write = (s) => { err += s; return true; };
  let code;
  try {
    code = await cmd.run(argv);
  } finally {
    process.stderr.write = write;
  }
  if (code !== 0) throw new Error(`${argv.join(' ')}: exit ${code}\n${err}`);
  return err;
}

say(`machine: ${cpus().length} CPUs, node ${process.version}, load average ${loadavg()[0].toFixed(1)}; ${ROUNDS} rounds`);
for (const guest of guests) {
  const elf = (tree) => join(tree, 'guests', guest, `${guest}.elf`);
  const logs = [];
  let icount = 0;
  for (const [i, c] of cmds.entries()) {
    const log = join(dir, `${guest}-${i}.log`);
    const err = await call(c.record, [elf(c.tree), '--log', log]);
    icount = Number(/icount (\d+)/.exec(err)[1]);
    logs.push(log);
  }
  const targets = process.env.BENCH_TARGETS?.split(',').map(Number) ??
    [1, 2, 3, 4, 5, 6, 7].map((k) => Math.floor((icount * k) / 8) + 1_234_567 * k);
  // Each tree seeks its own log; with BENCH_CROSS, also the first tree's.
  const jobs = cmds.map((c, i) => ({ name: `tree ${i} own log`, c, log: logs[i] }));
  if (process.env.BENCH_CROSS) for (const [i, c] of cmds.entries()) if (i > 0) jobs.push({ name: `tree ${i} on tree 0's log`, c, log: logs[0] });
  const res = new Map(jobs.map((j) => [j, { thread: [], proc: [] }]));
  for (const j of jobs) await call(j.c.replay, [elf(j.c.tree), '--log', j.log, '--until', String(targets[0])]);
  for (let r = 0; r < ROUNDS; r++) {
    const order = r % 2 ? [...jobs].reverse() : jobs;
    for (const t of targets) {
      for (const j of order) {
        const t0 = threadMs();
        const c0 = process.cpuUsage();
        await call(j.c.replay, [elf(j.c.tree), '--log', j.log, '--until', String(t)]);
        const c = process.cpuUsage(c0);
        res.get(j).thread.push(threadMs() - t0);
        res.get(j).proc.push((c.user + c.system) / 1000);
      }
    }
  }
  say(`== ${guest}: ${targets.length} targets (${targets.map((t) => `${(t / 1e6).toFixed(1)}M`).join(' ')}), load average ${loadavg()[0].toFixed(1)}`);
  for (const j of jobs) {
    const r = res.get(j);
    say(`${j.name} (${j.c.tree}): seek CPU ms, main thread median ${median(r.thread).toFixed(0)}, sum ${r.thread.reduce((a, b) => a + b, 0).toFixed(0)}; process median ${median(r.proc).toFixed(0)}, sum ${r.proc.reduce((a, b) => a + b, 0).toFixed(0)}`);
  }
}
rmSync(dir, { recursive: true, force: true });
