// Failure detection across processes: the stalls each side sees, and failover time.
//   node bench/detect.mjs          (needs `npm run build`)
// 1. Stalls: primary and backup as `ftvm` processes over loopback TLS on bench-timer (1 kHz
//    timer guest), each with an event-loop delay histogram (bench/eld-preload.mjs), while
//    BENCH_LOAD (default 0: the shared host is loaded enough) busy-loop processes add load. Prints the percentiles
//    per side and any failover (there must be none: nobody failed).
// 2. Failover: kill -9 of the primary of a seq pair -> first console byte of the backup gone
//    live (runtime/faults/harness.ts runOnce), BENCH_FAILOVERS runs (default 7).
// Env: BENCH_RUNS (pairs for 1, default 3), BENCH_SUSPECT_MS (default: the CLI's own).
import { spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath, pathToFileURL } from 'node:url';

// BENCH_TREE: run another tree's build (a baseline of main) with this bench's preloads.
const here = fileURLToPath(new URL('..', import.meta.url));
const root = process.env.BENCH_TREE ?? here;
const cli = join(root, 'bin/ftvm.js');
const RUNS = Number(process.env.BENCH_RUNS ?? 3);
const LOAD = Number(process.env.BENCH_LOAD ?? 0);
const FAILOVERS = Number(process.env.BENCH_FAILOVERS ?? 7);
const suspect = process.env.BENCH_SUSPECT_MS;
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const dir = mkdtempSync(join(tmpdir(), 'ftvm-bench-detect-'));
const key = join(dir, 'key');
writeFileSync(key, 'cd'.repeat(32));
const { PROCESS_TIMING } = await import(pathToFileURL(join(root, 'dist/runtime/ft/timing.js')).href);
// BENCH_LINK=1 / BENCH_LINK=0: both nodes (stall pairs and failover runs) get `--heartbeat-link`
// / `--no-heartbeat-link`; unset, the tree's default (off; trees before the fourth detection
// pass do not know --no-heartbeat-link, so leave it unset for a baseline of those).
const link = process.env.BENCH_LINK === '1' ? ['--heartbeat-link'] : process.env.BENCH_LINK === '0' ? ['--no-heartbeat-link'] : [];
const extra = [...(suspect ? ['--suspect-ms', suspect] : []), ...link];
const s = suspect ? Number(suspect) : PROCESS_TIMING.suspectMs;
const c = suspect ? Math.max(1, Math.round(s / 2)) : PROCESS_TIMING.confirmMs;

console.log(`machine: ${cpus().length} CPUs, node ${process.version}, load average ${loadavg().map((x) => x.toFixed(1)).join(' ')}`);
console.log(`detection: suspect ${s} ms + confirm ${c} ms; heartbeat ${PROCESS_TIMING.heartbeatMs} ms`);

/** Busy loops on every core but for the pair's: a loaded host, started and stopped by PID. */
const hogs = Array.from({ length: LOAD }, () => spawn(process.execPath, ['-e', 'for(;;){}'], { stdio: 'ignore' }));

async function pair(elf) {
  const eld = mkdtempSync(join(dir, 'eld-'));
  const gaps = mkdtempSync(join(dir, 'gaps-'));
  const preload = (f) => `--import=${pathToFileURL(join(here, 'bench', f)).href}`;
  const env = { ...process.env, FTVM_ELD_DIR: eld, FTVM_GAPS_DIR: gaps, NODE_OPTIONS: `${preload('eld-preload.mjs')} ${preload('gaps-preload.mjs')}` };
  const arb = mkdtempSync(join(dir, 'arb-'));
  const common = ['--key-file', key, '--arbiter', `file:${arb}`, ...extra];
  const p = spawn(process.execPath, [cli, 'primary', elf, '--listen', '127.0.0.1:0', ...common], { stdio: ['ignore', 'ignore', 'pipe'], env });
  const lines = [];
  const port = await new Promise((resolve, reject) => {
    createInterface({ input: p.stderr }).on('line', (l) => {
      lines.push(l);
      const m = / primary listening [^ ]+:(\d+) /.exec(l);
      if (m) resolve(Number(m[1]));
    });
    // A primary that ends before it listens ends this pair, not the bench.
    p.once('exit', (code) => reject(new Error(`the primary exited (${code}) before listening: ${lines.slice(-2).join(' | ')}`)));
  });
  const b = spawn(process.execPath, [cli, 'backup', elf, '--connect', `127.0.0.1:${port}`, ...common], { stdio: ['ignore', 'ignore', 'pipe'], env });
  createInterface({ input: b.stderr }).on('line', (l) => lines.push(l));
  await Promise.all([new Promise((r) => p.once('exit', r)), new Promise((r) => b.once('exit', r))]);
  const sides = readdirSync(eld).map((f) => JSON.parse(readFileSync(join(eld, f), 'utf8')));
  const traces = readdirSync(gaps).map((f) => JSON.parse(readFileSync(join(gaps, f), 'utf8')));
  return { sides, traces, suspicions: lines.filter((l) => /"suspecting"|"backupSuspect"/.test(l)), failovers: lines.filter((l) => /"claiming"|live at icount/.test(l)) };
}

