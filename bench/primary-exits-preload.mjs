// Preloaded (NODE_OPTIONS="--import /path/bench/primary-exits-preload.mjs") into every node
// process of a run (`ftvm pair`'s children inherit it): why each slice (Machine.step) and each
// CPU batch (`cpu.batchEnded`) of this process's main thread ended. Every second and at exit it
// rewrites $FTVM_EXITS_DIR/<pid>.json with {argv, slices: {...}, batches: {...}, turns,
// microtasks, chartEvents}. Slice ends:
//   budgetEnv   the slice ran the env's whole room (a live env's next look at the clock, an
//               input waiting for room; a replay's next logged input)
//   budgetMax   the slice ran the budget the node asked for (its slicer's, a whole batch)
//   zero        ran nothing (the env's room was 0)
//   requestDev  the guest's request through a device (MMIO, or a primary's output: requestExit)
//   requestCsr  the guest's CSR write that changes a pending-and-enabled interrupt
//   wfi, halt, fault
// Batches are counted by the exit their `cpu.batchEnded` carries. Wrapping costs CPU: counts
// only, never times. FTVM_EXITS_ROOT names the checkout whose dist the process runs (default:
// the one this file is in).
import { mkdirSync, writeFileSync } from 'node:fs';
import { isMainThread } from 'node:worker_threads';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import { countLoopHops } from './lib/loop-counts.mjs';

const dir = process.env.FTVM_EXITS_DIR;
if (dir && isMainThread) {
  mkdirSync(dir, { recursive: true });
  const root = process.env.FTVM_EXITS_ROOT ?? fileURLToPath(new URL('..', import.meta.url));
  const d = (p) => import(join(root, 'dist/runtime', p));
  const { Machine } = await d('machine.js');
  const { Hart } = await d('cpu/hart.js');
  const { Exit } = await d('types.js');
  const { Actor } = await import(join(root, 'node_modules/xstate/dist/xstate.cjs.js'));
  const slices = { budgetEnv: 0, budgetMax: 0, zero: 0, requestDev: 0, requestCsr: 0, wfi: 0, halt: 0, fault: 0 };
  const batches = {};
  const c = { instructions: 0, chartEvents: 0, turns: 0, microtasks: 0 };
  let runBudget = -1;
  let requested = false;
  const step = Machine.prototype.step;
  Machine.prototype.step = function (max, ...rest) {
    runBudget = -1;
    requested = false;
    const before = this.hart.icount;
    const r = step.call(this, max, ...rest);
    const n = this.hart.icount - before;
    c.instructions += n;
    if (r === Exit.Budget) {
      if (runBudget < 0 || n === 0) slices.zero++;
      else if (runBudget < max) slices.budgetEnv++;
      else slices.budgetMax++;
    } else if (r === Exit.Request) {
      if (requested) slices.requestDev++;
      else slices.requestCsr++;
    } else if (r === Exit.Wfi) slices.wfi++;
    else if (r === Exit.Halt) slices.halt++;
    else slices.fault++;
    return r;
  };
  const run = Hart.prototype.run;
  Hart.prototype.run = function (budget, ...rest) {
    runBudget = budget;
    return run.call(this, budget, ...rest);
  };
  const req = Hart.prototype.requestExit;
  Hart.prototype.requestExit = function () {
    requested = true;
    return req.call(this);
  };
  const send = Actor.prototype.send;
  Actor.prototype.send = function (e) {
    c.chartEvents++;
    if (e && e.type === 'cpu.batchEnded') batches[e.exit] = (batches[e.exit] ?? 0) + 1;
    return send.call(this, e);
  };
  countLoopHops(c);
  const write = () => {
    try {
      writeFileSync(join(dir, `${process.pid}.json`), JSON.stringify({ argv: process.argv.slice(1), slices, batches, ...c }));
    } catch {
      // the directory went away: the bench is over
    }
  };
  setInterval(write, 1000).unref();
  process.on('exit', write);
}
