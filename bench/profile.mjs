// Where FT's time goes: CPU profiles (node --cpu-prof) of both sides, summarized by item.
//   node bench/profile.mjs [guest]           (needs `npm run build`; guest: bench-timer)
//   node bench/profile.mjs --summarize DIR   (summarize .cpuprofile files already taken)
//   BENCH_CASES=2,3 node bench/profile.mjs   (only the cases named; default 1,2,3)
// 1. `ftvm primary` and `ftvm backup` as processes over loopback TLS, one profile each;
// 2. `createPair({ backupIn: 'worker' })` in one process: the primary's thread and the
//    backup's worker, one profile each (Node writes one per thread);
// 3. the guest alone (`runMachine`, live env), the no-FT reference.
// Each profile is summarized as self time per item (runtime file or Node internal), in % of
// the thread's samples, idle included, so that a side's idle share says how long it waited.
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const cli = join(root, 'bin/ftvm.js');

/** Item of a profile node: what the issue asks to see (clock reads, markers, digests, framing, replay loop...). */
function itemOf(fn, url) {
  if (fn === '(idle)') return 'idle (waiting)';
  if (fn === '(garbage collector)') return 'GC';
  if (fn === '(program)') return 'V8/native (program)';
  // Guest code the JIT compiled (new Function, no file).
  if (/^block_[0-9a-f]+$/.test(fn) && !url) return 'CPU: JIT-compiled guest blocks';
  const f = url.startsWith('file://') ? relative(root, fileURLToPath(url)) : url;
  if (/^node:internal\/(modules|bootstrap)|^node:internal\/deps\/cjs-module-lexer/.test(f) ||
    (!f && /^(openFileHandle|fstat|lstat|internalModuleStat|readFileUtf8|stat|realpath|compileFunction)$/.test(fn))) return 'start-up: loading modules (once)';
  if (/runtime\/cpu\//.test(f)) return 'CPU: interpreter + JIT (runtime/cpu)';
  if (/runtime\/snapshot/.test(f)) return 'digests / snapshots (runtime/snapshot.ts)';
  if (/runtime\/env\/recording/.test(f)) return 'recording env: clock reads, timer checks (env/recording.ts)';
  if (/runtime\/env\/replay/.test(f)) return 'replay env: log entries delivered (env/replay.ts)';
  if (/runtime\/env\//.test(f)) return `env: ${f.replace(/.*runtime\/env\//, '')}`;
  if (/runtime\/log\//.test(f)) return 'log codec: entry encode/decode (runtime/log)';
  if (/runtime\/channel\//.test(f)) return 'channel: framing, send window, acks (runtime/channel)';
  if (/runtime\/ft\/primary-node/.test(f)) return 'primary node: per-batch markers, heartbeats (ft/primary-node.ts)';
  if (/runtime\/ft\/backup-node/.test(f)) return 'backup node: replay loop, acks (ft/backup-node.ts)';
  if (/runtime\/ft\//.test(f)) return `ft: ${f.replace(/.*runtime\/ft\//, '')}`;
  if (/runtime\/(machine|bus)\.|devices\//.test(f)) return 'machine, bus, devices (step, env checks)';
  if (/runtime\/(runner|cpu-actor)\./.test(f)) return 'batch loop (runner / cpu-actor)';
  if (/machines\/|node_modules\/xstate/.test(f)) return 'charts (xstate, machines/)';
  if (/node_modules\/rxjs/.test(f)) return 'rxjs';
  if (/^node:(tls|_tls|net|stream|internal\/streams|internal\/stream_base|_stream)|internal\/(tls|net|stream)/.test(f) || /^node:internal\/(js_stream|stream)/.test(f)) return 'Node streams, net, TLS (JS side)';
  if (/crypto/.test(f) || /^(Cipher|Hmac|Hash)/.test(fn)) return 'crypto';
  if (/^node:internal\/(timers|process\/task_queues)|^node:timers/.test(f)) return 'timers, microtasks, event-loop turns';
  if (fn === 'writeBuffer' || fn === 'writev' || fn === 'writeUtf8String') return 'native: socket/file writes (TLS encrypt + syscall for sockets)';
  if (/^node:/.test(f)) return `Node: ${f.replace(/^node:(internal\/)?/, '')}`;
  if (f === '' && fn) return `native: ${fn}`;
  return f || fn || '(unknown)';
}

export function summarize(file) {
  const p = JSON.parse(readFileSync(file, 'utf8'));
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const counts = new Map();
  for (const id of p.samples) counts.set(id, (counts.get(id) ?? 0) + 1);
  const items = new Map();
  let total = 0;
  for (const [id, n] of counts) {
    const node = byId.get(id);
    const k = itemOf(node.callFrame.functionName, node.callFrame.url);
    items.set(k, (items.get(k) ?? 0) + n);
    total += n;
  }
  const ms = (p.endTime - p.startTime) / 1000;
  return { ms, total, items: [...items].sort((a, b) => b[1] - a[1]).map(([k, n]) => [k, (100 * n) / total]) };
}

function print(title, file) {
  const s = summarize(file);
  console.log(`${title}: ${(s.ms / 1000).toFixed(2)} s profiled, ${s.total} samples`);
  for (const [k, pct] of s.items) if (pct >= 0.5) console.log(`  ${pct.toFixed(1).padStart(5)} %  ${k}`);
}

if (process.argv[2] === '--summarize') {
  const dir = process.argv[3];
  for (const f of readdirSync(dir).filter((f) => f.endsWith('.cpuprofile')).sort()) print(f, join(dir, f));
  process.exit(0);
}

const guest = process.argv[2] ?? 'bench-timer';
const elf = join(root, 'guests', guest, `${guest}.elf`);
const dir = mkdtempSync(join(tmpdir(), 'ftvm-bench-profile-'));
const key = join(dir, 'key');
writeFileSync(key, 'ef'.repeat(32));
console.log(`machine: ${cpus().length} CPUs, node ${process.version}, load average ${loadavg().map((x) => x.toFixed(1)).join(' ')}; guest ${guest}`);

const profDir = (name) => mkdtempSync(join(dir, `${name}-`));
const profArgs = (d) => ['--cpu-prof', `--cpu-prof-dir=${d}`];

const CASES = new Set((process.env.BENCH_CASES ?? '1,2,3').split(',').map(Number));

// 1. Processes over loopback TLS.
if (CASES.has(1)) {
  const pd = profDir('primary'), bd = profDir('backup');
  const arb = mkdtempSync(join(dir, 'arb-'));
  const common = ['--key-file', key, '--arbiter', `file:${arb}`];
  const t0 = performance.now();
  const p = spawn(process.execPath, [...profArgs(pd), cli, 'primary', elf, '--listen', '127.0.0.1:0', ...common], { stdio: ['ignore', 'ignore', 'pipe'] });
  const port = await new Promise((resolve) => createInterface({ input: p.stderr }).on('line', (l) => {
    const m = / primary listening [^ ]+:(\d+) /.exec(l);
    if (m) resolve(Number(m[1]));
  }));
  const b = spawn(process.execPath, [...profArgs(bd), cli, 'backup', elf, '--connect', `127.0.0.1:${port}`, ...common], { stdio: 'ignore' });
  await Promise.all([new Promise((r) => p.once('exit', r)), new Promise((r) => b.once('exit', r))]);
  console.log(`\n1. processes over loopback TLS (${((performance.now() - t0) / 1000).toFixed(1)} s wall)`);
  for (const [name, d] of [['primary process', pd], ['backup process', bd]]) {
    for (const f of readdirSync(d)) print(name, join(d, f));
  }
}

// 2. Backup in a worker, and 3. the guest alone, each in a child process of its own.
for (const [n, title, code] of [
  [2, 'createPair, backup in a worker', `const { createPair } = await import(${JSON.stringify(join(root, 'dist/runtime/pair.js'))});
     const pair = createPair({ image: (await import('node:fs')).readFileSync(${JSON.stringify(elf)}), backupIn: 'worker' });
     await pair.ready(); await pair.start(); process.exit(0);`],
  [3, 'the guest alone (no FT)', `const { Machine } = await import(${JSON.stringify(join(root, 'dist/runtime/machine.js'))});
     const { LiveEnv } = await import(${JSON.stringify(join(root, 'dist/runtime/env/live.js'))});
     const { runMachine } = await import(${JSON.stringify(join(root, 'dist/runtime/runner.js'))});
     const m = new Machine({ env: new LiveEnv() }); m.loadElf((await import('node:fs')).readFileSync(${JSON.stringify(elf)}));
     await runMachine(m, {});`],
]) {
  if (!CASES.has(n)) continue;
  const d = profDir(`case${n}`);
  const t0 = performance.now();
  // A file, not -e: a worker inherits the execArgv, and --input-type would break its start.
  const script = join(d, '..', `case${n}.mjs`);
  writeFileSync(script, code);
  const r = spawnSync(process.execPath, [...profArgs(d), script], { stdio: 'inherit' });
  if (r.status !== 0) console.log(`case ${n}: exit ${r.status}`);
  console.log(`\n${n}. ${title} (${((performance.now() - t0) / 1000).toFixed(1)} s wall)`);
  // CPU.<date>.<time>.<pid>.<thread id>.<seq>.cpuprofile: thread 0 is the main thread.
  for (const f of readdirSync(d).sort()) {
    const main = f.split('.')[4] === '0';
    print(n === 2 ? (main ? 'main thread (primary)' : 'worker thread (backup)') : 'main thread', join(d, f));
  }
}
if (!process.env.BENCH_KEEP) rmSync(dir, { recursive: true, force: true });
else console.log(`profiles kept in ${dir}`);
