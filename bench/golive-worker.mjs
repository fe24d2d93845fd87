// `node bench/golive-worker.mjs`: where a go-live's time goes in a pair with a disk and a
// network whose backup runs in a worker (issue 13): the dns scenario of
// test/ft/worker-io-pair.test.ts (kill of the primary under client load), run BENCH_RUNS times
// (default 8, seeds 7, 8, ...), with BENCH_BUSY busy-loop children (default 0) loading the
// host meanwhile. Needs `npm run build`.
//   per run: kill → first answer of the new primary (the scenario's failover time); kill →
//   the worker live (main thread); the worker's go-live phases, in ms after its suspicion
//   (claim won, replay of the rest done, I/O released by the main thread, disk locked, ports
//   bound, first new answer released); answers in the 500 ms after the first; the checker.
// Prints one line per run and the medians.
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { median, requireBuilt, root } from './lib/dns.mjs';

// BENCH_ROOT: the tree whose dist/ to run (a baseline worktree of main, side by side).
requireBuilt('dist/runtime/demo/dns-load.js');
const { dnsScenario, runScenario } = await import(join(root, 'dist/runtime/demo/dns-load.js'));
const runs = Number(process.env.BENCH_RUNS ?? 8);
const busy = Number(process.env.BENCH_BUSY ?? 0);
const afterFailoverMs = Number(process.env.BENCH_AFTER_MS ?? 500);
// BENCH_TEST=1: each run is test/ft/worker-io-pair.test.ts's dns case: seed 7, and when the
// pair lost its protection before the kill moment (a tree that says so), the next seed, up to 4.
const asTest = process.env.BENCH_TEST === '1';
// The test's suspicion timing by default; BENCH_SUSPECT_MS / BENCH_CONFIRM_MS to try others.
const pair = { backupIn: 'worker', timing: { suspectMs: Number(process.env.BENCH_SUSPECT_MS ?? 400), confirmMs: Number(process.env.BENCH_CONFIRM_MS ?? 100) } };

const loops = [];
for (let i = 0; i < busy; i++) loops.push(spawn(process.execPath, ['-e', 'for(;;){}'], { stdio: 'ignore' }));
const stopLoops = () => { for (const c of loops) if (c.exitCode === null) process.kill(c.pid, 'SIGKILL'); };
process.on('exit', stopLoops);

const f = (x) => (x === undefined ? 'n/a' : x.toFixed(0));

const rows = [];
console.log(`tree ${root}, ${asTest ? 'as the test' : 'one scenario per run'}, ${runs} runs, busy loops ${busy}, suspicion ${pair.timing.suspectMs} + ${pair.timing.confirmMs} ms`);
try {
  for (let i = 0; i < runs; i++) {
    let seed = asTest ? 7 : 7 + i;
    let r = await runScenario(dnsScenario, { seed, afterFailoverMs, pair });
    const skipped = [];
    while (asTest && !r.killed && r.unprotectedBeforeKill !== undefined && skipped.length < 3) {
      skipped.push(`seed ${seed}: ${r.check.ok && r.lostOutputs === 0 ? 'safe' : 'UNSAFE'}, ${r.unprotectedBeforeKill}`);
      r = await runScenario(dnsScenario, { seed: ++seed, afterFailoverMs, pair });
    }
    const killed = r.events.find((e) => e.node === 'pair' && e.type === 'killed');
    const failover = r.events.find((e) => e.node === 'pair' && e.type === 'failover');
    const line = r.events.find((e) => e.node === 'backup' && e.detail.startsWith('go-live phases'));
    const phases = {};
    for (const m of (line?.detail ?? '').replace(/^[^:]*: /, '').split(', ')) {
      const p = /^(.*) (-?[\d.]+)$/.exec(m);
      if (p) phases[p[1]] = Number(p[2]);
    }
    const tookOver = r.events.some((e) => e.node === 'backup' && /^took over disk file:.*\.img and the service ports in/.test(e.detail));
    const pass = r.killed && r.failovers === 1 && r.lostOutputs === 0 && r.answeredBefore > 0 && r.answeredAfter > 0 && r.check.ok && tookOver && (r.released.backup?.net ?? 0) > 0;
    const row = {
      seed,
      pass,
      failoverMs: r.failoverMs,
      liveMs: killed && failover ? failover.atMs - killed.atMs : undefined,
      phases,
      answeredAfter: r.answeredAfter,
      load: Number((await import('node:os')).loadavg()[0].toFixed(1)),
      check: r.check.lines.join('; '),
    };
    rows.push(row);
    if (skipped.length > 0) console.log(`run ${i + 1}: not killed (failed over before the kill): ${skipped.join('; ')}`);
    console.log(`run ${i + 1} seed ${seed}: ${pass ? 'PASS' : 'FAIL'}${r.killed ? '' : ` (not killed: ${r.unprotectedBeforeKill ?? '?'})`}, kill → first answer ${f(row.failoverMs)} ms, kill → worker live ${f(row.liveMs)} ms, ` +
      `answered after ${row.answeredAfter}, load ${row.load}; ${line?.detail ?? 'no go-live phases line'}; ${row.check}` +
      (pass ? '' : `\n  ${r.check.errors.slice(0, 4).join('\n  ')}` +
        `\n  events: ${r.events.filter((e) => e.node !== 'primary' || e.type !== 'state').map((e) => `${e.node} ${e.type} ${e.detail}${e.atMs === undefined ? '' : ` @${e.atMs.toFixed(0)}`}`).join('\n    ')}`));
  }
} finally {
  stopLoops();
}
const steps = [...new Set(rows.flatMap((r) => Object.keys(r.phases)))];
console.log(`medians over ${rows.length} runs (busy loops ${busy}): passed ${rows.filter((r) => r.pass).length}/${rows.length}, ` +
  `kill → first answer ${f(median(rows.map((r) => r.failoverMs)))} ms, kill → worker live ${f(median(rows.map((r) => r.liveMs)))} ms; ` +
  `phases after suspicion: ${steps.map((s) => `${s} ${f(median(rows.map((r) => r.phases[s])))}`).join(', ')}`);
