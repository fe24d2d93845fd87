// `npm run bench:ft`: the cost of fault tolerance in one process (DESIGN §6): FT on vs off on
// the bench guest under a 1 kHz timer, log bytes per 1000 instructions, output-rule delay,
// and failover time (kill -> first output from the new primary). Needs `npm run build`.
// Each measurement is taken with the backup in the primary's thread and in a worker thread
// (`backupIn: 'worker'`, the other core). The worker's boot (before start()) is timed apart.
import { readdirSync, readFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';

const root = fileURLToPath(new URL('..', import.meta.url));
const dist = (p) => import(join(root, 'dist/runtime', p));
const { Machine } = await dist('machine.js');
const { LiveEnv } = await dist('env/live.js');
const { runMachine } = await dist('runner.js');
const { createPair } = await dist('pair.js');
const { SeqChecker } = await dist('demo/seq-checker.js');

const RUNS = Number(process.env.BENCH_RUNS ?? 3);
// BENCH_SUSPECT_MS=3000: longer failure-detection timeouts for the ratio runs, so that on a loaded
// host a worker pair is not split by a spurious failover (which leaves the primary alone and the
// ratio meaningless); the failover runs keep the defaults.
const SUSPECT_MS = Number(process.env.BENCH_SUSPECT_MS ?? 0);
const ratioTiming = SUSPECT_MS > 0 ? { timing: { suspectMs: SUSPECT_MS, confirmMs: SUSPECT_MS / 2, suspectMaxMs: 2 * SUSPECT_MS } } : {};
const FAILOVERS = Number(process.env.BENCH_FAILOVERS ?? 9);
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const image = (g) => readFileSync(join(root, 'guests', g, `${g}.elf`));
const benchImage = image(process.argv[2] ?? 'bench-timer');

/**
 * CPU time and run-queue wait of each thread of this process, ms (/proc/self/task/N/schedstat):
 * they say whether a side did more work or only waited for a core, which wall time cannot.
 */
function threadTimes() {
  const out = new Map();
  for (const t of readdirSync('/proc/self/task')) {
    try {
      const [run, wait] = readFileSync(`/proc/self/task/${t}/schedstat`, 'utf8').split(' ').map(Number);
      out.set(Number(t), { cpu: run / 1e6, wait: wait / 1e6 });
    } catch {
      // A thread that ended meanwhile.
    }
  }
  return out;
}
/** This thread's and the busiest other thread's (the backup worker's) CPU and wait since `before`. */
function threadsSince(before) {
  const now = threadTimes();
  const main = { cpu: now.get(process.pid).cpu - before.get(process.pid).cpu, wait: now.get(process.pid).wait - before.get(process.pid).wait };
  let other = { cpu: 0, wait: 0 };
  for (const [t, b] of before) {
    const a = now.get(t);
    if (t === process.pid || !a) continue;
    if (a.cpu - b.cpu > other.cpu) other = { cpu: a.cpu - b.cpu, wait: a.wait - b.wait };
  }
  return { main, other };
}

async function solo() {
  const m = new Machine({ env: new LiveEnv() });
  m.loadElf(benchImage);
  const before = threadTimes();
  const t0 = performance.now();
  const r = await runMachine(m, {});
  return { icount: r.icount, seconds: (performance.now() - t0) / 1000, threads: threadsSince(before) };
}

async function pairRun(backupIn = 'thread') {
  const b0 = performance.now();
  const pair = createPair({ image: benchImage, backupIn, ...ratioTiming });
  await pair.ready();
  const bootMs = performance.now() - b0;
  const before = threadTimes();
  const t0 = performance.now();
  await pair.start();
  const seconds = (performance.now() - t0) / 1000;
  const threads = threadsSince(before);
  const s = pair.stats();
  return { icount: s.primary.icount, seconds, logBytes: s.logBytes, delay: s.primary.outputDelay, bootMs, failovers: s.generation - 1, threads };
}

async function failover(seed, backupIn = 'thread') {
  const pair = createPair({ image: image('seq-short'), backupIn });
  const checker = new SeqChecker();
  const killLine = 5 + (seed * 7) % 40;
  let killedAt, firstNew;
  pair.outputs$.subscribe((o) => {
    checker.accept(o);
    if (killedAt !== undefined && firstNew === undefined && o.node === 'backup') firstNew = performance.now();
    if (killedAt === undefined && checker.lines >= killLine) {
      killedAt = performance.now();
      pair.kill('primary');
    }
  });
  await pair.start();
  if (!checker.ok) throw new Error(`failover run ${seed} lost output: ${checker.errors.join('; ')}`);
  return firstNew - killedAt;
}

const offs = [], ons = [], logs = [], delays = [];
for (let i = 0; i < RUNS; i++) {
  const off = await solo();
  const on = await pairRun();
  offs.push(off.icount / off.seconds / 1e6);
  ons.push(on.icount / on.seconds / 1e6);
  logs.push((on.logBytes * 1000) / on.icount);
  delays.push(on.delay.p50Ms * 1000);
}
const fo = [];
for (let i = 0; i < FAILOVERS; i++) fo.push(await failover(i));

// The backup in a worker thread: off and on alternate so load changes hit both alike.
const wOffs = [], wOns = [], wLogs = [], wDelays = [], wBoots = [], wFalse = [], wCpu = [];
for (let i = 0; i < RUNS; i++) {
  const off = await solo();
  const on = await pairRun('worker');
  // CPU per instruction of each side against the guest alone (ns), and the wait for a core.
  const per = (ms, icount) => (ms * 1e6) / icount;
  if (on.failovers === 0) wCpu.push({ solo: per(off.threads.main.cpu, off.icount), primary: per(on.threads.main.cpu, on.icount), backup: per(on.threads.other.cpu, on.icount), soloWait: off.threads.main.wait, primaryWait: on.threads.main.wait, backupWait: on.threads.other.wait });
  wOffs.push(off.icount / off.seconds / 1e6);
  wOns.push(on.icount / on.seconds / 1e6);
  wLogs.push((on.logBytes * 1000) / on.icount);
  wDelays.push(on.delay.p50Ms * 1000);
  wBoots.push(on.bootMs);
  wFalse.push(on.failovers);
}
// A run that loses output is counted, not fatal, so the timings of the others still print:
// see the report line (a go-live on a guest that had already halted, primary-node.ts).
const wFo = [], wLost = [];
for (let i = 0; i < FAILOVERS; i++) {
  try {
    wFo.push(await failover(i, 'worker'));
  } catch (e) {
    wLost.push(i);
  }
}
const wRatios = wOns.map((on, i) => on / wOffs[i]);

const ratios = ons.map((on, i) => on / offs[i]);
console.log(`machine: ${cpus().length} x ${cpus()[0]?.model ?? '?'}, node ${process.version}, load average at the end ${loadavg().map((x) => x.toFixed(1)).join(' ')}`);
console.log(`FT off: ${median(offs).toFixed(1)} MIPS; FT on (primary + backup in one thread): ${median(ons).toFixed(1)} MIPS; ratio ${median(ratios).toFixed(3)} (runs: ${ratios.map((r) => r.toFixed(3)).join(', ')})`);
console.log(`log: ${median(logs).toFixed(3)} bytes per 1000 instructions`);
console.log(`output-rule delay p50: ${median(delays).toFixed(1)} us`);
if (fo.length) console.log(`failover (kill -> first output of the new primary), ${FAILOVERS} runs: median ${median(fo).toFixed(1)} ms, max ${Math.max(...fo).toFixed(1)} ms`);
console.log(`FT off: ${median(wOffs).toFixed(1)} MIPS; FT on (backup in a worker thread): ${median(wOns).toFixed(1)} MIPS; ratio ${median(wRatios).toFixed(3)} (runs: ${wRatios.map((r) => r.toFixed(3)).join(', ')})`);
console.log(`  worker: log ${median(wLogs).toFixed(3)} bytes per 1000 instructions; output-rule delay p50 ${median(wDelays).toFixed(1)} us; backup boot ${median(wBoots).toFixed(0)} ms (before start, not in the ratio); runs where the primary lost its backup: ${wFalse.filter((f) => f > 0).length}`);
if (wFo.length) console.log(`  worker: failover, ${wFo.length} runs: median ${median(wFo).toFixed(1)} ms, max ${Math.max(...wFo).toFixed(1)} ms; runs that LOST output: ${wLost.length}${wLost.length ? ` (seeds ${wLost.join(', ')})` : ''}`);
// What wall time hides: each side's CPU time per instruction against the guest alone (a side that
// needs more CPU per instruction than the guest alone cannot keep a 1.0 ratio even with a core of
// its own), and how long each waited in the run queue for a core (schedstat; runs that failed over left out).
if (wCpu.length) {
  const med = (k) => median(wCpu.map((c) => c[k]));
  console.log(`  worker: CPU per instruction, median of ${wCpu.length}: alone ${med('solo').toFixed(2)} ns; primary thread ${med('primary').toFixed(2)} ns (x${median(wCpu.map((c) => c.primary / c.solo)).toFixed(2)}), backup worker ${med('backup').toFixed(2)} ns (x${median(wCpu.map((c) => c.backup / c.solo)).toFixed(2)}); run-queue wait alone ${med('soloWait').toFixed(0)} ms, primary ${med('primaryWait').toFixed(0)} ms, backup ${med('backupWait').toFixed(0)} ms`);
}
