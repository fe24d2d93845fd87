// FT across processes over TCP (TLS-PSK), against no FT. Not a test: prints numbers.
//   node bench/ft-tcp.mjs            (needs `npm run build`)
// 1. throughput ratio on guests/bench: primary and backup in separate processes (two cores)
//    vs one plain run; the primary's own clock from "backup attached" to "halted";
// 2. output-rule delay over loopback TCP on the seq guest (PrimaryNode stats().outputDelay);
// 3. failover, kill -9 of the primary -> first console byte from the backup gone live;
// 4. channel bandwidth: 64 KiB entries through one TLS-PSK channel on loopback.
// 5. `rtt`: the channel alone, one output marker out and its ack back (TLS and MessagePort);
// 6. `cost`: the channel's CPU per entry on each side, the backup end in another process,
//    one entry per event-loop turn as a primary's batches send them: an output marker each
//    turn (every one written and acked at once), or an input each turn (held, then coalesced).
// One row alone: `node bench/ft-tcp.mjs ratio|turns|delay|failover|bandwidth|rtt|cost`. `delay` also times
// the output rule with the backup in a worker thread (MessagePort channel, createPair), and
// runs the seq guest without FT beside each, so the two show side by side.
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir, cpus, loadavg } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const dist = (p) => join(root, 'dist', p);
const cli = join(root, 'bin/ftvm.js');
const RUNS = Number(process.env.BENCH_RUNS ?? 3);
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const dir = mkdtempSync(join(tmpdir(), 'ftvm-bench-tcp-'));
const key = join(dir, 'key');
writeFileSync(key, 'ab'.repeat(32));

function plain(elf) {
  return JSON.parse(execFileSync(process.execPath, [join(root, 'bench/ftvm-child.mjs'), elf], { encoding: 'utf8' }));
}

/** One FT pair as two processes; returns the primary's stats and its run time. */
async function ftPair(elf, extra = [], { backupExtra = [], env } = {}) {
  const arb = mkdtempSync(join(dir, 'arb-'));
  const common = ['--key-file', key, '--arbiter', `file:${arb}`, '--pair-id', 'bench', ...extra];
  const p = spawn(process.execPath, [cli, 'primary', elf, '--listen', '127.0.0.1:0', ...common], { stdio: ['ignore', 'ignore', 'pipe'], ...(env ? { env } : {}) });
  const lines = [];
  let port;
  const listening = new Promise((resolve) => createInterface({ input: p.stderr }).on('line', (l) => {
    lines.push(l);
    const m = / primary listening [^ ]+:(\d+) /.exec(l);
    if (m) resolve((port = Number(m[1])));
  }));
  await listening;
  const b = spawn(process.execPath, [cli, 'backup', elf, '--connect', `127.0.0.1:${port}`, ...common, ...backupExtra], { stdio: ['ignore', 'ignore', 'ignore'], ...(env ? { env } : {}) });
  await Promise.all([new Promise((r) => p.once('exit', r)), new Promise((r) => b.once('exit', r))]);
  const t = (re) => Number(/^\[([\d.]+)\]/.exec(lines.find((l) => re.test(l)) ?? '')?.[1]);
  const stats = lines.find((l) => / primary stats /.test(l)) ?? '';
  const num = (name) => Number(new RegExp(`${name} ([\\d.]+)`).exec(stats)?.[1]);
  return {
    seconds: t(/ primary halted /) - t(/ backup attached /),
    bytes: num('bytes'), entries: num('entries'), icount: num('icount'),
    p50: num('p50'), p99: num('p99'), failovers: lines.filter((l) => /claiming/.test(l)).length,
  };
}

const only = process.argv[2];
const row = (name) => only === undefined || only === name;
// The backup end of the `cost` row, in its own process: acks every entry it receives, and
// reports its CPU time once the `end` entry arrives.
if (only === 'cost-backup') {
  // BENCH_SOCKET_THREAD=on: the socket on a thread of its own (`ftvm backup --socket-thread on`).
  const threaded = process.env.BENCH_SOCKET_THREAD === 'on';
  const connect = threaded ? (await import(dist('runtime/channel/socket-thread.js'))).connectBackupThreaded : (await import(dist('runtime/channel/tcp.js'))).connectBackup;
  const bk = connect({ host: '127.0.0.1', port: Number(process.argv[3]), key: Buffer.alloc(32, 5), member: { instance: '', imageDigest: 'ef'.repeat(16), memoryMiB: 16 } });
  let c0 = process.cpuUsage();
  bk.entries$.subscribe((e) => {
    if (e.seq === 0) c0 = process.cpuUsage();
    bk.ack(e.seq);
    if (e.type === 'end') {
      const c = process.cpuUsage(c0);
      console.log(JSON.stringify({ cpuUs: c.user + c.system }));
    }
  });
  await new Promise((r) => bk.events$.subscribe({ complete: r }));
  process.exit(0);
}

