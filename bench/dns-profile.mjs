// `node bench/dns-profile.mjs run|pair|pair-outputs`: the dns guest under dnsperf -q 32 for
// 8 s, as `ftvm run` (run) or as `ftvm primary` + `ftvm backup` processes (pair; pair-outputs
// adds the primary's --outputs side channel), every process under `node --cpu-prof`. Prints
// dnsperf's figures and the primary's stats line, and the directory of the .cpuprofile files
// (prof/ the primary or `ftvm run`, bprof/ the backup): open them in Chrome's DevTools, or sum
// self time per function. Run `run` and `pair` one after the other: only side-by-side figures
// mean anything on a shared host. BENCH_DNS_RATE=N paces dnsperf at N q/s (-Q), so that both
// modes do the same work; then each profile's busiest functions are printed as µs of self
// time per answered query (BENCH_PROFILE_TOP of them, default 25). BENCH_WARM_S: a warm-up
// first (below). BENCH_PIN=1: the serving process (`ftvm run` or the primary) alone on CPU 0,
// the rest on CPU 1, as in bench/dns-pair.mjs. Needs `npm run build` and dnsperf.
import { spawn, spawnSync } from 'node:child_process';
import { copyFileSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { cli, dnsElf, parseDnsperf, warmUp, requireBuilt, requireDnsperf, sleep, writeQueries, zoneImg } from './lib/dns.mjs';
requireBuilt();
requireDnsperf();
const dir = mkdtempSync(join(tmpdir(), 'svc-prof-'));
copyFileSync(zoneImg, join(dir, 'z.img'));
writeFileSync(join(dir, 'key'), 'ab'.repeat(32));
writeQueries(join(dir, 'q'));
const mode = process.argv[2] ?? 'pair';
const pin = process.env.BENCH_PIN === '1';
const taskset = (cpu, pid) => { if (spawnSync('taskset', ['-a', '-c', '-p', String(cpu), String(pid)], { stdio: 'ignore' }).status !== 0) throw new Error(`taskset ${cpu} ${pid} failed`); };
if (pin) taskset(1, process.pid);
function start(args, node = []) {
  const c = spawn(process.execPath, [...node, cli, ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
  const lines = [];
  createInterface({ input: c.stderr }).on('line', (l) => lines.push(l));
  return { c, lines, exited: new Promise((r) => c.once('exit', r)) };
}
const wait = async (p, re) => { for (;;) { const m = p.lines.map((l) => re.exec(l)).find(Boolean); if (m) return m; await sleep(20); } };
const common = ['--key-file', join(dir, 'key'), '--arbiter', `file:${dir}`, '--suspect-ms', '1000', '--disk', `file:${join(dir, 'z.img')}`];
const prof = ['--cpu-prof', '--cpu-prof-dir', join(dir, 'prof')];
let procs = [];
let port;
if (mode === 'run') {
  const r = start(['run', dnsElf, '--disk', `file:${join(dir, 'z.img')}`, '--net', 'udp:127.0.0.1:0:53'], prof);
  port = Number((await wait(r, /forwarding udp 127\.0\.0\.1:(\d+)/))[1]);
  procs = [r];
} else {
  const p = start(['primary', dnsElf, '--listen', '127.0.0.1:0', '--net', 'udp:127.0.0.1:0:53', ...(mode === 'pair-outputs' ? ['--outputs', join(dir, 'o.jsonl')] : []), ...common], prof);
  port = Number((await wait(p, /forwarding udp 127\.0\.0\.1:(\d+)/))[1]);
  const l = (await wait(p, /listening 127\.0\.0\.1:(\d+)/))[1];
  const b = start(['backup', dnsElf, '--connect', `127.0.0.1:${l}`, '--net', `udp:127.0.0.1:${port}:53`, ...common], ['--cpu-prof', '--cpu-prof-dir', join(dir, 'bprof')]);
  await wait(p, /state \{"protected"/);
  procs = [p, b];
}
if (pin) taskset(0, procs[0].c.pid);
await sleep(1500);
// The warm-up of bench/lib/dns.mjs first (BENCH_WARM_Q queries or BENCH_WARM_S s), not
// counted (the profile's window is dnsperf's measured 8 s only), so that the profile shows
// the warm steady state, not V8's and the translator's start-up; BENCH_WARM_S=0 profiles the
// first queries, as before the fifth pass.
await warmUp({ port, pids: {} }, join(dir, 'q'));
const rate = process.env.BENCH_DNS_RATE;
const dp = spawn('dnsperf', ['-s', '127.0.0.1', '-p', String(port), '-d', join(dir, 'q'), '-l', '8', '-q', '32', ...(rate ? ['-Q', rate] : [])], { stdio: ['ignore', 'pipe', 'ignore'] });
let out = ''; dp.stdout.on('data', (b) => (out += b));
await new Promise((r) => dp.once('exit', r));
console.log(mode, out.split('\n').filter((l) => /per second|lost|Average Latency/.test(l)).join(' | '));
for (const p of procs) p.c.kill('SIGTERM');
await Promise.all(procs.map((p) => p.exited));
console.log(procs[0].lines.filter((l) => /stats|outputDelay/.test(l)).join('\n'));
console.log('profile dir', join(dir, 'prof'));

/** Self time per function (µs per answered query), busiest first, of one .cpuprofile. */
function summary(file, answered) {
  const p = JSON.parse(readFileSync(file, 'utf8'));
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const self = new Map();
  // Only the samples of dnsperf's 8 s (the processes stop right after it): not the start-up.
  const from = p.endTime - 8.1e6;
  let t = p.startTime;
  for (let i = 0; i < p.samples.length; i++) {
    t += p.timeDeltas[i] ?? 0;
    if (t < from) continue;
    const n = byId.get(p.samples[i]);
    const f = n.callFrame;
    const key = `${f.functionName || '(anonymous)'} ${f.url.split('/').slice(-2).join('/')}:${f.lineNumber + 1}`;
    self.set(key, (self.get(key) ?? 0) + (p.timeDeltas[i] ?? 0));
  }
  const total = [...self].filter(([k]) => !/^\(idle\)|^\(program\)/.test(k)).reduce((a, [, v]) => a + v, 0);
  const top = [...self].sort((a, b) => b[1] - a[1]).slice(0, Number(process.env.BENCH_PROFILE_TOP ?? 25));
  return [`  busy (not idle or program) ${(total / answered).toFixed(1)} µs per query`, ...top.map(([k, v]) => `  ${(v / answered).toFixed(1).padStart(7)}  ${k}`)].join('\n');
}
const answered = parseDnsperf(out).completed;
for (const sub of ['prof', 'bprof']) {
  let files = [];
  try { files = readdirSync(join(dir, sub)).filter((f) => f.endsWith('.cpuprofile')); } catch { continue; }
  for (const f of files) console.log(`${sub === 'prof' ? (mode === 'run' ? 'run' : 'primary') : 'backup'} (${f}), ${answered} answered:\n${summary(join(dir, sub, f), answered)}`);
}
