// Preloaded into an ftvm process by bench/ft-tcp.mjs `turns` (NODE_OPTIONS=--import): counts
// the main thread's event-loop turns that a batch chain took (`setImmediate` calls), and at
// exit writes one JSON line to $FTVM_TURNS_FILE: those turns, the main thread's CPU time and
// run-queue wait (/proc/self/task/PID/schedstat: the main thread's tid is the pid) and the
// whole process's CPU time (every thread: the socket thread's, GC's, the JIT's). Changes
// nothing in the process but a counter per setImmediate.
import { appendFileSync } from 'node:fs';
import { isMainThread } from 'node:worker_threads';
import { mainThreadSchedstat } from './lib/schedstat.mjs';

const file = process.env.FTVM_TURNS_FILE;
if (file && isMainThread) {
  let turns = 0;
  const orig = globalThis.setImmediate;
  globalThis.setImmediate = function counted(...args) {
    turns++;
    return orig.apply(this, args);
  };
  const schedstat = mainThreadSchedstat;

  const role = process.argv.find((a) => a === 'primary' || a === 'backup') ?? 'other';
  process.on('exit', () => {
    const main = schedstat();
    const c = process.cpuUsage();
    appendFileSync(file, JSON.stringify({ role, pid: process.pid, turns, mainCpuMs: main.cpuMs, mainWaitMs: main.waitMs, processCpuMs: (c.user + c.system) / 1000 }) + '\n');
  });
}
