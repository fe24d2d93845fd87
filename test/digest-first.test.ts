// The first digest of a machine hashes only pages ever written since it was built (snapshot.ts):
// the others are zeros, whose page hash is the fresh array's. It must equal a digest that
// hashes every page, which a restored copy takes (a restore marks all pages written).
import { describe, expect, it } from 'vitest';
import { Machine } from '../runtime/machine.js';
import { DeterministicEnv } from '../runtime/env/deterministic.js';
import { runMachine } from '../runtime/runner.js';
import { SnapshotChain } from '../runtime/snapshot.js';
import { boot } from './helpers/boot.js';

const copyOf = (m: Machine): Machine => Machine.restore(m.snapshot(), { env: new DeterministicEnv({ seed: 7 }) });

describe('first digest of a machine', () => {
  it('equals the digest of a copy that hashes every page, after a run and after host writes far from the image', async () => {
    const a = boot('timer');
    await runMachine(a.m, { maxInstructions: 200_000 });
    a.m.bus.writeRam(a.m.bus.ramBase + 12 * 1024 * 1024 + 40, new Uint8Array([9, 8, 7, 6]));
    const copy = copyOf(a.m);
    expect(a.m.digest()).toBe(copy.digest());
    // And after the first: a page written since counts once more.
    a.m.bus.writeRam(a.m.bus.ramBase + 3 * 1024 * 1024, new Uint8Array([1]));
    expect(a.m.digest()).not.toBe(copy.digest());
    expect(a.m.digest()).toBe(copyOf(a.m).digest());
  });

  it('sees pages another reader of the dirty bits swept before it (a recording snapshot chain)', async () => {
    const a = boot('timer');
    await runMachine(a.m, { maxInstructions: 100_000 });
    const chain = new SnapshotChain(a.m, { every: 1, maxGap: 1e12, churnPages: 1e9, deltaBytesPerFull: 4, minChainBytes: 1 << 20 });
    chain.take();
    a.m.bus.writeRam(a.m.bus.ramBase + 10 * 1024 * 1024, new Uint8Array([5, 5]));
    chain.take();
    // Every dirty bit was swept by the chain: the digest finds the pages by their epochs.
    expect(a.m.bus.dirty.every((d) => d === 0)).toBe(true);
    expect(a.m.digest()).toBe(copyOf(a.m).digest());
  });

  it('of a machine never run is the digest of its image alone', () => {
    const a = boot('hello');
    const b = boot('hello');
    b.m.bus.dirty.fill(1);
    expect(a.m.digest()).toBe(b.m.digest());
  });
});
