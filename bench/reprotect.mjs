// Re-protection across processes (DESIGN §3). Not a test: prints numbers.
//   node bench/reprotect.mjs            (needs `npm run build`; BENCH_ROUNDS=5)
// 1. Per round, a 16 MiB seq guest (the default --mem) as `ftvm primary` whose first backup is
//    killed -9, so it wins the arbiter and serves alone; then `ftvm backup --join` joins it.
//    (A fresh pair per round: the seq guest runs ~3 s.) Per round: the time from the joiner's
//    start to "protected" as the primary sees it (join -> protected: its note), the guest's
//    pause for the snapshot copy (the primary's note), the snapshot's bytes on the wire, and
//    the longest gap in the primary's released outputs around the join (outputs wait for the
//    snapshot's ack, DESIGN §3 output rule, while the guest keeps running).
// 2. The worst case the seq guest does not reach: 16 MiB of incompressible RAM (random
//    bytes), in this process: snapshot + deflate, log framing and the TLS write of the frame
//    (all on the primary's thread, so all of it is pause), and the backup's restore.
import { spawn } from 'node:child_process';
import { randomFillSync } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const dist = (p) => join(root, 'dist', p);
const cli = join(root, 'bin/ftvm.js');
const seq = join(root, 'guests/seq/seq.elf');
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5);
const SUSPECT_MS = '250';
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const dir = mkdtempSync(join(tmpdir(), 'ftvm-bench-reprotect-'));
const key = join(dir, 'key');
writeFileSync(key, 'ab'.repeat(32));

