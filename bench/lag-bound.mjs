// A backup on a slow host, then kill -9 of the primary: how far the backup's replay lagged,
// and so how long the failover waited for it. Not a test: prints numbers.
//   node bench/lag-bound.mjs [TREE ...]     (each tree built: `npm run build`; default: this one)
// The backup runs BENCH_RUN_MS (default 10) of every BENCH_RUN_MS + BENCH_STOP_MS (default 20)
// ms (SIGSTOP / SIGCONT from here): a backup host three times slower than its primary's. While
// it runs it reads its socket and acks, so acking on receipt lets its replay fall behind by
// about two thirds of the time run. The guest is guests/bench (CPU-bound: its replay costs
// what its run cost). The primary is killed BENCH_KILL_MS (default 400) after its backup
// attached; measured, from the backup's own log: the replay after its claim was won (the
// backlog: `goingLive` -> `live`), and kill -> live; and that every line of the guest's
// output reached a client (the primary's or the backup's stdout; `ftvm run`'s lines). With
// several trees the runs alternate, tree by tree, BENCH_RUNS (default 3) rounds.
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

const here = fileURLToPath(new URL('..', import.meta.url));
const trees = process.argv.length > 2 ? process.argv.slice(2).map((t) => resolve(t)) : [here];
const RUNS = Number(process.env.BENCH_RUNS ?? 3);
const KILL_MS = Number(process.env.BENCH_KILL_MS ?? 400);
const RUN_MS = Number(process.env.BENCH_RUN_MS ?? 10);
const STOP_MS = Number(process.env.BENCH_STOP_MS ?? 20);
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
  const elf = join(tree, process.env.BENCH_GUEST ?? 'guests/bench/bench.elf');
  const arb = mkdtempSync(join(dir, 'arb-'));
  const common = ['--key-file', key, '--arbiter', `file:${arb}`, '--pair-id', `lag${i}`];
  const pErr = [], pOut = [], bErr = [], bOut = [];
  const p = spawn(process.execPath, [cli, 'primary', elf, '--listen', '127.0.0.1:0', ...common], { stdio: ['ignore', 'pipe', 'pipe'] });
  lines(p.stdout, pOut);
  lines(p.stderr, pErr);
  let port;
  for (const until = performance.now() + 20_000; !port; await new Promise((r) => setTimeout(r, 10))) {
    if (performance.now() > until) throw new Error(`primary did not listen: ${pErr.map((x) => x.l).join('\n')}`);
    for (const { l } of pErr) port ??= Number(/ primary listening [^ ]+:(\d+) /.exec(l)?.[1]) || undefined;
  }
  const b = spawn(process.execPath, [cli, 'backup', elf, '--connect', `127.0.0.1:${port}`, ...common], { stdio: ['ignore', 'pipe', 'pipe'] });
  lines(b.stdout, bOut);
  lines(b.stderr, bErr);
  const bExit = new Promise((r) => b.once('exit', r));
  const pExit = new Promise((r) => p.once('exit', r));
  for (const until = performance.now() + 20_000; !pErr.some(({ l }) => / backup attached /.test(l)); await new Promise((r) => setTimeout(r, 5))) {
    if (performance.now() > until) throw new Error('no backup attached');
  }
  // The slow host: stopped, then let run, until the kill.
  let slow = true;
  const duty = (async () => {
    while (slow) {
      b.kill('SIGSTOP');
      await new Promise((r) => setTimeout(r, STOP_MS));
      b.kill('SIGCONT');
      await new Promise((r) => setTimeout(r, RUN_MS));
    }
  })();
  await new Promise((r) => setTimeout(r, KILL_MS));
  slow = false;
  await duty;
  const linesBefore = pOut.length;
  const killedAt = performance.now();
  p.kill('SIGKILL');
  await pExit;
  await bExit;
  const at = (re) => bErr.find(({ l }) => re.test(l));
  const clock = (x) => Number(/^\[([\d.]+)\]/.exec(x?.l ?? '')?.[1]) * 1000;
  const won = at(/ state "goingLive"/), live = at(/ state "live"/);
  const expected = new Set(execFileSync(process.execPath, [cli, 'run', elf], { encoding: 'utf8' }).trimEnd().split('\n'));
  const got = new Set([...pOut, ...bOut].map(({ l }) => l));
  const missing = [...expected].filter((l) => !got.has(l)).length;
  return { drainMs: clock(live) - clock(won), liveMs: (live?.at ?? NaN) - killedAt, linesBefore, missing };
}

console.log(`lag-bound: backup runs ${RUN_MS} ms of every ${RUN_MS + STOP_MS}, kill -9 ${KILL_MS} ms after attach, ${RUNS} rounds, load ${loadavg()[0].toFixed(1)}`);
const results = new Map(trees.map((t) => [t, []]));
for (let r = 0; r < RUNS; r++) {
  for (const t of trees) {
    const x = await once(t, `${r}`);
    results.get(t).push(x);
    console.log(`  ${t} round ${r}: replay after the claim ${x.drainMs.toFixed(0)} ms, kill -> live ${x.liveMs.toFixed(0)} ms; lines before the kill ${x.linesBefore}, lines missing ${x.missing}`);
  }
}
for (const [t, xs] of results) {
  console.log(`${t}: replay after the claim median ${median(xs.map((x) => x.drainMs)).toFixed(0)} ms (${xs.map((x) => x.drainMs.toFixed(0)).join(', ')}); kill -> live median ${median(xs.map((x) => x.liveMs)).toFixed(0)} ms; lines missing ${xs.reduce((n, x) => n + x.missing, 0)}; load ${loadavg()[0].toFixed(1)}`);
}
rmSync(dir, { recursive: true, force: true });
