// `node bench/dns-pair.mjs`: the dns guest protected by a process pair (`ftvm pair --disk
// --net`), against `ftvm run` on the same image, in one run; then kill -9 of the primary
// under dnsperf. Needs `npm run build` and dnsperf (`apt-get install dnsperf`).
//   throughput: dnsperf -q 32 for BENCH_DNS_SECONDS (default 5) against each;
//   latency:    a Node client keeping 1, then 32, queries in flight, 2 s each, against each;
//   failover:   dnsperf -q 32 -t 1 against a pair with --suspect-ms 250, its primary killed
//               after 2 s; dnsperf's lost queries, and kill → first answer to a probe query
//               (sent at the kill and again every 2 ms until answered).
// Loopback only. Prints one line per measure.
import { spawn, spawnSync } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { copyFileSync, existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

// BENCH_ROOT: the tree to run (a baseline worktree of main, side by side).
const root = process.env.BENCH_ROOT ?? fileURLToPath(new URL('..', import.meta.url));
if (!existsSync(join(root, 'dist/runtime/cli.js'))) {
  console.error('bench: dist/ is missing; run `npm run build` first');
  process.exit(2);
}
if (spawnSync('sh', ['-c', 'command -v dnsperf']).status !== 0) {
  console.error('bench: dnsperf is not installed (apt-get install dnsperf)');
  process.exit(2);
}
const seconds = Number(process.env.BENCH_DNS_SECONDS ?? 5);
// BENCH_KILL_ONLY=1: only the failover; BENCH_KILLS=N: that many kills, a new pair each.
const killOnly = process.env.BENCH_KILL_ONLY === '1';
const kills = Number(process.env.BENCH_KILLS ?? 1);
const dir = mkdtempSync(join(tmpdir(), 'ftvm-bench-dns-pair-'));
const cli = join(root, 'bin/ftvm.js');
const elf = join(root, 'guests/dns/dns.elf');
const queries = join(dir, 'queries');
writeFileSync(queries, 'www.example.test A\nns1.example.test A\nnope.example.test A\nv6only.example.test AAAA\nhello.example.test TXT\n');
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Start `ftvm ...args`; resolves once stderr shows the forward's port (and the guest serves). */
async function start(args) {
  const child = spawn(process.execPath, [cli, ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
  const lines = [];
  createInterface({ input: child.stderr }).on('line', (l) => lines.push(l));
  const exited = new Promise((r) => child.once('exit', r));
  const t0 = Date.now();
  for (;;) {
    const m = lines.map((l) => /forwarding udp 127\.0\.0\.1:(\d+) ->/.exec(l)).find(Boolean);
    if (m && (await probe(Number(m[1]), 3000)) !== undefined) return { child, lines, port: Number(m[1]), exited };
    if (child.exitCode !== null || Date.now() - t0 > 30_000) {
      // Leave nothing running: a pair that did not come up in time is stopped here.
      if (child.exitCode === null) child.kill('SIGTERM');
      throw new Error(`ftvm ${args[0]} did not come up:\n${lines.join('\n')}`);
    }
    await sleep(50);
  }
}

function query(id) {
  const labels = 'www.example.test'.split('.').flatMap((l) => [l.length, ...Buffer.from(l)]);
  return Buffer.from([id >> 8, id & 255, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, ...labels, 0, 0, 1, 0, 1]);
}

/** One query, retried every `everyMs`; the ms it took, or undefined. */
async function probe(port, ms, everyMs = 100) {
  const s = createSocket('udp4');
  const t0 = performance.now();
  try {
    return await new Promise((resolve) => {
      const timer = setInterval(() => s.send(query(7), port, '127.0.0.1'), everyMs);
      const give = setTimeout(() => { clearInterval(timer); resolve(undefined); }, ms);
      s.on('message', () => { clearInterval(timer); clearTimeout(give); resolve(performance.now() - t0); });
      s.send(query(7), port, '127.0.0.1');
    });
  } finally {
    s.close();
  }
}

/** A client that keeps `n` queries in flight for `secs`: answers per second and latency percentiles. */
async function inflight(port, n, secs) {
  const s = createSocket('udp4');
  const sentAt = new Map();
  const lat = [];
  let id = 0;
  const send = () => {
    id = (id + 1) & 0xffff;
    sentAt.set(id, performance.now());
    s.send(query(id), port, '127.0.0.1');
  };
  s.on('message', (m) => {
    const t = sentAt.get((m[0] << 8) | m[1]);
    if (t === undefined) return;
    sentAt.delete((m[0] << 8) | m[1]);
    lat.push(performance.now() - t);
    send();
  });
  for (let i = 0; i < n; i++) send();
  await sleep(secs * 1000);
  s.close();
  lat.sort((a, b) => a - b);
  const p = (q) => (lat[Math.floor(lat.length * q)] ?? NaN).toFixed(3);
  return `${n} in flight ${(lat.length / secs).toFixed(0)} q/s, p50 ${p(0.5)} p99 ${p(0.99)} ms`;
}

function dnsperf(port, secs, extra = []) {
  return new Promise((resolve) => {
    const p = spawn('dnsperf', ['-s', '127.0.0.1', '-p', String(port), '-d', queries, '-l', String(secs), '-q', '32', ...extra], { stdio: ['ignore', 'pipe', 'ignore'] });
    let out = '';
    p.stdout.on('data', (b) => (out += b));
    p.on('exit', () => resolve({
      qps: Number(/Queries per second:\s+([\d.]+)/.exec(out)?.[1] ?? NaN),
      lost: Number(/Queries lost:\s+(\d+)/.exec(out)?.[1] ?? NaN),
      sent: Number(/Queries sent:\s+(\d+)/.exec(out)?.[1] ?? NaN),
    }));
  });
}

async function stop(p) {
  p.child.kill('SIGTERM');
  await p.exited;
}

try {
  copyFileSync(join(root, 'guests/dns/zone.img'), join(dir, 'run.img'));
  copyFileSync(join(root, 'guests/dns/zone.img'), join(dir, 'pair.img'));

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
    copyFileSync(join(root, 'guests/dns/zone.img'), join(dir, 'kill.img'));
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