/** Milliseconds of [a, a + la) covered by the intervals [t, t + l) of `xs` (each [t, l]). */
const covered = (a, la, xs) => xs.reduce((sum, [t, l]) => sum + Math.max(0, Math.min(a + la, t + l) - Math.max(a, t)), 0);
/** The longest interval of `xs` that overlaps [a, a + la), as [t, l], or undefined. */
const longestIn = (a, la, xs) => xs.filter(([t, l]) => t < a + la && t + l > a).sort((x, y) => y[1] - x[1])[0];
const gapStats = { primary: { sent: [], received: [], beatsSent: [], beatsReceived: [] }, backup: { sent: [], received: [], beatsSent: [], beatsReceived: [] } };
const causes = [];

/**
 * Each suspicion of a run where nothing failed, explained: the silence the watching side saw
 * (the gap in what it read from the socket that the suspicion fell in), how much of it the
 * peer sent nothing (the peer's own write gaps), and how much of it each side's event loop
 * was stalled (eld-preload's stalls over 50 ms).
 */
function explain(r, run) {
  const main = (role) => r.traces.find((t) => t.role === role && t.thread === 'main');
  const merged = (role, what) => r.traces.filter((t) => t.role === role).flatMap((t) => t[what]?.gaps ?? []);
  for (const role of ['primary', 'backup']) for (const what of Object.keys(gapStats[role])) gapStats[role][what].push(...merged(role, what).map(([, g]) => g));
  const stalls = (role) => r.sides.find((x) => x.role === role)?.stalls ?? [];
  for (const [watcher, peer, pattern] of [['backup', 'primary', /"suspecting"/], ['primary', 'backup', /"backupSuspect"/]]) {
    const w = main(watcher);
    const p = main(peer);
    if (!w || !p) continue;
    for (const [t, line] of w.lines.filter(([, l]) => pattern.test(l))) {
      // The read gap the suspicion ended (or fell in): the silence as this side saw it.
      const gap = w.received.gaps.filter(([g0, g]) => g0 <= t && g0 + g >= t - 5).sort((x, y) => y[1] - x[1])[0];
      if (!gap) {
        causes.push({ run, watcher, t, silence: 0, peerQuietMs: 0, peerStallMs: 0, ownStallMs: 0, failover: r.failovers.length > 0 });
        continue;
      }
      const [g0] = gap;
      const silence = t - g0;
      const peerQuiet = longestIn(g0, silence, p.sent.gaps);
      // The peer's heartbeat thread, where it has one: did its beats stop too?
      const beatGaps = merged(peer, 'beatsSent');
      const beatQuiet = longestIn(g0, silence, beatGaps);
      causes.push({
        run, watcher, t, silence,
        peerQuietMs: peerQuiet ? Math.round(covered(g0, silence, [peerQuiet])) : 0,
        beatQuietMs: r.traces.some((x) => x.role === peer && x.thread === 'worker') ? (beatQuiet ? Math.round(covered(g0, silence, [beatQuiet])) : 0) : undefined,
        peerStallMs: Math.round(covered(g0, silence, stalls(peer))),
        ownStallMs: Math.round(covered(g0, silence, stalls(watcher))),
        failover: r.failovers.length > 0,
      });
    }
  }
}

