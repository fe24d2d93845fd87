// What the dns benches share (bench/dns-*.mjs, golive-worker.mjs): the tree to run, the
// checks before a run, the query file and one query's bytes, a probe, a Node client with N
// queries in flight, dnsperf driven and parsed, `ftvm run|pair` started until it serves,
// CPU time (user, system) and the main thread's schedstat per process from /proc, one
// dnsperf run measured with all of those (`measure`), and the warm-up both sides of a
// comparison get (`warmUp`). Loopback only.
import { spawn, spawnSync } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

/** The tree to run: BENCH_ROOT (a baseline worktree of main, side by side) or this one. */
export const root = process.env.BENCH_ROOT ?? fileURLToPath(new URL('../..', import.meta.url));
export const cli = join(root, 'bin/ftvm.js');
export const dnsElf = join(root, 'guests/dns/dns.elf');
export const zoneImg = join(root, 'guests/dns/zone.img');

export const warmQueries = Number(process.env.BENCH_WARM_Q ?? 30_000);
export const warmSeconds = Number(process.env.BENCH_WARM_S ?? 30);

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** The middle value (the lower one of an even count) of the finite numbers in `xs`. */
export function median(xs) {
  const s = xs.filter((x) => x !== undefined && Number.isFinite(x)).sort((a, b) => a - b);
  return s.length === 0 ? undefined : s[Math.floor((s.length - 1) / 2)];
}

/** Exit 2 with one line unless `root`'s dist/ holds `file` (built). */
export function requireBuilt(file = 'dist/runtime/cli.js') {
  if (!existsSync(join(root, file))) {
    console.error('bench: dist/ is missing; run `npm run build` first');
    process.exit(2);
  }
}

export const hasDnsperf = () => spawnSync('sh', ['-c', 'command -v dnsperf']).status === 0;

/** Exit 2 with one line unless dnsperf is installed. */
export function requireDnsperf() {
  if (!hasDnsperf()) {
    console.error('bench: dnsperf is not installed (apt-get install dnsperf)');
    process.exit(2);
  }
}

/** The names dnsperf asks, in order (the zone of guests/dns), and the same as [name, qtype]. */
export const QUERY_LINES = 'www.example.test A\nns1.example.test A\nnope.example.test A\nv6only.example.test AAAA\nhello.example.test TXT\n';
export const QUERY_NAMES = [['www.example.test', 1], ['ns1.example.test', 1], ['nope.example.test', 1], ['v6only.example.test', 28], ['hello.example.test', 16]];

/** Write dnsperf's query file to `file`; returns `file`. */
export function writeQueries(file) {
  writeFileSync(file, QUERY_LINES);
  return file;
}

/**
 * The warm-up both sides of a comparison get before anything is counted: dnsperf (`extra`,
 * default `-q 32`) on `t` until it has sent `maxQueries` queries (BENCH_WARM_Q, default 30 000; 0: no count) or
 * `maxSeconds` have passed (BENCH_WARM_S, default 30), whichever comes first. A count, not a
 * time, is the same work on both sides: V8 optimizes a function after so many calls, and
 * the guest's code is translated once; a fresh pair answers a few hundred queries a second
 * at first where a fresh `ftvm run` answers thousands, so a fixed time would warm `ftvm run`
 * far more. Resolves to `measure`'s figures, or undefined when both limits are 0.
 */
export async function warmUp(t, queries, extra = ['-q', '32'], maxQueries = warmQueries, maxSeconds = warmSeconds) {
  if (maxSeconds <= 0) return undefined;
  // dnsperf's -n counts passes over the query file: one query per line.
  const passes = Math.ceil(maxQueries / QUERY_NAMES.length);
  return measure(t, maxSeconds, queries, [...extra, ...(maxQueries > 0 ? ['-n', String(passes)] : [])]);
}

/** The text for a warm-up's limits, e.g. "30000 queries or 30 s". */
export const warmText = () => (warmSeconds <= 0 ? 'no warm-up' : `${warmQueries > 0 ? `${warmQueries} queries or ` : ''}${warmSeconds} s`);