console.log(`machine: ${cpus().length} CPUs, node ${process.version}, load average ${loadavg().map((x) => x.toFixed(1)).join(' ')}`);

const bench = join(root, 'guests/bench/bench.elf');
if (row('ratio')) {
const base = Array.from({ length: RUNS }, () => plain(bench));
const ft = [];
for (let i = 0; i < RUNS; i++) ft.push(await ftPair(bench));
const baseSec = median(base.map((r) => r.seconds));
const ftSec = median(ft.map((r) => r.seconds));
const f = ft[0];
console.log(`bench guest: ${base[0].instructions} instructions; no FT ${baseSec.toFixed(3)} s, FT over TCP ${ftSec.toFixed(3)} s: ratio ${(baseSec / ftSec).toFixed(3)} (median of ${RUNS})`);
console.log(`  log: ${f.bytes} bytes in ${f.entries} entries, ${((f.bytes * 1000) / f.icount).toFixed(4)} bytes per 1000 instructions, ${((f.bytes * 8) / ftSec / 1e6).toFixed(3)} Mbit/s; spurious failovers ${ft.reduce((n, r) => n + r.failovers, 0)}`);
}

// Event-loop turns and CPU per instruction of each process of a pair on the bench guest
// (bench/turns-preload.mjs in both), against the guest alone's CPU per instruction.
// BENCH_BACKUP_ARGS adds options to the backup here and in `delay` (e.g. `--socket-thread on`).
const backupExtra = (process.env.BENCH_BACKUP_ARGS ?? '').split(' ').filter(Boolean);
if (row('turns')) {
  const alone = Array.from({ length: RUNS }, () => plain(bench));
  const aloneNs = median(alone.map((r) => (r.cpuSeconds * 1e9) / r.instructions));
  const rows = [];
  for (let i = 0; i < RUNS; i++) {
    const file = join(dir, `turns-${i}.jsonl`);
    const r = await ftPair(bench, [], { backupExtra, env: { ...process.env, NODE_OPTIONS: `--import ${join(root, 'bench/turns-preload.mjs')}`, FTVM_TURNS_FILE: file } });
    const by = Object.fromEntries(readFileSync(file, 'utf8').trim().split('\n').map((l) => JSON.parse(l)).map((x) => [x.role, x]));
    rows.push({ ...r, p: by.primary, b: by.backup });
  }
  const per = (ms, r) => (ms * 1e6) / r.icount;
  const col = (f) => rows.map(f);
  const fmt = (xs, d = 2) => `${median(xs).toFixed(d)} (runs ${xs.map((x) => x.toFixed(d)).join(', ')})`;
  console.log(`turns and CPU, bench guest over TLS (${rows[0].icount} instructions; median of ${RUNS}; guest alone ${aloneNs.toFixed(2)} ns CPU per instruction${backupExtra.length ? `; backup ${backupExtra.join(' ')}` : ''}):`);
  console.log(`  backup: turns ${fmt(col((r) => r.b.turns), 0)}; main thread ${fmt(col((r) => per(r.b.mainCpuMs, r) / aloneNs))}× the guest's CPU per instruction, process ${fmt(col((r) => per(r.b.processCpuMs, r) / aloneNs))}×; main thread's run-queue wait ${fmt(col((r) => r.b.mainWaitMs), 0)} ms`);
  console.log(`  primary: turns ${fmt(col((r) => r.p.turns), 0)}; main thread ${fmt(col((r) => per(r.p.mainCpuMs, r) / aloneNs))}×, process ${fmt(col((r) => per(r.p.processCpuMs, r) / aloneNs))}×; wall ratio ${fmt(col((r) => median(alone.map((a) => a.seconds)) / r.seconds), 3)}`);
}

