// Preloaded (node --import) by bench/replay-cost.mjs `counts`: counts, per thread, what a run
// of the CPU does between and inside its batches, and at exit (or when the worker ends)
// appends one JSON line per thread to $FTVM_COUNTS_FILE:
//   slices       Machine.step calls (a replay slice, a primary's batch)
//   softEnds     slices that ended short of their budget at a block boundary (soft budget)
//   stopEntry    slices cut at a logged input's icount by ReplayEnv.nextAt (the replay's stops)
//   stopHorizon  slices cut at the log's horizon (the backup caught up with its log)
//   zeroSlices   slices that ran no instruction (at the horizon: the CPU waits)
//   values       ReplayEnv.value calls (clock reads answered from the log)
//   nextAtScanned entries ReplayEnv.nextAt looked at (its scan past value entries)
//   chartEvents  Actor.send calls (xstate: the CPU chart's batchEnded per batch, node charts)
//   hartRuns     Hart.run calls; jitRuns Jit.run calls; jitInstr instructions JIT blocks retired;
//   instr        instructions retired in all (interpreted = instr - jitInstr)
//   turns        setImmediate calls; microtasks queueMicrotask calls
// plus the thread's CPU and run-queue wait (schedstat). Wrapping costs CPU: use it for counts,
// never for times. With FTVM_COUNTS=0 it counts nothing and only writes each thread's CPU and
// run-queue wait (the times bench/replay-cost.mjs compares). A backup worker is terminated by
// the main thread once it has the outcome, so the worker writes its line as it posts `done`.
import { appendFileSync, readFileSync } from 'node:fs';
import { isMainThread, parentPort, threadId } from 'node:worker_threads';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import { countLoopHops } from './lib/loop-counts.mjs';

const file = process.env.FTVM_COUNTS_FILE;
if (file) {
  const counting = process.env.FTVM_COUNTS !== '0';
  // The checkout whose classes the run uses (bench/replay-cost.mjs runs a baseline tree's too).
  const root = process.env.FTVM_COUNTS_ROOT ?? fileURLToPath(new URL('..', import.meta.url));
  const d = (p) => import(join(root, 'dist/runtime', p));
  const { Machine } = await d('machine.js');
  const { ReplayEnv } = await d('env/replay.js');
  const { Hart } = await d('cpu/hart.js');
  const { Jit } = await d('cpu/jit.js');
  const { Actor } = await import(join(root, 'node_modules/xstate/dist/xstate.cjs.js'));
  const c = { slices: 0, softEnds: 0, stopEntry: 0, stopHorizon: 0, zeroSlices: 0, values: 0, nextAtScanned: 0, chartEvents: 0, hartRuns: 0, jitRuns: 0, jitInstr: 0, instr: 0, turns: 0, microtasks: 0 };
  if (counting) {
    let lastNextAt = -1;
    let lastWasHorizon = false;
    const step = Machine.prototype.step;
    Machine.prototype.step = function (max, ...rest) {
      lastNextAt = -1;
      const before = this.hart.icount;
      const r = step.call(this, max, ...rest);
      c.slices++;
      const n = this.hart.icount - before;
      c.instr += n;
      if (n === 0) c.zeroSlices++;
      else if (this.hart.icount === lastNextAt) {
        if (lastWasHorizon) c.stopHorizon++;
        else c.stopEntry++;
      } else if (r === 0 && n < max) c.softEnds++;
      return r;
    };
    const nextAt = ReplayEnv.prototype.nextAt;
    ReplayEnv.prototype.nextAt = function (icount) {
      const r = nextAt.call(this, icount);
      lastNextAt = r;
      lastWasHorizon = r >= this.horizon;
      // What the scan looks at: the queue from head to the first entry that stops a batch.
      const q = this.queue;
      for (let i = this.head; i < q.length; i++) {
        c.nextAtScanned++;
        const e = q[i];
        if (e.icount >= this.horizon) break;
        if (e.type !== 'value' && e.type !== 'progress' && e.type !== 'snapshot') break;
      }
      return r;
    };
    const push = ReplayEnv.prototype.push;
    c.entries = {};
    ReplayEnv.prototype.push = function (e) {
      c.entries[e.type] = (c.entries[e.type] ?? 0) + 1;
      return push.call(this, e);
    };
    const value = ReplayEnv.prototype.value;
    ReplayEnv.prototype.value = function (kind, icount) {
      c.values++;
      return value.call(this, kind, icount);
    };
    const hrun = Hart.prototype.run;
    Hart.prototype.run = function (budget, ...rest) {
      c.hartRuns++;
      return hrun.call(this, budget, ...rest);
    };
    const jrun = Jit.prototype.run;
    Jit.prototype.run = function (pc, budget) {
      c.jitRuns++;
      const n = jrun.call(this, pc, budget);
      c.jitInstr += n;
      return n;
    };
    const send = Actor.prototype.send;
    Actor.prototype.send = function (e) {
      c.chartEvents++;
      return send.call(this, e);
    };
    countLoopHops(c);
  }
  const schedstat = () => {
    try {
      const [a, b] = readFileSync('/proc/thread-self/schedstat', 'utf8').trim().split(/\s+/).map(Number);
      return { cpuMs: a / 1e6, waitMs: b / 1e6 };
    } catch {
      return { cpuMs: NaN, waitMs: NaN };
    }
  };
  // A backup worker counts from the pair's `start` message (its boot before it is left out).
  let base = { cpuMs: 0, waitMs: 0 };
  let written = false;
  const write = () => {
    if (written) return;
    written = true;
    const now = schedstat();
    const cpuMs = now.cpuMs - base.cpuMs, waitMs = now.waitMs - base.waitMs;
    appendFileSync(file, JSON.stringify({ thread: isMainThread ? 'main' : `worker ${threadId}`, ...c, cpuMs, waitMs }) + '\n');
  };
  process.on('exit', write);
  if (!isMainThread && parentPort) {
    parentPort.on('message', (m) => {
      if (m && m.t === 'start') base = schedstat();
    });
    const post = parentPort.postMessage;
    parentPort.postMessage = function (m, ...rest) {
      if (Array.isArray(m) && m.some((x) => x && (x.t === 'done' || x.t === 'failed'))) write();
      return post.call(this, m, ...rest);
    };
  }
}
