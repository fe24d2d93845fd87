// One measured ftvm run in a fresh process (so RSS and JIT warm-up are per run, as for QEMU).
// Prints one JSON line: instructions, seconds, exit code, console bytes, peak RSS.
import { readFileSync } from 'node:fs';
import { Machine } from '../dist/runtime/machine.js';
import { LiveEnv } from '../dist/runtime/env/live.js';
import { runMachine } from '../dist/runtime/runner.js';

const [elf] = process.argv.slice(2);
let consoleBytes = 0;
const m = new Machine({ env: new LiveEnv(), onOutput: (o) => { if (o.kind === 'console') consoleBytes++; } });
m.loadElf(readFileSync(elf));
const c0 = process.cpuUsage();
const o = await runMachine(m, {});
const c = process.cpuUsage(c0);
process.stdout.write(JSON.stringify({
  reason: o.reason, code: o.code, instructions: o.icount, seconds: o.seconds, consoleBytes,
  // CPU time of the run, all threads (JIT compiles and GC included): steadier than wall on a busy host.
  cpuSeconds: (c.user + c.system) / 1e6,
  maxRssMiB: process.resourceUsage().maxRSS / 1024,
}) + '\n');
