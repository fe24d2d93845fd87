// Where a batch ends decides nothing about the guest (Hart.run's INVARIANT, DESIGN §2): the
// irqstress guest (timer and software interrupts, nested mstatus disable windows, wfi), run
// under the deterministic env once in the largest batches the env allows and once in random
// batches of 1..97 instructions, must write its devices at the same icounts and reach the
// same machine state. Batches end only where a CSR write changes whether an interrupt is
// pending and enabled (runtime/cpu/csr.ts), so this is what keeps a backup that splits its
// batches differently from its primary replaying the same machine.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { Machine } from '../runtime/machine.js';
import { DeterministicEnv } from '../runtime/env/deterministic.js';
import { Exit, exitName } from '../runtime/types.js';

const ELF = readFileSync(new URL('../guests/irqstress/irqstress.elf', import.meta.url));
const CHECKPOINTS = [250_000, 1_000_000, 2_500_000];

interface Run {
  /** CLINT writes (msip, mtimecmp) with the icount each was made at. */
  writes: string[];
  digests: string[];
  exits: Record<string, number>;
}

async function run(jit: boolean, budget: () => number): Promise<Run> {
  // The hart reads FTVM_JIT when it is built (Machine has no option for it).
  const saved = process.env['FTVM_JIT'];
  process.env['FTVM_JIT'] = jit ? '1' : '0';
  const m = new Machine({ env: new DeterministicEnv({ seed: 11, instructionsPerTick: 4 }), memoryMiB: 16 });
  if (saved === undefined) delete process.env['FTVM_JIT'];
  else process.env['FTVM_JIT'] = saved;
  m.loadElf(ELF);
  const writes: string[] = [];
  const write = m.clint.write.bind(m.clint);
  m.clint.write = (off, size, v) => {
    writes.push(`${m.icount}:${off.toString(16)}=${v.toString(16)}`);
    write(off, size, v);
  };
  const digests: string[] = [];
  const exits: Record<string, number> = {};
  for (const stop of CHECKPOINTS) {
    while (m.icount < stop) {
      const exit = m.step(Math.min(budget(), stop - m.icount));
      exits[exitName(exit)] = (exits[exitName(exit)] ?? 0) + 1;
      if (exit === Exit.Wfi) await m.env.idle(m);
      else if (exit !== Exit.Budget && exit !== Exit.Request) throw new Error(`stopped on ${exitName(exit)} at ${m.icount}`);
    }
    digests.push(`${m.icount} ${m.digest()}`);
  }
  return { writes, digests, exits };
}

describe.each([true, false])('irqstress split into batches (jit=%s)', (jit) => {
  it('lands every interrupt at the same icount however the batches are cut', async () => {
    const whole = await run(jit, () => Number.MAX_SAFE_INTEGER);
    let s = 0x2545f491;
    const cut = await run(jit, () => {
      s ^= s << 13;
      s ^= s >>> 17;
      s ^= s << 5;
      return 1 + ((s >>> 0) % 97);
    });
    // The guest did what it is for: many timer re-arms and software interrupts.
    expect(whole.writes.length).toBeGreaterThan(1000);
    expect(cut.writes).toEqual(whole.writes);
    expect(cut.digests).toEqual(whole.digests);
    expect(cut.exits['budget']).toBeGreaterThan(10 * (whole.exits['budget'] ?? 0));
  });
});
