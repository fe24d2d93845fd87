// Time spent taking snapshots while recording, in process: `SnapshotChain.poll()` (deltas,
// this tree) against a full `packSnapshot` every 50 M instructions (main's policy), on the
// same guest run, with the run's own time for scale. CPU time of the snapshot calls only, so
// it is less exposed to a loaded host than whole-process ratios.
//   node bench/snapshot-cost.mjs [guest]     (needs `npm run build`; guest: bench-timer)
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const guest = process.argv[2] ?? 'bench-timer';
const dist = (p) => import(join(root, 'dist/runtime', p));
const { Machine } = await dist('machine.js');
const { DeterministicEnv } = await dist('env/deterministic.js');
const { runMachine } = await dist('runner.js');
const { SnapshotChain, chainPolicy } = await dist('snapshot.js');
const { packSnapshot } = await dist('ft/snapshot-wire.js');

async function once(policy) {
  const m = new Machine({ env: new DeterministicEnv({ seed: 1 }) });
  m.loadElf(readFileSync(join(root, 'guests', guest, `${guest}.elf`)));
  const chain = new SnapshotChain(m, chainPolicy(10_000_000));
  let next = 0, spent = 0, bytes = 0, n = 0;
  const each = [];
  const onBatch = () => {
    const t0 = performance.now();
    let data;
    if (policy === 'delta') data = chain.poll();
    else if (m.icount >= next) { data = packSnapshot(m); next = m.icount + 50_000_000; }
    const dt = performance.now() - t0;
    if (data) { bytes += data.length; n++; each.push(dt); }
    spent += dt;
  };
  const t0 = performance.now();
  const r = await runMachine(m, { onBatch });
  each.sort((a, b) => a - b);
  return { policy, run: performance.now() - t0, spent, bytes, n, icount: r.icount, median: each[each.length >> 1], first: each.length ? each[0] : 0 };
}
for (let i = 0; i < 3; i++) {
  for (const p of ['full-50M', 'delta']) {
    const r = await once(p);
    console.log(`${p.padEnd(8)} run ${r.run.toFixed(0)} ms, snapshots ${r.n} taking ${r.spent.toFixed(1)} ms, median ${r.median.toFixed(2)} ms each (${((100 * r.spent) / r.run).toFixed(2)} % of the run), ${r.bytes} B = ${((r.bytes * 1000) / r.icount).toFixed(3)} B/kinstr`);
  }
}
