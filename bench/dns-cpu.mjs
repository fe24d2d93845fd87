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
import { spawn, spawnSync } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
if (!existsSync(join(root, 'dist/runtime/cli.js'))) {
  console.error('bench: dist/ is missing; run `npm run build` first');
  process.exit(2);
}
if (spawnSync('sh', ['-c', 'command -v dnsperf']).status !== 0) {
  console.error('bench: dnsperf is not installed (apt-get install dnsperf)');
  process.exit(2);
}
const seconds = Number(process.env.BENCH_DNS_SECONDS ?? 5);
const rate = Number(process.env.BENCH_DNS_RATE ?? 2000);
const targets = process.argv.slice(2).length > 0 ? process.argv.slice(2) : ['run', 'pair'];
const dir = mkdtempSync(join(tmpdir(), 'ftvm-bench-dns-cpu-'));
const cli = join(root, 'bin/ftvm.js');
const elf = join(root, 'guests/dns/dns.elf');
const queries = join(dir, 'queries');
writeFileSync(queries, 'www.example.test A\nns1.example.test A\nnope.example.test A\nv6only.example.test AAAA\nhello.example.test TXT\n');
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const TICK = Number(spawnSync('getconf', ['CLK_TCK']).stdout.toString().trim() || 100);

/** CPU seconds (user + system, all threads) of a process so far. */
function cpu(pid) {
  try {
    const f = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const rest = f.slice(f.lastIndexOf(')') + 2).split(' ');
    return (Number(rest[11]) + Number(rest[12])) / TICK;
  } catch {
    return NaN;
  }
}

async function start(args) {
  const child = spawn(process.execPath, [cli, ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
  const lines = [];
  createInterface({ input: child.stderr }).on('line', (l) => lines.push(l));
  const exited = new Promise((r) => child.once('exit', r));
  const t0 = Date.now();
  for (;;) {
    const m = lines.map((l) => /forwarding udp 127\.0\.0\.1:(\d+) ->/.exec(l)).find(Boolean);
    const protectedNow = args[0] !== 'pair' || lines.some((l) => /^primary\| .*state \{"protected":"flowing"\}/.test(l));
    if (m && protectedNow && (await probe(Number(m[1]), 3000)) !== undefined) {
      const pids = { [args[0]]: child.pid };
      for (const l of lines) {
        const p = /^pair\| (\w+) pid (\d+)/.exec(l);
        if (p) pids[p[1]] = Number(p[2]);
      }
      return { child, lines, port: Number(m[1]), exited, pids };
    }
    if (child.exitCode !== null || Date.now() - t0 > 30_000) throw new Error(`ftvm ${args[0]} did not come up:\n${lines.join('\n')}`);
    await sleep(50);
  }
}

function query(id) {
  const labels = 'www.example.test'.split('.').flatMap((l) => [l.length, ...Buffer.from(l)]);
  return Buffer.from([id >> 8, id & 255, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, ...labels, 0, 0, 1, 0, 1]);
}

/** One query, retried every 100 ms; the ms it took, or undefined. */
async function probe(port, ms) {
  const s = createSocket('udp4');
  const t0 = performance.now();
  try {
    return await new Promise((resolve) => {
      const timer = setInterval(() => s.send(query(7), port, '127.0.0.1'), 100);
      const give = setTimeout(() => { clearInterval(timer); resolve(undefined); }, ms);
      s.on('message', () => { clearInterval(timer); clearTimeout(give); resolve(performance.now() - t0); });
      s.send(query(7), port, '127.0.0.1');
    });
  } finally {
    s.close();
  }
}

function dnsperf(port, extra) {
  const p = spawn('dnsperf', ['-s', '127.0.0.1', '-p', String(port), '-d', queries, '-l', String(seconds), ...extra], { stdio: ['ignore', 'pipe', 'ignore'] });
  let out = '';
  p.stdout.on('data', (b) => (out += b));
  let before = 0;
  // dnsperf's own CPU: read just before it exits is not possible, so sample while it runs.
  let last = 0;
  const sampler = setInterval(() => { const c = cpu(p.pid); if (c === c) last = c; }, 100);
  return {
    pid: p.pid,
    done: new Promise((resolve) => p.on('exit', () => {
      clearInterval(sampler);
      resolve({
        qps: Number(/Queries per second:\s+([\d.]+)/.exec(out)?.[1] ?? NaN),
        completed: Number(/Queries completed:\s+(\d+)/.exec(out)?.[1] ?? NaN),
        lost: Number(/Queries lost:\s+(\d+)/.exec(out)?.[1] ?? NaN),
        cpu: last - before,
      });
    })),
  };
}

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
    copyFileSync(join(root, 'guests/dns/zone.img'), img);
    const t = await start([target, elf, '--disk', `file:${img}`, '--net', 'udp:127.0.0.1:0:53']);
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
