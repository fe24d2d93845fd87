// `node bench/devices-warm.mjs ROOT...`: irqstress (deterministic env) on built checkouts loaded into one
// Node process, 12 alternating runs each, best time: warm JIT, less host noise than bench/devices.mjs.
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
const roots = process.argv.slice(2).map((r) => resolve(r));
const mods = [];
for (const root of roots) mods.push({
  root,
  Machine: (await import(root + '/dist/runtime/machine.js')).Machine,
  runMachine: (await import(root + '/dist/runtime/runner.js')).runMachine,
  Det: (await import(root + '/dist/runtime/env/deterministic.js')).DeterministicEnv,
});
const elf = readFileSync(new URL('../guests/irqstress/irqstress.elf', import.meta.url));
const best = mods.map(() => Infinity);
for (let i = 0; i < 12; i++) for (const [k, m] of mods.entries()) {
  const mm = new m.Machine({ env: new m.Det({ seed: 7 }) });
  mm.loadElf(elf);
  const t0 = performance.now();
  const o = await m.runMachine(mm, {});
  best[k] = Math.min(best[k], performance.now() - t0);
}
mods.forEach((m, k) => console.log(m.root, 'irqstress best of 12:', best[k].toFixed(0), 'ms', (23792252 / best[k] / 1e3).toFixed(1), 'MIPS'));
