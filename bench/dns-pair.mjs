// `node bench/dns-pair.mjs`: the dns guest protected by a process pair (`ftvm pair --disk
// --net`), against `ftvm run` on the same image, in one run; then kill -9 of the primary
// under dnsperf. Needs `npm run build` and dnsperf (`apt-get install dnsperf`).
//   throughput: dnsperf -q 32 for BENCH_DNS_SECONDS (default 5) against each;
//   latency:    a Node client keeping 1, then 32, queries in flight, 2 s each, against each;
//   failover:   dnsperf -q 32 -t 1 against a pair with --suspect-ms 250, its primary killed
//               after 2 s; dnsperf's lost queries, and kill → first answer to a probe query
//               (sent at the kill and again every 2 ms until answered).
// Loopback only. Prints one line per measure.
import { copyFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { dnsElf as elf, dnsperf as runDnsperf, inflight, probe, requireBuilt, requireDnsperf, sleep, start, stop, writeQueries, zoneImg } from './lib/dns.mjs';

// BENCH_ROOT: the tree to run (a baseline worktree of main, side by side; bench/lib/dns.mjs).
requireBuilt();
requireDnsperf();
const seconds = Number(process.env.BENCH_DNS_SECONDS ?? 5);
// BENCH_KILL_ONLY=1: only the failover; BENCH_KILLS=N: that many kills, a new pair each.
const killOnly = process.env.BENCH_KILL_ONLY === '1';
const kills = Number(process.env.BENCH_KILLS ?? 1);
const dir = mkdtempSync(join(tmpdir(), 'ftvm-bench-dns-pair-'));
const queries = writeQueries(join(dir, 'queries'));
const dnsperf = (port, secs, extra = []) => runDnsperf(port, secs, queries, ['-q', '32', ...extra]).done;

try {
  copyFileSync(zoneImg, join(dir, 'run.img'));
  copyFileSync(zoneImg, join(dir, 'pair.img'));

  if (!killOnly) {
    const run = await start(['run', elf, '--disk', `file:${join(dir, 'run.img')}`, '--net', 'udp:127.0.0.1:0:53']);
    const noFt = await dnsperf(run.port, seconds);
    const runLatency = [await inflight(run.port, 1, 2), await inflight(run.port, 32, 2)];
    await stop(run);
    const pair = await start(['pair', elf, '--disk', `file:${join(dir, 'pair.img')}`, '--net', 'udp:127.0.0.1:0:53']);
    const ft = await dnsperf(pair.port, seconds);
    const pairLatency = [await inflight(pair.port, 1, 2), await inflight(pair.port, 32, 2)];
    await stop(pair);
    console.log(`dnsperf -q 32, ${seconds} s: ftvm run ${noFt.qps.toFixed(0)} q/s (lost ${noFt.lost}), ftvm pair ${ft.qps.toFixed(0)} q/s (lost ${ft.lost}), ratio ${(ft.qps / noFt.qps).toFixed(2)}`);
    console.log(`latency, ftvm run: ${runLatency.join('; ')}`);
    console.log(`latency, ftvm pair: ${pairLatency.join('; ')}`);
  }

  for (let k = 0; k < kills; k++) {
    copyFileSync(zoneImg, join(dir, 'kill.img'));
    const victim = await start(['pair', elf, '--disk', `file:${join(dir, 'kill.img')}`, '--net', 'udp:127.0.0.1:0:53', '--suspect-ms', '250']);
    const pid = Number(victim.lines.map((l) => /^pair\| primary pid (\d+)/.exec(l)).find(Boolean)?.[1]);
    const load = dnsperf(victim.port, 6, ['-t', '1']);
    await sleep(2000);
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