const seq = join(root, 'guests/seq/seq.elf');
if (row('delay')) {
  const us = (ms) => `${(ms * 1000).toFixed(0)} µs`;
  const seqRuns = [], seqPlain = [];
  for (let i = 0; i < RUNS; i++) {
    seqPlain.push(plain(seq).seconds);
    seqRuns.push(await ftPair(seq, [], { backupExtra }));
  }
  console.log(`output-rule delay over loopback TCP (seq guest, ${seqRuns[0].icount} instructions): p50 ${us(median(seqRuns.map((r) => r.p50)))}, p99 ${us(median(seqRuns.map((r) => r.p99)))} (median of ${RUNS} runs; runs p50 ${seqRuns.map((r) => us(r.p50)).join(', ')}; p99 ${seqRuns.map((r) => us(r.p99)).join(', ')})`);
  console.log(`  seq guest no FT ${median(seqPlain).toFixed(3)} s, FT over TCP ${median(seqRuns.map((r) => r.seconds)).toFixed(3)} s (primary: backup attached -> halted)`);
  const { createPair } = await import(dist('runtime/pair.js'));
  const image = readFileSync(seq);
  for (const backupIn of ['worker', 'thread']) {
    const runs = [];
    for (let i = 0; i < RUNS; i++) {
      const pair = createPair({ image, backupIn });
      await pair.ready();
      const t0 = performance.now();
      await pair.start();
      runs.push({ ...pair.stats().primary.outputDelay, seconds: (performance.now() - t0) / 1000 });
    }
    console.log(`output-rule delay, backup in ${backupIn === 'worker' ? 'a worker (MessagePort)' : 'the primary\'s thread'} (seq guest, createPair): p50 ${us(median(runs.map((r) => r.p50Ms)))}, p99 ${us(median(runs.map((r) => r.p99Ms)))} (median of ${RUNS}; runs p50 ${runs.map((r) => us(r.p50Ms)).join(', ')}); run ${median(runs.map((r) => r.seconds)).toFixed(3)} s vs no FT ${median(seqPlain).toFixed(3)} s`);
  }
}

if (row('failover')) {
const { runOnce } = await import(dist('runtime/faults/harness.js'));
const fo = [];
for (let i = 0; i < RUNS + 2; i++) {
  const d = mkdtempSync(join(dir, 'fo-'));
  const r = await runOnce({ id: i, cli, guest: seq, dir: d, fault: 'kill-primary', atMs: 700 + 300 * i, stalls: [] });
  if (r.failoverMs !== undefined && r.check.ok) fo.push(r.failoverMs);
}
console.log(`failover (kill -9 of the primary -> first output of the backup, default suspicion): median ${median(fo).toFixed(0)} ms, min ${Math.min(...fo).toFixed(0)}, max ${Math.max(...fo).toFixed(0)} (${fo.length} runs)`);
}

// The channel alone, no guest: one entry out, its ack back, 2000 times, nothing else on
// either event loop. TCP: both ends in this process over loopback TLS-PSK. MessagePort: the
// backup end in a worker thread that acks each entry as it arrives.
if (row('rtt')) {
  const N = 2000;
  const pct = (xs) => {
    const s = [...xs].sort((a, b) => a - b);
    return `p50 ${(s[Math.floor(s.length / 2)] * 1000).toFixed(0)} µs, p99 ${(s[Math.floor(s.length * 0.99)] * 1000).toFixed(0)} µs`;
  };
  const roundTrips = async (end) => {
    const rtt = [];
    for (let i = 0; i < N; i++) {
      const t = performance.now();
      const acked = new Promise((r) => { const sub = end.acked$.subscribe((a) => { if (a === i) { r(); queueMicrotask(() => sub.unsubscribe()); } }); });
      // An output marker: the entry whose ack the output rule waits for.
      end.send({ seq: i, icount: i * 1000, type: 'output', kind: 'console', count: i + 1 });
      await acked;
      rtt.push(performance.now() - t);
    }
    return rtt.slice(100);
  };
  const { listenPrimary, connectBackup } = await import(dist('runtime/channel/tcp.js'));
  const k = Buffer.alloc(32, 9);
  const l = await listenPrimary({ host: '127.0.0.1', port: 0, key: k, identity: { instance: 'rtt-1', imageDigest: 'ab'.repeat(16), memoryMiB: 16 } });
  const bk = connectBackup({ host: '127.0.0.1', port: l.port, key: k, member: { instance: '', imageDigest: 'ab'.repeat(16), memoryMiB: 16 } });
  await l.end.attached;
  bk.entries$.subscribe((e) => bk.ack(e.seq));
  console.log(`channel round trip, TLS-PSK on loopback (output marker out, ack back; ${N} times): ${pct(await roundTrips(l.end))}`);
  bk.close();
  await l.close();
  const { Worker, MessageChannel } = await import('node:worker_threads');
  const { createPortPrimary } = await import(dist('runtime/channel/port.js'));
  const code = `const { workerData } = require('node:worker_threads');
import(${JSON.stringify('file://' + dist('runtime/channel/port.js'))}).then(({ createPortBackup }) => {
  const { backup } = createPortBackup(workerData.port, { ownsPort: true });
  backup.entries$.subscribe((e) => backup.ack(e.seq));
});`;
  const { port1, port2 } = new MessageChannel();
  const w = new Worker(code, { eval: true, workerData: { port: port2 }, transferList: [port2] });
  const p = createPortPrimary(port1, { ownsPort: true });
  console.log(`channel round trip, MessagePort to a worker thread (${N} times): ${pct(await roundTrips(p.primary))}`);
  p.dispose();
  await w.terminate();
}