try {
  const all = { primary: [], backup: [] };
  let spurious = 0;
  let suspicions = 0;
  const pairsStalls = [];
  for (let i = 0; i < RUNS; i++) {
    let r;
    try {
      r = await pair(join(root, 'guests/bench-timer/bench-timer.elf'));
    } catch (e) {
      console.log(`  run ${i}: no pair (${e.message})`);
      continue;
    }
    for (const side of r.sides) all[side.role]?.push(side);
    const side = (role) => r.sides.find((x) => x.role === role)?.stalls ?? [];
    pairsStalls.push({ primary: side('primary'), backup: side('backup') });
    explain(r, i);
    spurious += r.failovers.length > 0 ? 1 : 0;
    suspicions += r.suspicions.length;
    if (r.failovers.length || r.suspicions.length) console.log(`  run ${i}: ${[...r.suspicions, ...r.failovers].join(' | ')}`);
  }
  const f = (x) => x.toFixed(1);
  console.log(`event-loop delay, bench-timer pair, ${RUNS} runs, ${LOAD} busy processes (ms; worst run's max):`);
  for (const [role, xs] of Object.entries(all)) {
    if (!xs.length) continue;
    console.log(`  ${role.padEnd(7)} p50 ${f(median(xs.map((x) => x.p50)))}  p99 ${f(median(xs.map((x) => x.p99)))}  p99.9 ${f(median(xs.map((x) => x.p999)))}  max ${f(Math.max(...xs.map((x) => x.max)))} (runs: ${xs.map((x) => f(x.max)).join(', ')})  >50 ms ${f(median(xs.map((x) => x.over[50])))}%  >100 ms ${f(median(xs.map((x) => x.over[100])))}%`);
  }
  // Whether the host stalls both sides at once: of each side's stalls over 100 ms, the share
  // of its length during which the other side was stalled too (over 50 ms). A process's own
  // stall predicts its peer's when this is high (runtime/channel/watchdog.ts, StallMeter).
  let long = 0, overlapMs = 0, longMs = 0;
  for (const run of pairsStalls) {
    for (const [a, b] of [[run.primary, run.backup], [run.backup, run.primary]]) {
      for (const [t, g] of a.filter(([, g]) => g > 100)) {
        long++;
        longMs += g;
        for (const [t2, g2] of b) overlapMs += Math.max(0, Math.min(t + g, t2 + g2) - Math.max(t, t2));
      }
    }
  }
  const allStalls = pairsStalls.flatMap((r) => [...r.primary, ...r.backup]).map(([, g]) => g).sort((x, y) => x - y);
  console.log(`  stalls over 100 ms: ${long} (longest ${allStalls.at(-1) ?? 0} ms); the other side was stalled too for ${longMs ? ((100 * overlapMs) / longMs).toFixed(0) : '-'}% of their length`);
  const q = (xs, p) => (xs.length ? [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(p * xs.length))] : 0);
  console.log('  gaps over 20 ms on the channel (wall clock; count, p90, max, ms):');
  for (const [role, ws] of Object.entries(gapStats)) {
    for (const [what, xs] of Object.entries(ws)) if (xs.length) console.log(`    ${role.padEnd(7)} ${what.padEnd(13)} ${String(xs.length).padStart(4)}  p90 ${q(xs, 0.9)}  max ${Math.max(...xs)}  >100 ms ${xs.filter((x) => x > 100).length}`);
  }
  for (const c of causes) {
    const peer = c.watcher === 'backup' ? 'primary' : 'backup';
    const verdict = c.silence === 0 ? 'no read gap found' : c.peerQuietMs >= 0.8 * c.silence ? `${peer} sent nothing (its stall)` : c.ownStallMs >= 0.5 * c.silence ? `${c.watcher} did not read (its stall)` : 'sent and not read in time (socket/scheduling)';
    console.log(`  run ${c.run}: ${c.watcher} suspected after ${c.silence} ms without a read; ${peer} sent nothing for ${c.peerQuietMs} ms of it${c.beatQuietMs === undefined ? '' : ` (its heartbeat thread: ${c.beatQuietMs} ms)`}, ${peer} stalled ${c.peerStallMs} ms, ${c.watcher} stalled ${c.ownStallMs} ms${c.failover ? '; failed over' : ''}: ${verdict}`);
  }
  console.log(`while nothing failed: ${suspicions} suspicions (cleared when the peer was heard again), ${spurious} of ${RUNS} runs failed over (spurious)`);
} finally {
  for (const h of hogs) h.kill('SIGKILL');
}

const { runOnce } = await import(pathToFileURL(join(root, 'dist/runtime/faults/harness.js')).href);
const fo = [];
for (let i = 0; i < FAILOVERS; i++) {
  const d = mkdtempSync(join(dir, 'fo-'));
  const r = await runOnce({ id: i, cli, guest: join(root, 'guests/seq/seq.elf'), dir: d, fault: 'kill-primary', atMs: 700 + 300 * i, stalls: [], nodeArgs: link, ...(suspect ? { suspectMs: Number(suspect) } : {}) });
  if (r.failoverMs !== undefined && r.check.ok) fo.push(r.failoverMs);
  else console.log(`  failover run ${i}: no failover measured (check ${r.check.ok ? 'ok' : r.check.errors.join('; ')})`);
}
if (fo.length) console.log(`failover across processes (kill -9 of the primary -> first output of the backup): median ${median(fo).toFixed(0)} ms, min ${Math.min(...fo).toFixed(0)}, max ${Math.max(...fo).toFixed(0)} (${fo.length} runs; ${fo.map((x) => x.toFixed(0)).join(' ')}; load average now ${loadavg()[0].toFixed(1)})`);
rmSync(dir, { recursive: true, force: true });
process.exit(0);
