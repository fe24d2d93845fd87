// What the guest's thread pays for a snapshot's deflate and a log write, on this thread or
// handed to libuv's pool (tried for `ftvm record` in its fourth pass, and reverted: see BENCHMARKS), in CPU of this
// process's main thread (/proc/self/task/PID/stat; many repetitions, so 10 ms ticks do not
// matter) and counted per operation: a count, steady on a loaded host where wall time is not.
//   node bench/record-offload.mjs [guest] [reps]     (needs `npm run build`; guest: bench-timer)
// The snapshot bodies are the guest's own: one run with a SnapshotChain (deltas every 10 M
// instructions, as `record` takes them), kept unpacked. The log blocks are 600 bytes (a
// recording's usual write every 1 M instructions).
import { execFileSync } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync, write, writeSync } from 'node:fs';
import { deflate, deflateSync } from 'node:zlib';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const guest = process.argv[2] ?? 'bench-timer';
const REPS = Number(process.argv[3] ?? 5);
const dist = (p) => import(join(root, 'dist/runtime', p));
const { Machine } = await dist('machine.js');
const { DeterministicEnv } = await dist('env/deterministic.js');
const { runMachine } = await dist('runner.js');
const { SnapshotChain, chainPolicy } = await dist('snapshot.js');

const TICK_MS = 1000 / Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim());
const threadMs = () => {
  const stat = readFileSync(`/proc/self/task/${process.pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) * TICK_MS;
};
const say = (s) => process.stdout.write(`${s}\n`);

const m = new Machine({ env: new DeterministicEnv({ seed: 1 }) });
m.loadElf(readFileSync(join(root, 'guests', guest, `${guest}.elf`)));
const chain = new SnapshotChain(m, chainPolicy(10_000_000));
const bodies = [chain.takeUnpacked()];
await runMachine(m, { onBatch: () => { const u = chain.pollUnpacked(); if (u) bodies.push(u); } });
const rawBytes = bodies.reduce((n, u) => n + u.body.length, 0);
say(`${guest}: ${bodies.length} snapshots, ${(rawBytes / 1024).toFixed(0)} KiB unpacked; load average ${loadavg()[0].toFixed(1)}; ${REPS} repetitions`);

const opts = (u) => (u.full ? { level: 1 } : { level: 1, dictionary: u.dictionary });
const deflateAsync = (u) => new Promise((res, rej) => deflate(u.body, opts(u), (e, z) => (e ? rej(e) : res(z))));

const dir = mkdtempSync(join(tmpdir(), 'ftvm-offload-'));
const fd = openSync(join(dir, 'log'), 'w');
const block = new Uint8Array(600).fill(7);
const WRITES = 10_000;
const writeAsync = () => new Promise((res, rej) => write(fd, block, 0, block.length, null, (e) => (e ? rej(e) : res())));

// Each measurement runs long enough (hundreds of ms) for the thread's 10 ms ticks.
const ROUNDS = 10;
const modes = {
  'deflate on this thread': async () => { for (let k = 0; k < ROUNDS; k++) for (const u of bodies) deflateSync(u.body, opts(u)); return ROUNDS * bodies.length; },
  'deflate in the pool': async () => { for (let k = 0; k < ROUNDS; k++) for (const u of bodies) await deflateAsync(u); return ROUNDS * bodies.length; },
  'write on this thread': async () => { for (let i = 0; i < WRITES; i++) writeSync(fd, block); return WRITES; },
  'write in the pool': async () => { for (let i = 0; i < WRITES; i++) await writeAsync(); return WRITES; },
};
const res = Object.fromEntries(Object.keys(modes).map((k) => [k, []]));
for (let r = -1; r < REPS; r++) {
  for (const [name, f] of Object.entries(modes)) {
    const t0 = threadMs();
    const n = await f();
    if (r >= 0) res[name].push(((threadMs() - t0) * 1000) / n);
  }
}
closeSync(fd);
rmSync(dir, { recursive: true, force: true });
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
for (const [name, xs] of Object.entries(res)) say(`${name.padEnd(24)} main-thread CPU µs per operation: median ${median(xs).toFixed(1)} (min ${Math.min(...xs).toFixed(1)}, max ${Math.max(...xs).toFixed(1)})`);
