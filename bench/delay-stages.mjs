// Where a held output's time goes, stage by stage, across the two processes of a pair (issue
// 14, output-rule delay over TCP). Not a test: prints numbers.
//   node bench/delay-stages.mjs [TREE]        (needs `npm run build` in TREE, default this one)
// Runs the seq guest as `ftvm primary` + `ftvm backup` over TLS-PSK on loopback, as
// `bench/ft-tcp.mjs delay` does, with bench/delay-stages-preload.mjs in both processes (it
// stamps each output marker at every stage with CLOCK_MONOTONIC, shared by the processes),
// then joins the stamps by the marker's seq and prints, per stage, the median, p90 and p99 of
// the time spent in it, the share of acks sent on receipt or only for what was replayed
// (ReplayBacklog), how far the replay was behind each marker when the chart took it, the
// batch lengths and event-loop turns of both nodes. TREE: another worktree (a baseline of
// main), traced by this same preload. BENCH_RUNS (default 3) pairs, one table each and one of
// all; BENCH_BACKUP_ARGS adds options to the backup (`--socket-thread on`). BENCH_PIN=1 runs
// the primary on CPU 0 and the backup on CPU 1 (taskset): on one host a loopback write wakes
// its reader with a sync hint, and the scheduler may pull the reader onto the writer's core,
// where the two busy processes then share one core (two hosts never do).
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir, cpus, loadavg } from 'node:os';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

const here = fileURLToPath(new URL('..', import.meta.url));
const tree = resolve(process.argv[2] ?? here);
const cli = join(tree, 'bin/ftvm.js');
const seq = join(tree, 'guests/seq/seq.elf');
const preload = join(here, 'bench/delay-stages-preload.mjs');
const RUNS = Number(process.env.BENCH_RUNS ?? 3);
const backupExtra = (process.env.BENCH_BACKUP_ARGS ?? '').split(' ').filter(Boolean);
const pin = process.env.BENCH_PIN === '1';
const dir = mkdtempSync(join(tmpdir(), 'ftvm-delay-stages-'));
const key = join(dir, 'key');
writeFileSync(key, 'ab'.repeat(32));

async function tracedPair(i) {
  const arb = mkdtempSync(join(dir, 'arb-'));
  const file = join(dir, `stages-${i}.jsonl`);
  const env = { ...process.env, NODE_OPTIONS: `--import ${preload}`, FTVM_STAGES_FILE: file };
  const common = ['--key-file', key, '--arbiter', `file:${arb}`, '--pair-id', 'bench'];
  const on = (cpu, args) => (pin ? ['taskset', ['-c', String(cpu), process.execPath, ...args]] : [process.execPath, args]);
  const p = spawn(...on(0, [cli, 'primary', seq, '--listen', '127.0.0.1:0', ...common]), { stdio: ['ignore', 'ignore', 'pipe'], env });
  const lines = [];
  const port = await new Promise((res) => createInterface({ input: p.stderr }).on('line', (l) => {
    lines.push(l);
    const m = / primary listening [^ ]+:(\d+) /.exec(l);
    if (m) res(Number(m[1]));
  }));
  const b = spawn(...on(1, [cli, 'backup', seq, '--connect', `127.0.0.1:${port}`, ...common, ...backupExtra]), { stdio: ['ignore', 'ignore', 'ignore'], env });
  await Promise.all([new Promise((r) => p.once('exit', r)), new Promise((r) => b.once('exit', r))]);
  const stats = lines.find((l) => / primary stats /.test(l)) ?? '';
  const num = (name) => Number(new RegExp(`${name} ([\\d.]+)`).exec(stats)?.[1]);
  const recs = readFileSync(file, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
  const main = (role) => recs.find((r) => r.role === role && r.thread === 'main');
  const sock = recs.filter((r) => r.thread === 'socket');
  return { primary: main('primary'), backup: main('backup'), socket: { reads: sock.flatMap((s) => s.reads), acks: sock.flatMap((s) => s.acks) }, p50: num('p50'), p99: num('p99'), failovers: lines.filter((l) => /claiming/.test(l)).length };
}

/** One row per marker with every stamp of both processes. */
function join2(run) {
  const bySeq = new Map(run.backup.markers.map((m) => [m.seq, m]));
  const reads = run.socket.reads;
  const acks = run.socket.acks;
  const rows = [];
  for (const p of run.primary.markers) {
    const b = bySeq.get(p.seq);
    if (!b || p.released === undefined) continue;
    const r = { ...b, ...p };
    if (reads.length > 0 && b.readEnd !== undefined) {
      // The socket thread's read that brought the chunk's last byte.
      const k = reads.findIndex(([off]) => off >= b.readEnd);
      if (k >= 0) r.threadRead = reads[k][1];
    }
    if (acks.length > 0 && b.ackSeq !== undefined) {
      const a = acks.find(([s]) => s >= b.ackSeq);
      if (a) r.threadWrote = a[1];
    }
    rows.push(r);
  }
  return rows;
}

const pct = (xs, q) => {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))];
};
const f = (x) => (Number.isNaN(x) ? '—' : x >= 10_000 ? `${(x / 1000).toFixed(1)} ms` : `${x.toFixed(0)} µs`);

