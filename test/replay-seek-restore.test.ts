// Seeking restores a snapshot the log's chain resolves to, and touches only the pages the
// chain holds and the pages the machine may have written (runtime/snapshot.ts, restorePages).
// Whatever the machine did before, its RAM and digest afterwards must be the snapshot's.
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { Machine } from '../runtime/machine.js';
import { DeterministicEnv } from '../runtime/env/deterministic.js';
import { runMachine } from '../runtime/runner.js';
import { chainPolicy, resolveSnapshotChain, SnapshotChain, snapshotChainAt } from '../runtime/snapshot.js';
import { boot } from './helpers/boot.js';

describe('restoring a resolved snapshot chain', () => {
  it('gives the snapshot\'s RAM and digest on a machine that wrote, swept and digested other pages', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.record({ page: fc.integer({ min: 0, max: 4095 }), value: fc.integer({ min: 1, max: 0x7fffffff }), digestAfter: fc.boolean() }), { maxLength: 12 }),
        fc.integer({ min: 1, max: 300_000 }),
        async (writes, steps) => {
          const { m } = boot('timer', 3);
          const chain = new SnapshotChain(m, chainPolicy(1));
          const taken = [{ type: 'snapshot', icount: m.icount, data: chain.take() }];
          await runMachine(m, { maxInstructions: steps });
          taken.push({ type: 'snapshot', icount: m.icount, data: chain.take() });
          const want = { ram: m.bus.ram.slice(), digest: m.digest() };
          const snap = resolveSnapshotChain(snapshotChainAt(taken, taken.length - 1));

          // Another machine of the same image runs on, writes pages (some the snapshot has as
          // zeros), and sweeps its dirty bits with digests, so some writes are known only
          // from its sweep epochs.
          const other = boot('timer', 3).m;
          await runMachine(other, { maxInstructions: steps + 50_000 });
          for (const w of writes) {
            other.bus.writeRam(other.bus.ramBase + w.page * 4096 + 64, new Uint8Array(new Int32Array([w.value]).buffer));
            if (w.digestAfter) other.digest();
          }
          other.restore(snap);
          expect(Buffer.compare(other.bus.ram, want.ram)).toBe(0);
          expect(other.digest()).toBe(want.digest);

          // A fresh machine (nothing written, nothing swept) gets the same.
          const fresh = new Machine({ env: new DeterministicEnv({ seed: 3 }) });
          fresh.restore(snap);
          expect(Buffer.compare(fresh.bus.ram, want.ram)).toBe(0);
          expect(fresh.digest()).toBe(want.digest);
        },
      ),
      { numRuns: 15 },
    );
  }, 120_000);

  it('drops the code a machine translated from other RAM: after the restore it runs the snapshot\'s guest', async () => {
    const { m } = boot('timer', 3);
    await runMachine(m, { maxInstructions: 150_000 });
    const chain = new SnapshotChain(m, chainPolicy(1));
    const snap = resolveSnapshotChain([{ icount: m.icount, data: chain.take() }]);
    // Another guest runs first, so its code is translated at the same addresses.
    const other = boot('hello', 3).m;
    await runMachine(other, { maxInstructions: 100_000 });
    other.restore(snap);
    await runMachine(m, { maxInstructions: 300_000 });
    await runMachine(other, { maxInstructions: 300_000 });
    expect(other.icount).toBe(m.icount);
    expect(other.digest()).toBe(m.digest());
  });

  it('says which pages it holds: no more than the pages that are not zero, and all of those', async () => {
    const { m } = boot('timer', 3);
    const chain = new SnapshotChain(m, chainPolicy(1));
    const taken = [{ type: 'snapshot', icount: 0, data: chain.take() }];
    await runMachine(m, { maxInstructions: 200_000 });
    taken.push({ type: 'snapshot', icount: m.icount, data: chain.take() });
    const snap = resolveSnapshotChain(snapshotChainAt(taken, 1));
    const pages = snap.nonZeroPages!;
    let held = 0;
    for (let p = 0; p < pages.length; p++) {
      const zero = snap.ram.subarray(p * 4096, (p + 1) * 4096).every((b) => b === 0);
      if (!zero) expect(pages[p]).toBe(1);
      held += pages[p]!;
    }
    // The timer guest uses a few dozen pages of 4096.
    expect(held).toBeGreaterThan(0);
    expect(held).toBeLessThan(200);
  });
});
