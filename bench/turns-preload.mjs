// Preloaded into an ftvm process by bench/ft-tcp.mjs `turns` (NODE_OPTIONS=--import): counts
// the main thread's event-loop turns that a batch chain took (`setImmediate` calls), and at
// exit writes one JSON line to $FTVM_TURNS_FILE: those turns, the main thread's CPU time and
// run-queue wait (/proc/self/task/PID/schedstat: the main thread's tid is the pid) and the
// whole process's CPU time (every thread: the socket thread's, GC's, the JIT's). Changes
// nothing in the process but a counter per setImmediate.
import { appendFileSync, readFileSync } from 'node:fs';
import { isMainThread } from 'node:worker_threads';

const file = process.env.FTVM_TURNS_FILE;
if (file && isMainThread) {
  let turns = 0;
  const orig = globalThis.setImmediate;
  globalThis.setImmediate = function counted(...args) {
    turns++;
    return orig.apply(this, args);
  };
  const schedstat = () => {
    try {
      const [cpuNs, waitNs] = readFileSync(`/proc/self/task/${process.pid}/schedstat`, 'utf8').trim().split(/\s+/).map(Number);
      return { cpuMs: cpuNs / 1e6, waitMs: waitNs / 1e6 };
    } catch {
      return { cpuMs: NaN, waitMs: NaN };
    }
  };
  const role = process.argv.find((a) => a === 'primary' || a === 'backup') ?? 'other';
  process.on('exit', () => {
    const main = schedstat();
    const c = process.cpuUsage();
    appendFileSync(file, JSON.stringify({ role, pid: process.pid, turns, mainCpuMs: main.cpuMs, mainWaitMs: main.waitMs, processCpuMs: (c.user + c.system) / 1000 }) + '\n');
  });
}
