// `node bench/dns-pair.mjs`: the dns guest protected by a process pair (`ftvm pair --disk
// --net`), against `ftvm run` on the same image, in one run; then kill -9 of the primary
// under dnsperf. Needs `npm run build` and dnsperf (`apt-get install dnsperf`).
//   throughput: BENCH_ROUNDS rounds (default 3), `ftvm run` and `ftvm pair` in each, their
//               order alternated (run first in odd rounds, the pair first in even ones). Each
//               target is started fresh (the pair: once protected), warmed by dnsperf until
//               BENCH_WARM_Q queries (default 30 000) or BENCH_WARM_S (default 30) s, whichever
//               comes first (bench/lib/dns.mjs warmUp; not counted, printed as "warm-up";
//               BENCH_WARM_S=0: none), then measured by
//               dnsperf for BENCH_DNS_SECONDS (default 5), then stopped: both sides get the
//               same history, and only one target runs at a time (an idle pair costs a share
//               of a core that `ftvm run` would lose). dnsperf's arguments: BENCH_DNSPERF
//               (default `-q 32`). Per measured run: q/s, dnsperf's lost and average latency,
//               and per process µs of CPU per answered query (all threads, /proc/PID/stat)
//               with its main thread's share of the wall time on a CPU, runnable (waiting for
//               a core) and asleep (waiting for a packet, an ack, a timer: /proc/.../schedstat).
//               Then the medians of q/s over the rounds and their ratio, the median of the
//               per-round ratios, and the same for the warm-up runs (what this bench measured
//               before the warm-up: the first dnsperf after start).
//   latency:    in the last round, after its measured run, a Node client keeping 1, then 32,
//               queries in flight, 2 s each, against each (warm).
//   failover:   dnsperf -q 32 -t 1 against a pair with --suspect-ms 250, its primary killed
//               after 2 s; dnsperf's lost queries, and kill → first answer to a probe query
//               (sent at the kill and again every 2 ms until answered).
// BENCH_PIN=1: two hosts on one, as far as CPU goes: the serving process (`ftvm run`, or the
// pair's primary) alone on CPU 0, everything else (this bench, dnsperf, the pair's backup and
// its parent) on CPU 1 (`taskset`), so that the primary gets a core as `ftvm run` does and the
// ratio is its own CPU per query against `ftvm run`'s.
// Loopback only. Prints one line per measure.
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdtempSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { warmSeconds, warmText, warmUp, dnsElf as elf, dnsperf as runDnsperf, fmtProc, inflight, measure, median, probe, requireBuilt, requireDnsperf, sleep, start, stop, writeQueries, zoneImg } from './lib/dns.mjs';

// BENCH_ROOT: the tree to run (a baseline worktree of main, side by side; bench/lib/dns.mjs).
requireBuilt();
requireDnsperf();
const seconds = Number(process.env.BENCH_DNS_SECONDS ?? 5);
const rounds = Number(process.env.BENCH_ROUNDS ?? 3);
const perfArgs = (process.env.BENCH_DNSPERF ?? '-q 32').trim().split(/\s+/);
// BENCH_KILL_ONLY=1: only the failover; BENCH_KILLS=N: that many kills, a new pair each.
// BENCH_SLOW_BACKUP=RUN/STOP (ms, e.g. 10/20): during the load before the kill the backup
// process runs RUN ms of every RUN + STOP (SIGSTOP/SIGCONT), a slow backup host: how far its
// replay lags shows in the backup's phases (`claim won` -> `replayed`).
const killOnly = process.env.BENCH_KILL_ONLY === '1';
const pin = process.env.BENCH_PIN === '1';
// Every thread of `pid` onto `cpu`; children spawned later inherit this process's mask.
const taskset = (cpu, pid) => { if (spawnSync('taskset', ['-a', '-c', '-p', String(cpu), String(pid)], { stdio: 'ignore' }).status !== 0) throw new Error(`taskset ${cpu} ${pid} failed`); };
if (pin) taskset(1, process.pid);
const kills = Number(process.env.BENCH_KILLS ?? 1);
const dir = mkdtempSync(join(tmpdir(), 'ftvm-bench-dns-pair-'));
const queries = writeQueries(join(dir, 'queries'));
const dnsperf = (port, secs, extra = []) => runDnsperf(port, secs, queries, ['-q', '32', ...extra]).done;
const n0 = (x) => (Number.isFinite(x) ? x.toFixed(0) : 'n/a');
const r2 = (x) => (Number.isFinite(x) ? x.toFixed(2) : 'n/a');

/** A fresh target, warmed, measured, (latency), stopped: its figures. */
async function oneTarget(target, round, withLatency) {
  const img = join(dir, `${target}-${round}.img`);
  copyFileSync(zoneImg, img);
  const t = await start([target, elf, '--disk', `file:${img}`, '--net', 'udp:127.0.0.1:0:53'], { protectedFirst: true });
  try {
    if (pin) taskset(0, target === 'run' ? t.pids.run : t.pids.primary);
    const warm = await warmUp(t, queries, perfArgs);
    const load = loadavg()[0];
    const m = await measure(t, seconds, queries, perfArgs);
    const latency = withLatency ? [await inflight(t.port, 1, 2), await inflight(t.port, 32, 2)] : undefined;
    return { warm, m, load, latency, t };
  } finally {
    await stop(t);
    rmSync(img, { force: true });
  }
}

