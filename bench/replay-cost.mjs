// The worker backup's replay against the guest alone, on CPU time (issue 14):
//   node bench/replay-cost.mjs [checkout ...]            CPU per instruction, alternated
//   node bench/replay-cost.mjs counts [checkout ...]     counts per thread (one run each)
// Each run is a child process of its own from the named checkout (default: this one; a
// baseline worktree of main beside it for side by side): `alone` runs bench-timer with the
// live env (`runMachine`), `pair` runs `createPair({ backupIn: 'worker' })` with long
// suspicion timeouts (a run on a loaded host must not fail over). Each thread's CPU time and
// run-queue wait come from its own schedstat (/proc/thread-self), read when it ends, so the
// figures are CPU time, which the other helpers' load moves much less than wall time.
// ROUNDS (default 5) alternations; prints each run and the medians per checkout: ns of CPU
// per instruction for the guest alone, the pair's primary thread and its backup worker, and
// their ratios to the alone run of the same round. `counts` adds bench/replay-counts-preload.mjs
// (slices, stops at inputs, chart events, JIT/interpreter instructions; its wrappers cost CPU,
// so its times are not compared).
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const self = fileURLToPath(import.meta.url);
const here = fileURLToPath(new URL('..', import.meta.url));
const GUEST = process.env.BENCH_GUEST ?? 'bench-timer';

/** This thread's CPU and run-queue wait so far, ms. */
const schedstat = () => {
  const [cpu, wait] = readFileSync('/proc/thread-self/schedstat', 'utf8').trim().split(/\s+/).map(Number);
  return { cpu: cpu / 1e6, wait: wait / 1e6 };
};

async function child(dir, what) {
  const d = (p) => import(join(dir, 'dist/runtime', p));
  const image = readFileSync(join(dir, 'guests', GUEST, `${GUEST}.elf`));
  if (what === 'alone') {
    const { Machine } = await d('machine.js');
    const { LiveEnv } = await d('env/live.js');
    const { runMachine } = await d('runner.js');
    const m = new Machine({ env: new LiveEnv() });
    m.loadElf(image);
    const s0 = schedstat();
    const t0 = performance.now();
    const r = await runMachine(m, {});
    const s1 = schedstat();
    return { icount: r.icount, wallMs: performance.now() - t0, main: { cpu: s1.cpu - s0.cpu, wait: s1.wait - s0.wait } };
  }
  const { createPair } = await d('pair.js');
  const timing = { suspectMs: 5000, confirmMs: 2500, suspectMaxMs: 10000 };
  const pair = createPair({ image, backupIn: 'worker', timing });
  await pair.ready();
  const s0 = schedstat();
  const t0 = performance.now();
  await pair.start();
  const wallMs = performance.now() - t0;
  const s1 = schedstat();
  const st = pair.stats();
  return { icount: st.primary.icount, failovers: st.generation - 1, wallMs, main: { cpu: s1.cpu - s0.cpu, wait: s1.wait - s0.wait } };
}

if (process.argv[2] === '--child') {
  const r = await child(process.argv[3], process.argv[4]);
  process.stdout.write(JSON.stringify(r) + '\n');
  process.exit(0);
}

const counts = process.argv[2] === 'counts';
const dirs = (counts ? process.argv.slice(3) : process.argv.slice(2)).map((p) => resolve(p));
if (dirs.length === 0) dirs.push(here);
const ROUNDS = Number(process.env.ROUNDS ?? (counts ? 1 : 5));
const tmp = mkdtempSync(join(tmpdir(), 'replaycost-counts-'));
const run = (dir, what) => {
  const countsFile = join(tmp, `${Math.random().toString(36).slice(2)}.jsonl`);
  writeFileSync(countsFile, '');
  const args = ['--import', join(here, 'bench/replay-counts-preload.mjs')];
  const out = execFileSync(process.execPath, [...args, self, '--child', dir, what], {
    encoding: 'utf8',
    env: { ...process.env, FTVM_COUNTS_FILE: countsFile, FTVM_COUNTS: counts ? '1' : '0', FTVM_COUNTS_ROOT: dir },
    maxBuffer: 1 << 24,
  });
  const r = JSON.parse(out.trim().split('\n').pop());
  r.counts = readFileSync(countsFile, 'utf8').trim().split('\n').filter(Boolean).map((l) => JSON.parse(l));
  // The backup worker's CPU from its own schedstat, from the pair's start to its outcome.
  const w = r.counts.find((c) => c.thread !== 'main');
  if (w) r.worker = { cpu: w.cpuMs, wait: w.waitMs };
  return r;
};

console.log(`${GUEST}, ${ROUNDS} rounds, load average at the start ${loadavg().map((x) => x.toFixed(1)).join(' ')}`);
const res = new Map(dirs.map((d) => [d, { alone: [], primary: [], backup: [], pr: [], br: [], wall: [] }]));
for (let round = 0; round < ROUNDS; round++) {
  for (const dir of dirs) {
    const a = run(dir, 'alone');
    const p = run(dir, 'pair');
    const ns = (ms, n) => (ms * 1e6) / n;
    const alone = ns(a.main.cpu, a.icount), primary = ns(p.main.cpu, p.icount), backup = ns(p.worker.cpu, p.icount);
    const line = `round ${round + 1} ${dir}: alone ${alone.toFixed(2)} ns/instr (${a.wallMs.toFixed(0)} ms wall, wait ${a.main.wait.toFixed(0)}); pair primary ${primary.toFixed(2)} (x${(primary / alone).toFixed(3)}, wait ${p.main.wait.toFixed(0)}), backup ${backup.toFixed(2)} (x${(backup / alone).toFixed(3)}, wait ${p.worker.wait.toFixed(0)}); wall ratio ${(a.wallMs / p.wallMs).toFixed(3)}${p.failovers ? ` FAILED OVER ${p.failovers}` : ''}`;
    console.log(line);
    if (counts) {
      for (const [what, r] of [['alone', a], ['pair', p]]) for (const c of r.counts) console.log(`  ${what} ${JSON.stringify(c)}`);
    }
    const s = res.get(dir);
    if (!p.failovers) {
      s.alone.push(alone); s.primary.push(primary); s.backup.push(backup);
      s.pr.push(primary / alone); s.br.push(backup / alone); s.wall.push(a.wallMs / p.wallMs);
    }
  }
}
for (const [dir, s] of res) {
  if (!s.alone.length) continue;
  console.log(`median ${dir}: alone ${median(s.alone).toFixed(2)} ns/instr; primary ${median(s.primary).toFixed(2)} (x${median(s.pr).toFixed(3)}); backup ${median(s.backup).toFixed(2)} (x${median(s.br).toFixed(3)}); wall ratio ${median(s.wall).toFixed(3)} (${s.alone.length} runs)`);
}
console.log(`load average at the end ${loadavg().map((x) => x.toFixed(1)).join(' ')}`);
rmSync(tmp, { recursive: true, force: true });