function table(rows, threaded) {
  const stages = [
    ['output produced → marker held (batch end; not in the delay)', 'produced', 'held'],
    ['held → handed to the channel', 'held', 'sent'],
    ['handed → chunk written to the socket', 'sent', 'written'],
    ...(threaded
      ? [['written → socket thread read it', 'written', 'threadRead'], ['socket thread read → replay thread got it', 'threadRead', 'read']]
      : [['written → backup read it', 'written', 'read']]),
    ['read → decoded', 'read', 'decoded'],
    ['decoded → backup chart took it', 'decoded', 'taken'],
    ['taken → ack asked (sendAck)', 'taken', 'ackAsked'],
    ['ack asked → ack written', 'ackAsked', 'ackWritten'],
    ...(threaded
      ? [['ack written → socket thread wrote it', 'ackWritten', 'threadWrote'], ['socket thread wrote → primary read the ack', 'threadWrote', 'ackRead']]
      : [['ack written → primary read the ack', 'ackWritten', 'ackRead']]),
    ['ack read → output released', 'ackRead', 'released'],
    ['= the delay (held → released)', 'held', 'released'],
  ];
  const out = [];
  for (const [name, a, b] of stages) {
    const xs = rows.filter((r) => r[a] !== undefined && r[b] !== undefined).map((r) => r[b] - r[a]);
    out.push(`  ${name.padEnd(58)} p50 ${f(pct(xs, 0.5)).padStart(8)}  p90 ${f(pct(xs, 0.9)).padStart(8)}  p99 ${f(pct(xs, 0.99)).padStart(8)}  (${xs.length})`);
  }
  return out.join('\n');
}

/**
 * What a node was doing when a message was written to it (`from`) until it read it (`to`):
 * inside a batch (the rest of that batch, then from its end to the read) or between batches.
 */
function waits(rows, tl, from, to) {
  const n = tl.length / 3;
  const inside = { rest: [], after: [], long: 0 };
  const between = [];
  for (const r of rows) {
    const w = r[from];
    const rd = r[to];
    if (w === undefined || rd === undefined) continue;
    let lo = 0;
    let hi = n;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (tl[mid * 3 + 1] < w) lo = mid + 1;
      else hi = mid;
    }
    if (lo < n && tl[lo * 3] <= w) {
      const end = tl[lo * 3 + 1];
      inside.rest.push(Math.min(end, rd) - w);
      inside.after.push(Math.max(0, rd - end));
      if (tl[lo * 3 + 2] === 0) inside.long++;
    } else between.push(rd - w);
  }
  const q = (xs) => `p50 ${f(pct(xs, 0.5))}, p90 ${f(pct(xs, 0.9))}, p99 ${f(pct(xs, 0.99))}`;
  return `inside a batch ${inside.rest.length} (${inside.long} of them whole batches): rest of the batch ${q(inside.rest)}; its end → read ${q(inside.after)}; between batches ${between.length}: ${q(between)}`;
}

