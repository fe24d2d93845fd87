// `npm run bench`: speed of ftvm on the bench guest (with the JIT, and the interpreter alone:
// FTVM_JIT=0), and QEMU's on the same image when qemu-system-riscv32 is installed. Median of
// RUNS runs each. Needs `npm run build` first.
// BENCH_BASELINE=/other/checkout (built) adds the same rows for that checkout, runs
// interleaved with this one's, for before/after numbers taken side by side in one run.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';

const root = fileURLToPath(new URL('..', import.meta.url));
const RUNS = Number(process.env.BENCH_RUNS ?? 3);
const guest = process.argv[2] ?? 'bench';
const elf = join(root, 'guests', guest, `${guest}.elf`);
const hello = join(root, 'guests/hello/hello.elf');
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const fmt = (n, d = 1) => n.toFixed(d);

if (!existsSync(join(root, 'dist/runtime/machine.js'))) {
  console.error('bench: dist/ is missing; run `npm run build` first');
  process.exit(2);
}

function ftvmOnce(dir, jit) {
  const t0 = process.hrtime.bigint();
  const env = { ...process.env, FTVM_JIT: jit ? '1' : '0' };
  const out = execFileSync(process.execPath, [join(dir, 'bench/ftvm-child.mjs'), elf], { encoding: 'utf8', env });
  return { ...JSON.parse(out), wall: Number(process.hrtime.bigint() - t0) / 1e9 };
}

const hasQemu = spawnSync('sh', ['-c', 'command -v qemu-system-riscv32'], { encoding: 'utf8' }).status === 0;
const hasTime = existsSync('/usr/bin/time');

/** Wall seconds and peak RSS (MiB) of one QEMU run, the way goldens are made (guests/qemu.sh). */
function qemuOnce(image) {
  const args = hasTime ? ['/usr/bin/time', '-f', '%M', 'sh', join(root, 'guests/qemu.sh'), image] : ['sh', join(root, 'guests/qemu.sh'), image];
  const t0 = process.hrtime.bigint();
  const r = spawnSync(args[0], args.slice(1), { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  const rssKiB = hasTime ? Number(r.stderr.trim().split('\n').at(-1)) : NaN;
  return { seconds, maxRssMiB: rssKiB / 1024, status: r.status };
}

const cpuModel = (readFileSync('/proc/cpuinfo', 'utf8').match(/model name\s*:\s*(.*)/) ?? [])[1] ?? cpus()[0]?.model ?? 'unknown';
console.log(`machine: ${cpus().length} CPUs (${cpuModel}), node ${process.version}`);
console.log(`guest: ${guest} (${RUNS} runs each, median)`);

const baseline = process.env.BENCH_BASELINE;
const variants = [
  { name: 'ftvm', dir: root, jit: true },
  { name: 'ftvm interpreter only', dir: root, jit: false },
  ...(baseline ? [{ name: 'baseline', dir: baseline, jit: true }, { name: 'baseline interpreter only', dir: baseline, jit: false }] : []),
];
// Interleaved (A B A B ...) so that a change in host load hits every variant alike.
const results = variants.map(() => []);
for (let r = 0; r < RUNS; r++) variants.forEach((v, i) => results[i].push(ftvmOnce(v.dir, v.jit)));
// A guest under the live timer (bench-timer, irqstress) takes its interrupts at host times, so
// its instruction count varies a little from run to run: MIPS is then taken per run.
const instructions = median(results[0].map((r) => r.instructions));
const deterministic = results.every((runs) => runs.every((r) => r.instructions === results[0][0].instructions));
let ftvmMipsWall = 0;
let ftvmMips = 0;
variants.forEach((v, i) => {
  const runs = results[i];
  if (runs.some((r) => r.reason !== 'halt')) {
    console.error(`bench: ${v.name}: a run did not halt`, runs);
    process.exit(1);
  }
  const n = median(runs.map((r) => r.instructions));
  const sec = median(runs.map((r) => r.seconds));
  const wall = median(runs.map((r) => r.wall));
  const cpu = median(runs.map((r) => r.cpuSeconds ?? NaN));
  const mips = median(runs.map((r) => r.instructions / r.seconds / 1e6));
  const mipsWall = median(runs.map((r) => r.instructions / r.wall / 1e6));
  const mipsCpu = median(runs.map((r) => r.instructions / (r.cpuSeconds ?? NaN) / 1e6));
  if (i === 0) {
    ftvmMipsWall = mipsWall;
    ftvmMips = mips;
  }
  console.log(`${v.name}: ${n} instructions${deterministic ? '' : ' (median; varies with the live timer)'}, ${fmt(sec, 3)} s running (${fmt(mips)} MIPS), ${fmt(wall, 3)} s wall with Node start-up (${fmt(mipsWall)} MIPS), ${fmt(cpu, 3)} s CPU running (${fmt(mipsCpu)} MIPS), peak RSS ${fmt(median(runs.map((r) => r.maxRssMiB)))} MiB`);
  if (baseline) console.log(`  runs (MIPS): ${runs.map((r) => fmt(r.instructions / r.seconds / 1e6)).join(', ')}`);
});
if (baseline) {
  // Runs r of both checkouts ran next to each other: their ratio sees the same host load.
  const rate = (r) => r.instructions / r.seconds;
  const ratios = results[0].map((r, k) => rate(r) / rate(results[2][k]));
  console.log(`ratio ftvm/baseline (JIT), run by run: ${ratios.map((x) => fmt(x, 2)).join(', ')}; median ${fmt(median(ratios), 3)}`);
  // On a shared host the CPU-time ratio is the steadier one (wall time also counts the core
  // given to other processes); instructions per CPU second, run by run.
  const rateCpu = (r) => r.instructions / r.cpuSeconds;
  const ratiosCpu = results[0].map((r, k) => rateCpu(r) / rateCpu(results[2][k]));
  console.log(`ratio ftvm/baseline (JIT, CPU time), run by run: ${ratiosCpu.map((x) => fmt(x, 2)).join(', ')}; median ${fmt(median(ratiosCpu), 3)}`);
}

if (hasQemu) {
  const q = Array.from({ length: RUNS }, () => qemuOnce(elf));
  const startup = median(Array.from({ length: RUNS }, () => qemuOnce(hello).seconds));
  const qSec = median(q.map((r) => r.seconds));
  // QEMU's wall time includes its start-up; hello's wall time estimates that.
  const qMips = instructions / qSec / 1e6;
  console.log(`qemu: ${fmt(qSec, 3)} s wall (hello, i.e. start-up: ${fmt(startup, 3)} s), ${fmt(qMips)} MIPS wall, peak RSS ${fmt(median(q.map((r) => r.maxRssMiB)))} MiB`);
  console.log(`ratio ftvm/qemu, wall to wall: ${fmt(ftvmMipsWall / qMips, 2)}`);
  // Net of start-up only when the run is long enough for the subtraction to mean something.
  if (qSec > 3 * startup) {
    const qMipsNet = instructions / (qSec - startup) / 1e6;
    console.log(`ratio ftvm/qemu, running time (ftvm) to wall net of start-up (qemu, ${fmt(qMipsNet)} MIPS): ${fmt(ftvmMips / qMipsNet, 2)}`);
  }
} else {
  console.log('qemu: qemu-system-riscv32 not installed; skipped');
}
