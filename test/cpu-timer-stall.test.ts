// guests/timer under a host stall: mtime jumps while the guest is between two instructions,
// as it does on a loaded host (issue 15: the guest failed its own "elapsed mtime >= ticks *
// period" check 2 runs in 6 beside two busy loops, on QEMU too). Whatever read the stall
// follows, the guest must still print its QEMU golden.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { Machine } from '../runtime/machine.js';
import { DeterministicEnv } from '../runtime/env/deterministic.js';
import { runMachine } from '../runtime/runner.js';
import type { ValueKind } from '../runtime/types.js';

const guests = new URL('../guests/', import.meta.url);
const elf = readFileSync(new URL('timer/timer.elf', guests));
const golden = readFileSync(new URL('timer/expected.txt', guests), 'latin1');
/** 100 ms of mtime at 10 MHz: twice the 50 ms the guest measures. */
const STALL_TICKS = 1_000_000;
/** The guest's first mtime reads: start-up, arming the first compare, and the first ticks. */
const STALL_POINTS = 12;

/** Deterministic time, except that mtime jumps by STALL_TICKS right before its k-th read. */
class StallingEnv extends DeterministicEnv {
  private reads = 0;
  constructor(private readonly stallAt: number) {
    super({ seed: 1 });
  }
  override value(kind: ValueKind, icount: number): number {
    if (kind === 'mtime' && ++this.reads === this.stallAt) {
      const s = this.save();
      this.load({ ...s, skewTicks: s.skewTicks + STALL_TICKS });
    }
    return super.value(kind, icount);
  }
}

describe('guests/timer under a host stall', () => {
  it.each(Array.from({ length: STALL_POINTS }, (_, i) => i + 1))('stall before mtime read %i: prints its golden', async (k) => {
    const bytes: number[] = [];
    const m = new Machine({ env: new StallingEnv(k), onOutput: (o) => { if (o.kind === 'console') bytes.push(o.byte); } });
    m.loadElf(elf);
    const outcome = await runMachine(m, { maxInstructions: 200_000_000 });
    expect(Buffer.from(bytes).toString('latin1')).toBe(golden);
    expect(outcome.reason).toBe('halt');
    expect(outcome.code).toBe(0);
  });
});