function summary(runs, rows) {
  const kinds = rows.reduce((k, r) => ((k[r.kind ?? '?'] = (k[r.kind ?? '?'] ?? 0) + 1), k), {});
  const behind = rows.filter((r) => r.behind !== undefined).map((r) => r.behind);
  const ahead = behind.filter((x) => x > 0).length;
  const idle = rows.filter((r) => r.idle).length;
  const sum = (xs) => xs.reduce((a, b) => a + b, 0);
  const sched = (role) => runs.map((r) => `${r[role].sched.cpuMs.toFixed(0)}/${r[role].sched.waitMs.toFixed(0)}/${r[role].sched.wallMs.toFixed(0)}`).join(', ');
  const inBatches = (role) => runs.map((r) => (sum([...r[role].batches.sliced, ...r[role].batches.whole]) / 1000).toFixed(0)).join(', ');
  const bat = (role, kind) => runs.flatMap((r) => r[role].batches[kind]);
  const bl = (role, kind) => {
    const xs = bat(role, kind);
    return `${kind} ${xs.length} (p50 ${f(pct(xs, 0.5))}, p99 ${f(pct(xs, 0.99))})`;
  };
  // The primary's own figure is per output: weigh each marker by the outputs it held.
  const perOutput = rows.flatMap((r) => Array(r.outputs ?? 1).fill(r.released - r.held));
  const single = rows.filter((r) => r.outputs === 1).map((r) => r.released - r.held);
  const multi = rows.filter((r) => r.outputs > 1).map((r) => r.released - r.held);
  return [
    `  delay per output (as the primary counts it): p50 ${f(pct(perOutput, 0.5))}, p99 ${f(pct(perOutput, 0.99))}; markers of one output ${single.length} (p50 ${f(pct(single, 0.5))}), of more ${multi.length} (p50 ${f(pct(multi, 0.5))})`,
    `  acks: ${Object.entries(kinds).map(([k, n]) => `${k} ${n}`).join(', ')} (replayed: ReplayBacklog held acks to the replay, the bounded-lag rule)`,
    `  main threads, CPU / run-queue wait / wall ms: primary ${sched('primary')}; backup ${sched('backup')}`,
    `  ms inside batches: primary ${inBatches('primary')}; backup ${inBatches('backup')}`,
    `  backup idle at its horizon when the marker came: ${idle} of ${rows.length}`,
    ...(runs.length === 1 ? [
      `  backup when the marker was written: ${waits(rows, runs[0].backup.timeline, 'written', 'read')}`,
      `  primary when the ack was written: ${waits(rows, runs[0].primary.timeline, 'ackWritten', 'ackRead')}`,
    ] : []),
    `  replay behind the marker when the chart took it: ${ahead} of ${behind.length} markers (instructions still to replay: p50 ${pct(behind, 0.5)}, p90 ${pct(behind, 0.9)}, max ${Math.max(...behind)})`,
    `  primary batches: ${bl('primary', 'sliced')}, ${bl('primary', 'whole')}; turns per run ${runs.map((r) => r.primary.turns).join(', ')}`,
    `  backup batches: ${bl('backup', 'sliced')}, ${bl('backup', 'whole')}; turns per run ${runs.map((r) => r.backup.turns).join(', ')}`,
  ].join('\n');
}

console.log(`machine: ${cpus().length} CPUs, node ${process.version}, load average ${loadavg().map((x) => x.toFixed(1)).join(' ')}; tree ${tree}${backupExtra.length ? `; backup ${backupExtra.join(' ')}` : ''}${pin ? '; primary on CPU 0, backup on CPU 1' : ''}`);
const runs = [];
const threaded = backupExtra.join(' ').includes('--socket-thread on');
for (let i = 0; i < RUNS; i++) {
  const run = await tracedPair(i);
  runs.push(run);
  const rows = join2(run);
  console.log(`run ${i + 1}: ${rows.length} markers; primary's own figure p50 ${f(run.p50 * 1000)}, p99 ${f(run.p99 * 1000)}${run.failovers ? `; ${run.failovers} failover lines` : ''}`);
  console.log(table(rows, threaded));
  console.log(summary([run], rows));
  // A line's first byte ends a whole batch only when nothing is held, i.e. when the last
  // line's ack came back in time: these markers are the pair's calm moments.
  console.log(`  markers of one output (a calm moment: nothing was held when the line began):`);
  console.log(table(rows.filter((r) => r.outputs === 1), threaded));
}
if (RUNS > 1) {
  const all = runs.flatMap(join2);
  console.log(`all ${RUNS} runs: ${all.length} markers`);
  console.log(table(all, threaded));
  console.log(summary(runs, all));
}
rmSync(dir, { recursive: true, force: true });