function start(name, args) {
  const child = spawn(process.execPath, [cli, ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
  const lines = [];
  const waiters = [];
  createInterface({ input: child.stderr }).on('line', (l) => {
    lines.push(l);
    for (const w of [...waiters]) {
      const m = w.re.exec(l);
      if (m) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve(m);
      }
    }
  });
  const exit = new Promise((resolve) => child.once('exit', (code, sig) => resolve(sig ?? code)));
  const wait = (re, ms = 20_000) => new Promise((resolve, reject) => {
    const hit = lines.map((l) => re.exec(l)).find(Boolean);
    if (hit) return resolve(hit);
    const w = { re, resolve };
    waiters.push(w);
    setTimeout(() => reject(new Error(`${name}: no ${re} in ${ms} ms:\n${lines.join('\n')}`)), ms).unref();
    exit.then(() => setTimeout(() => reject(new Error(`${name} exited before ${re}:\n${lines.join('\n')}`)), 50));
  });
  return { child, lines, wait, exit };
}

/** Polls a growing --outputs file; returns the longest time without a new output between start and stop. */
function watchOutputs(file) {
  let size = existsSync(file) ? statSync(file).size : 0;
  let last = performance.now();
  let maxGap = 0;
  const t = setInterval(() => {
    const s = existsSync(file) ? statSync(file).size : 0;
    const now = performance.now();
    if (s > size) {
      maxGap = Math.max(maxGap, now - last);
      last = now;
      size = s;
    }
  }, 2);
  return () => {
    clearInterval(t);
    return Math.max(maxGap, performance.now() - last);
  };
}

async function processRound(r) {
  const common = (out) => ['--key-file', key, '--arbiter', `file:${dir}`, '--pair-id', `bench${r}`, '--suspect-ms', SUSPECT_MS, '--outputs', join(dir, out)];
  const p = start('primary', ['primary', seq, '--listen', '127.0.0.1:0', ...common(`p${r}.jsonl`)]);
  const b = start('backup', ['backup', seq, '--connect', `127.0.0.1:${(await p.wait(/primary listening 127\.0\.0\.1:(\d+)/))[1]}`, ...common(`b${r}.jsonl`)]);
  const port = (await p.wait(/primary listening 127\.0\.0\.1:(\d+)/))[1];
  try {
    await p.wait(/primary state \{"protected"/);
    await sleep(300);
    b.child.kill('SIGKILL');
    await p.wait(/primary alone: a new backup may join on port \d+ \(generation 2\)/);
    const gap = watchOutputs(join(dir, `p${r}.jsonl`));
    await sleep(100);
    const t0 = performance.now();
    const j = start('joiner', ['backup', seq, '--join', `127.0.0.1:${port}`, '--name', `joiner${r}`, ...common(`j${r}.jsonl`)]);
    const joined = await p.wait(/backup joining from .*: snapshot (\d+) bytes at icount \d+, guest paused ([\d.]+) ms/);
    const prot = await p.wait(/primary re-protected: join to protected in ([\d.]+) ms/);
    const startToProtected = performance.now() - t0;
    await sleep(100);
    const outputGap = gap();
    j.child.kill('SIGKILL');
    return { bytes: Number(joined[1]), pauseMs: Number(joined[2]), joinToProtectedMs: Number(prot[1]), startToProtectedMs: startToProtected, outputGapMs: outputGap };
  } finally {
    for (const c of [p, b]) c.child.kill('SIGKILL');
    await p.exit;
  }
}

async function processRounds() {
  const rounds = [];
  for (let r = 1; r <= ROUNDS; r++) rounds.push(await processRound(r));
  return rounds;
}

async function denseWorstCase() {
  const { Machine } = await import(dist('runtime/machine.js'));
  const { LiveEnv } = await import(dist('runtime/env/live.js'));
  const { packSnapshot, unpackSnapshot } = await import(dist('runtime/ft/snapshot-wire.js'));
  const { listenPrimary, connectBackup } = await import(dist('runtime/channel/tcp.js'));
  const k = readFileSync(key);
  const m = new Machine({ memoryMiB: 16, env: new LiveEnv() });
  randomFillSync(m.bus.ram);
  const out = [];
  for (let i = 0; i < 3; i++) {
    const l = await listenPrimary({ host: '127.0.0.1', port: 0, key: Buffer.from(k.toString().trim(), 'hex') });
    const be = connectBackup({ host: '127.0.0.1', port: l.port, key: Buffer.from(k.toString().trim(), 'hex'), join: false });
    await l.end.attached;
    let got;
    const arrived = new Promise((resolve) => be.entries$.subscribe((e) => { got = e; be.ack(e.seq); resolve(performance.now()); }));
    const t0 = performance.now();
    const data = packSnapshot(m);
    const t1 = performance.now();
    l.end.send({ seq: 0, icount: m.icount, type: 'snapshot', data });
    await null; // the flush microtask: framing and the TLS write happen before this resumes
    const t2 = performance.now();
    const tArr = await arrived;
    const t3 = performance.now();
    const blank = new Machine({ memoryMiB: 16, env: new LiveEnv() });
    blank.restore(unpackSnapshot(got.data));
    const t4 = performance.now();
    if (Buffer.compare(blank.bus.ram, m.bus.ram) !== 0) throw new Error('restore differs');
    out.push({ bytes: data.length, packMs: t1 - t0, sendMs: t2 - t1, transferMs: tArr - t0, restoreMs: t4 - t3 });
    be.close();
    await l.close();
  }
  return out;
}

try {
  console.log(`re-protection of a 16 MiB seq guest across processes (TLS-PSK on loopback), ${ROUNDS} rounds`);
  const rounds = await processRounds();
  for (const [i, r] of rounds.entries()) {
    console.log(`  round ${i + 1}: join->protected ${r.joinToProtectedMs.toFixed(1)} ms, joiner start->protected ${r.startToProtectedMs.toFixed(0)} ms, guest paused ${r.pauseMs.toFixed(1)} ms for the snapshot copy, snapshot ${r.bytes} bytes, longest output gap ${r.outputGapMs.toFixed(0)} ms`);
  }
  if (rounds.length > 0) {
    console.log(`  median: join->protected ${median(rounds.map((r) => r.joinToProtectedMs)).toFixed(1)} ms, start->protected ${median(rounds.map((r) => r.startToProtectedMs)).toFixed(0)} ms, pause ${median(rounds.map((r) => r.pauseMs)).toFixed(1)} ms, output gap ${median(rounds.map((r) => r.outputGapMs)).toFixed(0)} ms`);
  }
  console.log('worst case: 16 MiB of random RAM (incompressible), in one process');
  const dense = await denseWorstCase();
  for (const d of dense) {
    console.log(`  snapshot ${(d.bytes / 2 ** 20).toFixed(1)} MiB: pack ${d.packMs.toFixed(0)} ms + frame/TLS write ${d.sendMs.toFixed(0)} ms (= guest pause), arrived after ${d.transferMs.toFixed(0)} ms, restore ${d.restoreMs.toFixed(0)} ms`);
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