if (row('cost')) {
  const N = 20_000;
  const { listenPrimary } = await import(dist('runtime/channel/tcp.js'));
  const oneKind = async (kind) => {
    const l = await listenPrimary({ host: '127.0.0.1', port: 0, key: Buffer.alloc(32, 5), identity: { instance: 'cost-1', imageDigest: 'ef'.repeat(16), memoryMiB: 16 } });
    const child = spawn(process.execPath, [fileURLToPath(import.meta.url), 'cost-backup', String(l.port)], { stdio: ['ignore', 'pipe', 'inherit'] });
    const report = new Promise((r) => createInterface({ input: child.stdout }).once('line', (x) => r(JSON.parse(x))));
    const end = l.end;
    await end.attached;
    let acks = 0;
    end.acked$.subscribe(() => acks++);
    const entry = (i) => (kind === 'marker' ? { seq: i, icount: i * 1000, type: 'output', kind: 'console', count: i + 1 } : { seq: i, icount: i * 1000, type: 'timer' });
    const acked = (seq) => new Promise((r) => { const sub = end.acked$.subscribe((a) => { if (a >= seq) { r(); queueMicrotask(() => sub.unsubscribe()); } }); });
    acks = 0;
    const c0 = process.cpuUsage();
    const t0 = performance.now();
    for (let i = 0; i < N; i++) {
      end.send(entry(i));
      await new Promise((r) => setImmediate(r));
    }
    end.send({ seq: N, icount: N * 1000, type: 'end', code: 0 });
    await acked(N);
    const wall = performance.now() - t0;
    const c = process.cpuUsage(c0);
    const b = await report;
    end.close();
    await l.close();
    child.kill();
    return { primary: (c.user + c.system) / N, backup: b.cpuUs / N, wall: (wall * 1000) / N, acks: acks / N };
  };
  for (const kind of ['marker', 'input']) {
    const runs = [];
    for (let i = 0; i < RUNS; i++) runs.push(await oneKind(kind));
    const m = (k) => median(runs.map((r) => r[k])).toFixed(2);
    console.log(`channel cost, TLS-PSK to a backup process${process.env.BENCH_SOCKET_THREAD === 'on' ? ' (its socket on a thread)' : ''}, ${kind === 'marker' ? 'an output marker' : 'an input (timer entry)'} per event-loop turn (${N} turns, median of ${RUNS}): primary ${m('primary')} µs CPU per entry, backup ${m('backup')} µs; ${m('acks')} acks per entry; ${m('wall')} µs per turn`);
  }
}

if (row('bandwidth')) {
const { listenPrimary, connectBackup } = await import(dist('runtime/channel/tcp.js'));
const k = Buffer.alloc(32, 7);
const l = await listenPrimary({ host: '127.0.0.1', port: 0, key: k, highWaterBytes: 64 << 20, identity: { instance: 'bw-1', imageDigest: 'cd'.repeat(16), memoryMiB: 16 } });
const bk = connectBackup({ host: '127.0.0.1', port: l.port, key: k, member: { instance: '', imageDigest: 'cd'.repeat(16), memoryMiB: 16 } });
await l.end.attached;
bk.entries$.subscribe((e) => bk.ack(e.seq));
const frame = new Uint8Array(65536).map((_, i) => (i * 31) & 0xff);
const N = 4000;
const t0 = performance.now();
const done = new Promise((r) => l.end.acked$.subscribe((a) => { if (a === N - 1) r(); }));
for (let i = 0; i < N; i++) {
  l.end.send({ seq: i, icount: i, type: 'net-rx', frame });
  if (i % 64 === 63) await new Promise((r) => setImmediate(r));
}
await done;
const s = (performance.now() - t0) / 1000;
console.log(`channel bandwidth (TLS-PSK, loopback, one process both ends): ${((N * 65536) / s / 1e6).toFixed(0)} MB/s = ${((N * 65536 * 8) / s / 1e9).toFixed(2)} Gbit/s; cipher ${'ECDHE-PSK-CHACHA20-POLY1305'}`);
await l.close();
bk.close();
}
rmSync(dir, { recursive: true, force: true });
process.exit(0);
