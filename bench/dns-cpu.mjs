// `node bench/dns-cpu.mjs [run|pair ...]`: where the CPU goes when the dns guest serves
// dnsperf, per process, as `ftvm run` and as `ftvm pair` (its parent, primary and backup
// children), in one run. CPU time is read from /proc/PID/stat (user + system, every thread),
// so it holds on a loaded host where wall-clock rates do not; each process's main thread
// (where Node runs the JavaScript) is also read from /proc/PID/task/PID/schedstat: time on a
// CPU, runnable (waiting for a core) and asleep. Phases per target, each started fresh:
//   idle:   BENCH_IDLE_S (default 3) without queries: each process's share of a core and its
//           main thread's wake-ups per second (the cost of heartbeats and timers alone);
//   warm-up: dnsperf -q 32 for BENCH_WARM_Q queries (default 30 000) or BENCH_WARM_S
//           (default 30) s, whichever comes first, not counted (bench/lib/dns.mjs warmUp;
//           BENCH_WARM_S=0: none, as before the fifth pass: the first phase is then cold);
//   open:   dnsperf -q 32 for BENCH_DNS_SECONDS (default 5): q/s, and each process's share of
//           one core (CPU seconds / wall seconds), dnsperf's included; BENCH_DNS_Q=8,32,100
//           runs it once per -q value (queries in flight), to see where each target saturates;
//   paced:  dnsperf -Q R q/s for the same time, for each R in BENCH_DNS_RATE (default 2000; a
//           list such as 1000,3000 is allowed): µs of CPU per answered query, per process (a
//           rate both targets sustain, so the figures compare);
//           (BENCH_DNS_RATE=none: no paced phase, so the log counts below are the open phase's);
//   (CPU per query falls as the rate rises, for `ftvm run` too: at low rates every query
//   pays its own wake-ups; compare targets at the same rate, never across rates);
//   and for a pair, the primary's log per answer: entries, bytes, chunks (TLS records), acks
//   heard, events into the primary chart, CPU batches (steps of the CPU chart), and its
//   output-rule delay over its life (all phases, the warm-up's included).
// Needs `npm run build` and dnsperf. Loopback only; prints one line per target and phase.
import { copyFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { cpu, warmUp, dnsElf, fmtProc, measure, requireBuilt, requireDnsperf, sched, sleep, start, writeQueries, zoneImg } from './lib/dns.mjs';

requireBuilt();
requireDnsperf();
const seconds = Number(process.env.BENCH_DNS_SECONDS ?? 5);
const rates = process.env.BENCH_DNS_RATE === 'none' ? [] : String(process.env.BENCH_DNS_RATE ?? 2000).split(',').map(Number);
const idleSeconds = Number(process.env.BENCH_IDLE_S ?? 3);
const inFlight = String(process.env.BENCH_DNS_Q ?? 32).split(',').map(Number);
const targets = process.argv.slice(2).length > 0 ? process.argv.slice(2) : ['run', 'pair'];
const dir = mkdtempSync(join(tmpdir(), 'ftvm-bench-dns-cpu-'));
const queries = writeQueries(join(dir, 'queries'));
const phase = (t, extra, secs = seconds) => measure(t, secs, queries, extra);

const fmtShare = (p) => p.procs.map((x) => `${x.name} ${((x.cpu / p.wall) * 100).toFixed(0)} %`).join(', ');
const fmtPerQuery = (p) => {
  const per = p.procs.map((x) => [x.name, (x.cpu * 1e6) / p.completed]);
  const ftvm = per.filter(([n]) => n !== 'dnsperf').reduce((a, [, v]) => a + v, 0);
  return `${per.map(([n, v]) => `${n} ${v.toFixed(1)}`).join(', ')}; ftvm total ${ftvm.toFixed(1)} µs/query`;
};
const fmtSched = (p) => p.procs.filter((x) => x.name !== 'pair' && x.name !== 'dnsperf').map((x) => fmtProc(x, p)).join('; ');

/** Each process's share of a core and its main thread's wake-ups per second, with no queries. */
async function idle(t, secs) {
  const pids = Object.entries(t.pids);
  const before = pids.map(([, pid]) => [cpu(pid), sched(pid)]);
  await sleep(secs * 1000);
  return pids.map(([name, pid], i) => {
    const s = sched(pid);
    return `${name} ${(((cpu(pid) - before[i][0]) / secs) * 100).toFixed(1)} % (main thread ${s ? (((s.run - before[i][1].run) / secs) * 100).toFixed(1) : '?'} %, ${s ? ((s.slices - before[i][1].slices) / secs).toFixed(0) : '?'} wake-ups/s)`;
  }).join(', ');
}

try {
  for (const target of targets) {
    const img = join(dir, `${target}.img`);
    copyFileSync(zoneImg, img);
    const t = await start([target, dnsElf, '--disk', `file:${img}`, '--net', 'udp:127.0.0.1:0:53'], { protectedFirst: true });
    await sleep(500);
    if (idleSeconds > 0) console.log(`${target} idle  : ${idleSeconds} s without queries, share of a core: ${await idle(t, idleSeconds)}`);
    const warm = await warmUp(t, queries);
    if (warm) console.log(`${target} warm-up: ${warm.completed} queries in ${warm.wall.toFixed(1)} s, ${warm.qps.toFixed(0)} q/s (not counted); ${fmtPerQuery(warm)}`);
    for (const q of inFlight) {
      const open = await phase(t, ['-q', String(q)]);
      const label = inFlight.length > 1 ? `open -q ${q}` : 'open  ';
      console.log(`${target} ${label}: ${open.qps.toFixed(0)} q/s (lost ${open.lost}, avg ${open.avgMs.toFixed(2)} ms); share of a core: ${fmtShare(open)}; ${fmtPerQuery(open)}`);
      console.log(`${target} ${label}: ${fmtSched(open)}`);
    }
    const paced = [];
    for (const rate of rates) {
      const p = await phase(t, ['-q', '32', '-Q', String(rate)]);
      paced.push(p);
      console.log(`${target} paced : ${p.qps.toFixed(0)} q/s (lost ${p.lost}); share of a core: ${fmtShare(p)}; ${fmtPerQuery(p)}`);
      console.log(`${target} paced : ${fmtSched(p)}`);
    }
    t.child.kill('SIGTERM');
    await t.exited;
    const line = t.lines.find((l) => /primary stats outputs/.test(l)) ?? '';
    const st = /primary stats outputs (\d+) released \d+ entries (\d+) bytes (\d+) chunks (\d+) .*outputDelay p50 ([\d.]+) ms p99 ([\d.]+) ms/.exec(line);
    if (st) {
      const [outputs, entries, bytes, chunks] = st.slice(1, 5).map(Number);
      // Counts a tree before the ackclock pass does not print are left out.
      const more = /acks (\d+) chartEvents (\d+) batches (\d+)/.exec(line);
      const counts = more ? `, ${(Number(more[1]) / outputs).toFixed(2)} acks, ${(Number(more[2]) / outputs).toFixed(2)} primary chart events, ${(Number(more[3]) / outputs).toFixed(2)} CPU batches` : '';
      console.log(`${target} log   : per answer (all phases) ${(entries / outputs).toFixed(2)} entries, ${(bytes / outputs).toFixed(0)} bytes, ${(chunks / outputs).toFixed(2)} chunks${counts}; output-rule delay p50 ${st[5]} ms, p99 ${st[6]} ms`);
    }
    if (process.env.BENCH_VERBOSE) console.error(t.lines.filter((l) => /stats/.test(l)).join('\n'));
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
