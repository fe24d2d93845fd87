// `node bench/dns-profile.mjs run|pair|pair-outputs`: the dns guest under dnsperf -q 32 for
// 8 s, as `ftvm run` (run) or as `ftvm primary` + `ftvm backup` processes (pair; pair-outputs
// adds the primary's --outputs side channel), every process under `node --cpu-prof`. Prints
// dnsperf's figures and the primary's stats line, and the directory of the .cpuprofile files
// (prof/ the primary or `ftvm run`, bprof/ the backup): open them in Chrome's DevTools, or sum
// self time per function. Run `run` and `pair` one after the other: only side-by-side figures
// mean anything on a shared host. Needs `npm run build` and dnsperf.
import { spawn } from 'node:child_process';
import { copyFileSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
const root = fileURLToPath(new URL('..', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'svc-prof-'));
copyFileSync(join(root, 'guests/dns/zone.img'), join(dir, 'z.img'));
writeFileSync(join(dir, 'key'), 'ab'.repeat(32));
writeFileSync(join(dir, 'q'), 'www.example.test A\nns1.example.test A\nnope.example.test A\nv6only.example.test AAAA\nhello.example.test TXT\n');
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const mode = process.argv[2] ?? 'pair';
function start(args, node = []) {
  const c = spawn(process.execPath, [...node, join(root, 'bin/ftvm.js'), ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
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
  const r = start(['run', join(root, 'guests/dns/dns.elf'), '--disk', `file:${join(dir, 'z.img')}`, '--net', 'udp:127.0.0.1:0:53'], prof);
  port = Number((await wait(r, /forwarding udp 127\.0\.0\.1:(\d+)/))[1]);
  procs = [r];
} else {
  const p = start(['primary', join(root, 'guests/dns/dns.elf'), '--listen', '127.0.0.1:0', '--net', 'udp:127.0.0.1:0:53', ...(mode === 'pair-outputs' ? ['--outputs', join(dir, 'o.jsonl')] : []), ...common], prof);
  port = Number((await wait(p, /forwarding udp 127\.0\.0\.1:(\d+)/))[1]);
  const l = (await wait(p, /listening 127\.0\.0\.1:(\d+)/))[1];
  const b = start(['backup', join(root, 'guests/dns/dns.elf'), '--connect', `127.0.0.1:${l}`, '--net', `udp:127.0.0.1:${port}:53`, ...common], ['--cpu-prof', '--cpu-prof-dir', join(dir, 'bprof')]);
  await wait(p, /state \{"protected"/);
  procs = [p, b];
}
await sleep(1500);
const dp = spawn('dnsperf', ['-s', '127.0.0.1', '-p', String(port), '-d', join(dir, 'q'), '-l', '8', '-q', '32'], { stdio: ['ignore', 'pipe', 'ignore'] });
let out = ''; dp.stdout.on('data', (b) => (out += b));
await new Promise((r) => dp.once('exit', r));
console.log(mode, out.split('\n').filter((l) => /per second|lost|Average Latency/.test(l)).join(' | '));
for (const p of procs) p.c.kill('SIGTERM');
await Promise.all(procs.map((p) => p.exited));
console.log(procs[0].lines.filter((l) => /stats|outputDelay/.test(l)).join('\n'));
console.log('profile dir', join(dir, 'prof'));
