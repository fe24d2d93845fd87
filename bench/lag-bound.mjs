// A backup on a slow host, then kill -9 of the primary: how far the backup's replay lagged,
// and so how long the failover waited for it. Not a test: prints numbers.
//   node bench/lag-bound.mjs [TREE ...]     (each tree built: `npm run build`; default: this one)
// Both processes share core 0 (`taskset -c 0`), the backup at `nice -n 19`: while the primary
// computes, the backup gets a sliver of the core, as a backup host far slower than its primary
// would. The guest is seq-long (console lines). The primary is killed BENCH_KILL_MS (default
// 2000) after its backup attached; measured: kill -> the first console line of the backup gone
// live (detection + the replay of the backlog + go-live), and lines lost (must be 0). With
// several trees the runs alternate, tree by tree, BENCH_RUNS (default 3) rounds.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

const here = fileURLToPath(new URL('..', import.meta.url));
const trees = process.argv.length > 2 ? process.argv.slice(2).map((t) => resolve(t)) : [here];
const RUNS = Number(process.env.BENCH_RUNS ?? 3);
const KILL_MS = Number(process.env.BENCH_KILL_MS ?? 2000);
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const dir = mkdtempSync(join(tmpdir(), 'ftvm-bench-lag-'));
const key = join(dir, 'key');
writeFileSync(key, 'cd'.repeat(32));

/** Lines of a child's stream as they come, each with its arrival time. */
function lines(stream, into) {
  createInterface({ input: stream }).on('line', (l) => into.push({ l, at: performance.now() }));
}

async function once(tree, i) {
  const cli = join(tree, 'bin/ftvm.js');
  const elf = join(tree, 'guests/seq-long/seq-long.elf');
  const arb = mkdtempSync(join(dir, 'arb-'));
  const common = ['--key-file', key, '--arbiter', `file:${arb}`, '--pair-id', `lag${i}`];
  const pErr = [], pOut = [], bErr = [], bOut = [];
  // taskset and nice exec node: the PID is the node process.
  const p = spawn('taskset', ['-c', '0', process.execPath, cli, 'primary', elf, '--listen', '127.0.0.1:0', ...common], { stdio: ['ignore', 'pipe', 'pipe'] });
  lines(p.stdout, pOut);
  lines(p.stderr, pErr);
  let port;
  for (const until = performance.now() + 20_000; !port; await new Promise((r) => setTimeout(r, 10))) {
    if (performance.now() > until) throw new Error(`primary did not listen: ${pErr.map((x) => x.l).join('\n')}`);
    for (const { l } of pErr) port ??= Number(/ primary listening [^ ]+:(\d+) /.exec(l)?.[1]) || undefined;
  }
  const b = spawn('taskset', ['-c', '0', 'nice', '-n', '19', process.execPath, cli, 'backup', elf, '--connect', `127.0.0.1:${port}`, ...common], { stdio: ['ignore', 'pipe', 'pipe'] });
  lines(b.stdout, bOut);
  lines(b.stderr, bErr);
  const bExit = new Promise((r) => b.once('exit', r));
  const pExit = new Promise((r) => p.once('exit', r));
  for (const until = performance.now() + 20_000; !pErr.some(({ l }) => / backup attached /.test(l)); await new Promise((r) => setTimeout(r, 5))) {
    if (performance.now() > until) throw new Error('no backup attached');
  }
  await new Promise((r) => setTimeout(r, KILL_MS));
  const linesBefore = pOut.length;
  const killedAt = performance.now();
  p.kill('SIGKILL');
  await pExit;
  const printed = pOut.length;
  for (const until = performance.now() + 30_000; bOut.length === 0; await new Promise((r) => setTimeout(r, 2))) {
    if (performance.now() > until) break;
  }
  const firstMs = bOut.length ? bOut[0].at - killedAt : NaN;
  await bExit;
  // The guest's lines are numbered from 1: every one must reach a client (primary or backup).
  const seen = new Set([...pOut, ...bOut].map(({ l }) => Number(/^seq (\d+) /.exec(l)?.[1])).filter((n) => Number.isInteger(n)));
  const highest = Math.max(...seen);
  let lost = 0;
  for (let n = 1; n <= highest; n++) if (!seen.has(n)) lost++;
  const phases = bErr.map(({ l }) => l).find((l) => /go-live phases/.test(l)) ?? '';
  return { firstMs, linesBefore, printed, backupLines: bOut.length, lost, highest, phases };
}

console.log(`lag-bound: backup at nice 19 on the primary's core, kill -9 ${KILL_MS} ms after attach, ${RUNS} rounds, load ${loadavg()[0].toFixed(1)}`);
const results = new Map(trees.map((t) => [t, []]));
for (let r = 0; r < RUNS; r++) {
  for (const t of trees) {
    const x = await once(t, `${r}`);
    results.get(t).push(x);
    console.log(`  ${t} round ${r}: kill -> first backup line ${x.firstMs.toFixed(0)} ms; primary printed ${x.printed} lines, backup ${x.backupLines}; lost ${x.lost} (up to line ${x.highest})`);
  }
}
for (const [t, xs] of results) {
  console.log(`${t}: kill -> first line median ${median(xs.map((x) => x.firstMs)).toFixed(0)} ms (${xs.map((x) => x.firstMs.toFixed(0)).join(', ')}); lines the primary printed in ${KILL_MS} ms median ${median(xs.map((x) => x.printed))}; lost ${xs.reduce((n, x) => n + x.lost, 0)}; load ${loadavg()[0].toFixed(1)}`);
}
rmSync(dir, { recursive: true, force: true });
