// Why a primary's CPU batches end, and what each costs in chart events and event-loop turns
// (issue 14, eighth pass):
//   node bench/primary-batches.mjs [checkout ...]
// For each checkout (default: this one; name a baseline worktree of main beside it), ROUNDS
// (default 2) alternated runs of bench-timer as `createPair({ backupIn: 'worker' })` (long
// suspicion: a run on a loaded host must not fail over), each a child process of its own with
// bench/primary-exits-preload.mjs. Prints, for the primary's thread: slices (Machine.step) by
// why they ended, CPU batches (`cpu.batchEnded`) by the exit they report, chart events (all
// actors of the thread: the CPU chart, the primary chart, the channel's), setImmediate turns
// and microtasks, per run and per million instructions; and the primary's own stats line
// (batches, events into the primary chart). Counts only: the wrappers cost CPU.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const self = fileURLToPath(import.meta.url);
const here = fileURLToPath(new URL('..', import.meta.url));
const preload = fileURLToPath(new URL('./primary-exits-preload.mjs', import.meta.url));
const GUEST = process.env.BENCH_GUEST ?? 'bench-timer';

if (process.argv[2] === '--child') {
  const dir = process.argv[3];
  const image = readFileSync(join(dir, 'guests', GUEST, `${GUEST}.elf`));
  const { createPair } = await import(join(dir, 'dist/runtime/pair.js'));
  const pair = createPair({ image, backupIn: 'worker', timing: { suspectMs: 5000, confirmMs: 2500, suspectMaxMs: 10000 } });
  await pair.ready();
  await pair.start();
  const st = pair.stats();
  process.stdout.write(JSON.stringify({ failovers: st.generation - 1, primary: st.primary }) + '\n');
  process.exit(0);
}

const trees = process.argv.slice(2).map((p) => resolve(p));
if (trees.length === 0) trees.push(here);
const rounds = Number(process.env.ROUNDS ?? 2);
console.log(`${GUEST}, worker pair, ${rounds} rounds, load average at the start ${loadavg().map((x) => x.toFixed(1)).join(' ')}`);
const per = (n, instr) => (n / (instr / 1e6)).toFixed(2);
for (let r = 1; r <= rounds; r++) {
  for (const tree of trees) {
    const tmp = mkdtempSync(join(tmpdir(), 'primaryslices-exits-'));
    try {
      const out = execFileSync(process.execPath, ['--import', preload, self, '--child', tree], {
        env: { ...process.env, FTVM_EXITS_DIR: tmp, FTVM_EXITS_ROOT: tree },
        encoding: 'utf8',
      });
      const res = JSON.parse(out.trim().split('\n').pop());
      const [file] = readdirSync(tmp);
      const c = JSON.parse(readFileSync(join(tmp, file), 'utf8'));
      const nb = Object.values(c.batches).reduce((a, b) => a + b, 0);
      const ns = Object.values(c.slices).reduce((a, b) => a + b, 0);
      console.log(`round ${r} ${tree}: ${(c.instructions / 1e6).toFixed(0)} M instructions, failovers ${res.failovers}`);
      console.log(`  slices ${ns} (${per(ns, c.instructions)}/M): ${JSON.stringify(c.slices)}`);
      console.log(`  batches ${nb} (${per(nb, c.instructions)}/M): ${JSON.stringify(c.batches)}; slices per batch ${(ns / nb).toFixed(2)}`);
      console.log(`  chart events ${c.chartEvents} (${per(c.chartEvents, c.instructions)}/M), turns ${c.turns} (${per(c.turns, c.instructions)}/M), microtasks ${c.microtasks} (${per(c.microtasks, c.instructions)}/M)`);
      const p = res.primary;
      console.log(`  primary stats: batches ${p.batches}, primary chart events ${p.chartEvents}, acks ${p.acks}, entries sent ${p.entriesSent}, outputs ${p.outputs}, output delay p50 ${p.outputDelay.p50Ms.toFixed(3)} ms`);
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
  }
}
console.log(`load average at the end ${loadavg().map((x) => x.toFixed(1)).join(' ')}`);