/** One DNS query (recursion desired, class IN) with id `id`. */
export function query(id, name = 'www.example.test', type = 1) {
  const labels = name.split('.').flatMap((l) => [l.length, ...Buffer.from(l)]);
  return Buffer.from([id >> 8, id & 255, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, ...labels, 0, 0, type, 0, 1]);
}

/** One query, retried every `everyMs`; the ms it took, or undefined after `ms`. */
export async function probe(port, ms, everyMs = 100) {
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
export async function inflight(port, n, secs) {
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

/** Clock ticks per second of /proc's CPU times. */
const TICK = Number(spawnSync('getconf', ['CLK_TCK']).stdout?.toString().trim() || 100);

/** CPU seconds (user + system, all threads) of a process so far, or NaN once it is gone. */
export function cpu(pid) {
  return cpuSplit(pid).total;
}

/** User and system CPU seconds (all threads) of a process so far, and their sum; NaN once gone. */
export function cpuSplit(pid) {
  try {
    const f = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const rest = f.slice(f.lastIndexOf(')') + 2).split(' ');
    const user = Number(rest[11]) / TICK, system = Number(rest[12]) / TICK;
    return { user, system, total: user + system };
  } catch {
    return { user: NaN, system: NaN, total: NaN };
  }
}

/**
 * The scheduler's account of one thread (default: the main thread, where a Node process runs
 * its JavaScript), from /proc/PID/task/TID/schedstat: seconds on a CPU, seconds runnable but
 * waiting for one (the host's contention), and how many times it was put on a CPU. Over a
 * wall-clock window, on-CPU + runnable against the window says whether the thread was
 * CPU-bound (no time left asleep) or waited for something (a packet, an ack, a timer).
 * Undefined once the thread is gone.
 */
export function sched(pid, tid = pid) {
  try {
    const [run, wait, slices] = readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').trim().split(' ').map(Number);
    return { run: run / 1e9, wait: wait / 1e9, slices };
  } catch {
    return undefined;
  }
}

/**
 * dnsperf against target `t` (from `start`) for `secs`, with each of its processes' CPU (all
 * threads) and main thread's schedstat taken around it. Resolves to dnsperf's summary plus
 * `wall` (s) and `procs`: [{ name, cpu, system, run, wait, slices }] (seconds, and the count
 * of times on a CPU) for every pid of `t` and dnsperf itself (its CPU only); `system` is the
 * part of `cpu` spent in the kernel, `run`/`wait` the main thread's schedstat.
 */
export async function measure(t, secs, queries, extra) {
  const pids = Object.entries(t.pids);
  const before = pids.map(([, pid]) => ({ c: cpuSplit(pid), s: sched(pid) }));
  const t0 = performance.now();
  const r = await dnsperf(t.port, secs, queries, extra).done;
  const wall = (performance.now() - t0) / 1000;
  const procs = pids.map(([name, pid], i) => {
    const s = sched(pid), b = before[i].s, c = cpuSplit(pid);
    return { name, cpu: c.total - before[i].c.total, system: c.system - before[i].c.system, run: s && b ? s.run - b.run : NaN, wait: s && b ? s.wait - b.wait : NaN, slices: s && b ? s.slices - b.slices : NaN };
  });
  procs.push({ name: 'dnsperf', cpu: r.cpu, system: NaN, run: NaN, wait: NaN, slices: NaN });
  return { ...r, wall, procs };
}

/** dnsperf's summary: q/s, completed, lost, sent, lost %, average latency (ms). */
export function parseDnsperf(out) {
  const num = (re) => Number(re.exec(out)?.[1] ?? NaN);
  return {
    qps: num(/Queries per second:\s+([\d.]+)/),
    completed: num(/Queries completed:\s+(\d+)/),
    lost: num(/Queries lost:\s+(\d+)/),
    sent: num(/Queries sent:\s+(\d+)/),
    lostPct: num(/Queries lost:\s+\d+ \(([\d.]+)%\)/),
    avgMs: num(/Average Latency \(s\):\s+([\d.]+)/) * 1000,
  };
}

/**
 * dnsperf against 127.0.0.1:`port` for `secs`, asking `queries` (a file from `writeQueries`),
 * with `extra` arguments (`-q 32`, `-Q N`, `-t 1` ...). `pid` at once; `done` resolves to the
 * parsed summary plus `cpu`, dnsperf's own CPU seconds (sampled every 100 ms while it runs:
 * a process cannot be read once it has exited).
 */
export function dnsperf(port, secs, queries, extra = []) {
  const p = spawn('dnsperf', ['-s', '127.0.0.1', '-p', String(port), '-d', queries, '-l', String(secs), ...extra], { stdio: ['ignore', 'pipe', 'ignore'] });
  let out = '';
  p.stdout.on('data', (b) => (out += b));
  let last = 0;
  const sampler = setInterval(() => { const c = cpu(p.pid); if (c === c) last = c; }, 100);
  return {
    pid: p.pid,
    done: new Promise((resolve) => p.on('exit', () => {
      clearInterval(sampler);
      resolve({ ...parseDnsperf(out), cpu: last });
    })),
  };
}

/**
 * Start `ftvm ...args` (run, pair, primary ...); resolves once stderr shows the udp forward's
 * port and a probe through it is answered, and for `ftvm pair` (with `protectedFirst`) once
 * the primary says the pair is protected. `pids`: the process by its command's name, and for
 * a pair its children (`pair| NAME pid N`). A target that does not come up in 30 s is stopped
 * and an error thrown.
 */
export async function start(args, { protectedFirst = false } = {}) {
  const child = spawn(process.execPath, [cli, ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
  const lines = [];
  createInterface({ input: child.stderr }).on('line', (l) => lines.push(l));
  // 'close': after the exit and the last line of stderr (a stats line printed at exit).
  const exited = new Promise((r) => child.once('close', r));
  const t0 = Date.now();
  for (;;) {
    const m = lines.map((l) => /forwarding udp 127\.0\.0\.1:(\d+) ->/.exec(l)).find(Boolean);
    const protectedNow = !protectedFirst || args[0] !== 'pair' || lines.some((l) => /^primary\| .*state \{"protected":"flowing"\}/.test(l));
    if (m && protectedNow && (await probe(Number(m[1]), 3000)) !== undefined) {
      const pids = { [args[0]]: child.pid };
      for (const l of lines) {
        const p = /^pair\| (\w+) pid (\d+)/.exec(l);
        if (p) pids[p[1]] = Number(p[2]);
      }
      return { child, lines, port: Number(m[1]), exited, pids };
    }
    if (child.exitCode !== null || Date.now() - t0 > 30_000) {
      // Leave nothing running: a target that did not come up in time is stopped here.
      if (child.exitCode === null) child.kill('SIGTERM');
      throw new Error(`ftvm ${args[0]} did not come up:\n${lines.join('\n')}`);
    }
    await sleep(50);
  }
}

/** SIGTERM to a target from `start`, and its exit. */
export async function stop(t) {
  t.child.kill('SIGTERM');
  await t.exited;
}

/**
 * One process of `measure`'s `procs`: µs of CPU per answered query (all threads; in brackets
 * its main thread's alone and the kernel's share of the whole), and its main thread's share
 * of the wall time on a CPU, runnable (waiting for a core) and asleep (waiting for a packet,
 * an ack, a timer).
 */
export function fmtProc(p, m) {
  const us = (s) => (Number.isFinite(s) ? ((s * 1e6) / m.completed).toFixed(0) : 'n/a');
  if (!Number.isFinite(p.run)) return `${p.name} ${us(p.cpu)} µs/q`;
  const pct = (x) => `${((x / m.wall) * 100).toFixed(0)} %`;
  const sys = p.cpu > 0 ? `, ${((p.system / p.cpu) * 100).toFixed(0)} % of it in the kernel` : '';
  return `${p.name} ${us(p.cpu)} µs/q (main thread ${us(p.run)}${sys}; on a CPU ${pct(p.run)}, runnable ${pct(p.wait)}, asleep ${pct(Math.max(0, m.wall - p.run - p.wait))})`;
}
