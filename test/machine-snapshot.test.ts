import { describe, expect, it } from 'vitest';
import { Machine } from '../runtime/machine.js';
import { DeterministicEnv } from '../runtime/env/deterministic.js';
import { runMachine } from '../runtime/runner.js';
import { boot, text } from './helpers/boot.js';
import { decodeSnapshot, encodeSnapshot } from '../runtime/snapshot.js';
import { Exit, type Output } from '../runtime/types.js';

describe('machine snapshot/restore', () => {
  for (const guest of ['timer', 'hello']) {
    it(`${guest}: stopping, snapshotting and restoring elsewhere changes nothing`, async () => {
      const whole = boot(guest);
      const ref = await runMachine(whole.m, { maxInstructions: 50_000_000 });
      expect(ref.reason).toBe('halt');

      for (const fraction of [0.1, 0.5, 0.9]) {
        const cut = Math.floor(ref.icount * fraction);
        const first = boot(guest);
        const part = await runMachine(first.m, { untilIcount: cut });
        expect(part).toMatchObject({ reason: 'until', icount: cut });
        // Through the wire form too, as re-protection streams it.
        const snap = decodeSnapshot(encodeSnapshot(first.m.snapshot()));
        const env = new DeterministicEnv({ seed: 7 });
        env.load(first.env.save());
        const outputs: Output[] = [];
        const second = Machine.restore(snap, { env, onOutput: (o) => outputs.push(o) });
        expect(second.digest()).toBe(first.m.digest());
        const rest = await runMachine(second, { maxInstructions: 50_000_000 });
        expect(rest).toMatchObject({ reason: 'halt', code: ref.code, icount: ref.icount });
        expect(text(first.outputs) + text(outputs)).toBe(text(whole.outputs));
        expect([...first.outputs, ...outputs]).toEqual(whole.outputs);
        expect(second.digest()).toBe(whole.m.digest());
      }
    });
  }

  it('digest changes with one RAM word and with one register', () => {
    const { m } = boot('hello');
    const d0 = m.digest();
    // Host-side writes go through the bus, which marks the page for the incremental digest.
    const at = m.bus.ramBase + 4000;
    const flip = (): void => {
      const w = m.bus.readRam(at, 4);
      w[0]! ^= 1;
      m.bus.writeRam(at, w);
    };
    flip();
    const d1 = m.digest();
    expect(d1).not.toBe(d0);
    flip();
    expect(m.digest()).toBe(d0);
    m.hart.x[5] = 123;
    expect(m.digest()).not.toBe(d0);
  });

  it('digest is a function of the state, not of which pages were written: a page written and zeroed again digests as never touched', () => {
    const a = boot('hello'), b = boot('hello');
    const fresh = b.m.digest();
    // Far from the image: a page that is zero in both machines.
    const at = a.m.bus.ramBase + 8 * 1024 * 1024 + 123 * 4;
    a.m.bus.writeRam(at, new Uint8Array([1, 2, 3, 4]));
    expect(a.m.digest()).not.toBe(fresh);
    a.m.bus.writeRam(at, new Uint8Array(4));
    expect(a.m.digest()).toBe(fresh);
    // And the other way round: the page's content counts in a machine that hashed it before.
    b.m.bus.writeRam(at, new Uint8Array([1, 2, 3, 4]));
    a.m.bus.writeRam(at, new Uint8Array([1, 2, 3, 4]));
    expect(b.m.digest()).toBe(a.m.digest());
  });

  it('two runs of a guest with the same seed end in the same digest', async () => {
    const a = boot('timer'), b = boot('timer');
    await runMachine(a.m, {});
    await runMachine(b.m, {});
    expect(a.m.digest()).toBe(b.m.digest());
    expect(a.outputs).toEqual(b.outputs);
  });

  it('refuses a snapshot of a different memory size', () => {
    const { m } = boot('hello');
    const other = new Machine({ env: new DeterministicEnv(), memoryMiB: 8 });
    expect(() => other.restore(m.snapshot())).toThrow(/16 MiB/);
  });

  it('returns Exit.Budget without running when the env horizon is now', () => {
    const { m } = boot('hello');
    expect(m.step(0)).toBe(Exit.Budget);
    expect(m.icount).toBe(0);
    expect(m.step(10)).toBe(Exit.Budget);
    expect(m.icount).toBe(10);
  });
});
