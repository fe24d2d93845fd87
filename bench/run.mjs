// `npm run bench`: interpreter speed of ftvm on the bench guest, and QEMU's on the same image
// when qemu-system-riscv32 is installed. Median of RUNS runs each. Needs `npm run build` first.
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

function ftvmOnce() {
  const t0 = process.hrtime.bigint();
  const out = execFileSync(process.execPath, [join(root, 'bench/ftvm-child.mjs'), elf], { encoding: 'utf8' });
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

const runs = Array.from({ length: RUNS }, ftvmOnce);
const instructions = runs[0].instructions;
if (runs.some((r) => r.instructions !== instructions || r.reason !== 'halt')) {
  console.error('bench: runs disagree on the instruction count; the guest is not deterministic', runs);
  process.exit(1);
}
const ftvmSec = median(runs.map((r) => r.seconds));
const ftvmMips = instructions / ftvmSec / 1e6;
const ftvmWall = median(runs.map((r) => r.wall));
const ftvmMipsWall = instructions / ftvmWall / 1e6;
console.log(`ftvm: ${instructions} instructions, ${fmt(ftvmSec, 3)} s running (${fmt(ftvmMips)} MIPS), ${fmt(ftvmWall, 3)} s wall with Node start-up (${fmt(ftvmMipsWall)} MIPS), peak RSS ${fmt(median(runs.map((r) => r.maxRssMiB)))} MiB`);

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