try {
  if (!killOnly) {
    const rows = [];
    for (let round = 1; round <= rounds; round++) {
      const order = round % 2 === 1 ? ['run', 'pair'] : ['pair', 'run'];
      const row = { round };
      for (const target of order) row[target] = await oneTarget(target, round, round === rounds);
      rows.push(row);
      const { run, pair } = row;
      console.log(`round ${round} (${order.join(' then ')}), dnsperf ${perfArgs.join(' ')}: ` +
        `ftvm run warm-up ${n0(run.warm?.completed)} queries at ${n0(run.warm?.qps)} q/s, then ${seconds} s ${n0(run.m.qps)} q/s (lost ${run.m.lost}, avg ${r2(run.m.avgMs)} ms, load ${r2(run.load)}); ` +
        `ftvm pair warm-up ${n0(pair.warm?.completed)} at ${n0(pair.warm?.qps)} q/s, then ${n0(pair.m.qps)} q/s (lost ${pair.m.lost}, avg ${r2(pair.m.avgMs)} ms, load ${r2(pair.load)}); ratio ${r2(pair.m.qps / run.m.qps)}`);
      for (const target of ['run', 'pair']) {
        const x = row[target];
        const st = x.t.lines.map((l) => /primary stats outputs (\d+) .*chunks (\d+) .*outputDelay p50 ([\d.]+) ms p99 ([\d.]+) ms/.exec(l)).find(Boolean);
        console.log(`  ${target}, measured run: ${x.m.procs.map((p) => fmtProc(p, x.m)).join(', ')}` +
          (st ? `; primary over its life: ${(Number(st[2]) / Number(st[1])).toFixed(2)} chunks per answer, output-rule delay p50 ${st[3]} ms, p99 ${st[4]} ms` : ''));
      }
    }
    const med = (f) => median(rows.map(f));
    console.log(`dnsperf ${perfArgs.join(' ')}, ${seconds} s after a warm-up (${warmText()}), medians of ${rounds} alternated rounds: ` +
      `ftvm run ${n0(med((r) => r.run.m.qps))} q/s (${rows.map((r) => n0(r.run.m.qps)).join(', ')}), ` +
      `ftvm pair ${n0(med((r) => r.pair.m.qps))} q/s (${rows.map((r) => n0(r.pair.m.qps)).join(', ')}), ` +
      `ratio ${r2(med((r) => r.pair.m.qps) / med((r) => r.run.m.qps))} (per round ${rows.map((r) => r2(r.pair.m.qps / r.run.m.qps)).join(', ')}; median ${r2(med((r) => r.pair.m.qps / r.run.m.qps))})`);
    if (warmSeconds > 0) {
      console.log(`the warm-up runs (cold: the first dnsperf after start, as this bench measured before the fifth pass): ` +
        `ftvm run ${n0(med((r) => r.run.warm.qps))} q/s, ftvm pair ${n0(med((r) => r.pair.warm.qps))} q/s, ` +
        `ratio ${r2(med((r) => r.pair.warm.qps) / med((r) => r.run.warm.qps))} (per round ${rows.map((r) => r2(r.pair.warm.qps / r.run.warm.qps)).join(', ')})`);
    }
    const last = rows[rows.length - 1];
    console.log(`latency, ftvm run: ${last.run.latency.join('; ')}`);
    console.log(`latency, ftvm pair: ${last.pair.latency.join('; ')}`);
  }

  for (let k = 0; k < kills; k++) {
    copyFileSync(zoneImg, join(dir, 'kill.img'));
    const victim = await start(['pair', elf, '--disk', `file:${join(dir, 'kill.img')}`, '--net', 'udp:127.0.0.1:0:53', '--suspect-ms', '250']);
    const pid = Number(victim.lines.map((l) => /^pair\| primary pid (\d+)/.exec(l)).find(Boolean)?.[1]);
    const load = dnsperf(victim.port, 6, ['-t', '1']);
    const slowBackup = process.env.BENCH_SLOW_BACKUP?.split('/').map(Number);
    if (slowBackup && victim.pids.backup) {
      const [runMs, stopMs] = slowBackup;
      for (const until = Date.now() + 2000; Date.now() < until;) {
        process.kill(victim.pids.backup, 'SIGSTOP');
        await sleep(stopMs);
        process.kill(victim.pids.backup, 'SIGCONT');
        await sleep(runMs);
      }
    } else await sleep(2000);
    try {
      process.kill(pid, 'SIGKILL');
    } catch (e) {
      // On a loaded host the 250 ms suspicion can fail the pair over before the kill: then
      // there is nothing to measure, and the pair must still be stopped.
      await load;
      await stop(victim);
      console.log(`kill -9 of the primary: none, the primary (pid ${pid}) was gone before the kill (${e.code}): a failover under load`);
      continue;
    }
    const firstMs = await probe(victim.port, 10_000, 2);
    const under = await load;
    const reissued = victim.lines.map((l) => /re-issuing (\d+) outputs/.exec(l)).find(Boolean)?.[1];
    // The backup's own account of its takeover (backup-node.ts, go-live-phases.ts).
    const phases = victim.lines.map((l) => /go-live phases \(ms after suspicion\): (.*)$/.exec(l)).find(Boolean)?.[1];
    await stop(victim);
    if (firstMs === undefined || process.env.BENCH_VERBOSE) console.error(victim.lines.filter((l) => !/state "(replaying|suspecting)"/.test(l)).join('\n'));
    console.log(`kill -9 of the primary under dnsperf -q 32: kill → first answer ${firstMs === undefined ? 'none in 10 s' : `${firstMs.toFixed(0)} ms`}` +
      `; dnsperf lost ${under.lost} of ${under.sent}` +
      ` (32 in flight); re-issued at go-live ${reissued ?? '?'}` +
      `; backup's phases (ms after suspicion): ${phases ?? 'not reported'}`);
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
