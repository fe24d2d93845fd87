// `node bench/dns-cpu.mjs [run|pair ...]`: where the CPU goes when the dns guest serves
// dnsperf, per process, as `ftvm run` and as `ftvm pair` (its parent, primary and backup
// children), in one run. CPU time is read from /proc/PID/stat (user + system, every thread),
// so it holds on a loaded host where wall-clock rates do not. Two phases per target:
//   open:  dnsperf -q 32 for BENCH_DNS_SECONDS (default 5): q/s, and each process's share of
//          one core (CPU seconds / wall seconds), dnsperf's included;
//   paced: dnsperf -Q BENCH_DNS_RATE (default 2000) q/s for the same time: µs of CPU per
//          answered query, per process (a rate both targets sustain, so the figures compare);
//   and for a pair, the primary's log per answer: entries, bytes, chunks (TLS records).
// Needs `npm run build` and dnsperf. Loopback only; prints one line per target and phase.
import { copyFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { cpu, dnsElf, dnsperf as runDnsperf, requireBuilt, requireDnsperf, sleep, start, writeQueries, zoneImg } from './lib/dns.mjs';

requireBuilt();
requireDnsperf();
const seconds = Number(process.env.BENCH_DNS_SECONDS ?? 5);
const rate = Number(process.env.BENCH_DNS_RATE ?? 2000);
const targets = process.argv.slice(2).length > 0 ? process.argv.slice(2) : ['run', 'pair'];
const dir = mkdtempSync(join(tmpdir(), 'ftvm-bench-dns-cpu-'));
const queries = writeQueries(join(dir, 'queries'));
const dnsperf = (port, extra) => runDnsperf(port, seconds, queries, extra);

async function phase(t, extra) {
  const pids = Object.entries(t.pids);
  const before = pids.map(([, pid]) => cpu(pid));
  const t0 = performance.now();
  const d = dnsperf(t.port, extra);
  const r = await d.done;
  const wall = (performance.now() - t0) / 1000;
  const used = pids.map(([name, pid], i) => [name, cpu(pid) - before[i]]);
  used.push(['dnsperf', r.cpu]);
  return { ...r, wall, used };
}

const fmtShare = (p) => p.used.map(([n, s]) => `${n} ${((s / p.wall) * 100).toFixed(0)} %`).join(', ');
const fmtPerQuery = (p) => {
  const per = p.used.map(([n, s]) => [n, (s * 1e6) / p.completed]);
  const ftvm = per.filter(([n]) => n !== 'dnsperf').reduce((a, [, v]) => a + v, 0);
  return `${per.map(([n, v]) => `${n} ${v.toFixed(1)}`).join(', ')}; ftvm total ${ftvm.toFixed(1)} µs/query`;
};

try {
  for (const target of targets) {
    const img = join(dir, `${target}.img`);
    copyFileSync(zoneImg, img);
    const t = await start([target, dnsElf, '--disk', `file:${img}`, '--net', 'udp:127.0.0.1:0:53'], { protectedFirst: true });
    await sleep(500);
    const open = await phase(t, ['-q', '32']);
    console.log(`${target} open  : ${open.qps.toFixed(0)} q/s (lost ${open.lost}); share of a core: ${fmtShare(open)}; ${fmtPerQuery(open)}`);
    const paced = await phase(t, ['-q', '32', '-Q', String(rate)]);
    console.log(`${target} paced : ${paced.qps.toFixed(0)} q/s (lost ${paced.lost}); share of a core: ${fmtShare(paced)}; ${fmtPerQuery(paced)}`);
    t.child.kill('SIGTERM');
    await t.exited;
    const st = t.lines.map((l) => /primary stats outputs (\d+) released \d+ entries (\d+) bytes (\d+) chunks (\d+)/.exec(l)).find(Boolean);
    if (st) {
      const [outputs, entries, bytes, chunks] = st.slice(1).map(Number);
      console.log(`${target} log   : per answer (both phases) ${(entries / outputs).toFixed(2)} entries, ${(bytes / outputs).toFixed(0)} bytes, ${(chunks / outputs).toFixed(2)} chunks`);
    }
    if (process.env.BENCH_VERBOSE) console.error(t.lines.filter((l) => /stats/.test(l)).join('\n'));
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
