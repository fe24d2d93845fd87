import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { Machine } from '../../runtime/machine.js';
import { LiveEnv } from '../../runtime/env/live.js';
import { createInProcessChannel } from '../../runtime/channel/in-process.js';
import { InProcessArbiter } from '../../runtime/arbiter/in-process.js';
import { PrimaryNode } from '../../runtime/ft/primary-node.js';
import { BackupNode } from '../../runtime/ft/backup-node.js';
import { SeqChecker } from '../../runtime/demo/seq-checker.js';
import { guestPath } from '../../runtime/guests.js';

const image = readFileSync(guestPath('seq-short'));
const golden = readFileSync(new URL('../../guests/seq-short/expected.txt', import.meta.url), 'utf8');

const waitFor = async (cond: () => boolean, ms = 5000): Promise<void> => {
  const t0 = Date.now();
  while (!cond()) {
    if (Date.now() - t0 > ms) throw new Error('timed out waiting');
    await new Promise((r) => setTimeout(r, 2));
  }
};

describe('re-protection: a new backup joins a running primary', () => {
  it('streams a snapshot, protects the primary again, and takes over when it dies', async () => {
    const arbiter = new InProcessArbiter();
    const checker = new SeqChecker();
    const text: string[] = [];
    // A primary that runs alone from boot, having won generation 1.
    const m1 = new Machine({ env: new LiveEnv() });
    m1.loadElf(image);
    const p1 = new PrimaryNode({ name: 'p1', pairId: 'rp', generation: 1, machine: m1, arbiter, startAlone: true });
    const take = (o: Parameters<SeqChecker['accept']>[0]) => {
      if (o.index >= checker.nextIndex && o.output.kind === 'console') text[o.index] = String.fromCharCode(o.output.byte);
      checker.accept(o);
    };
    p1.released$.subscribe(take);
    const p1Done = p1.run();
    await waitFor(() => p1.state === 'alone' && checker.lines >= 10);

    // A blank machine joins under the generation the primary now holds.
    const ch = createInProcessChannel();
    const m2 = new Machine({ env: new LiveEnv() });
    const b2 = new BackupNode({ name: 'b2', pairId: 'rp', generation: p1.generation, machine: m2, channel: ch.backup, arbiter, joining: true });
    const b2Done = b2.run();
    const joinedAt = m1.icount;
    p1.attachBackup(ch.primary);
    await waitFor(() => JSON.stringify(p1.state).includes('protected'));
    expect(JSON.stringify(b2.state)).toBe('"replaying"');
    expect(m2.icount).toBeGreaterThanOrEqual(joinedAt);

    // Once protected, the new pair survives the primary's death.
    await waitFor(() => checker.lines >= 25);
    p1.crash();
    ch.cut();
    const b2Outcome = await b2Done;
    expect(b2Outcome.reason).toBe('live');
    if (b2Outcome.reason !== 'live') return;
    b2Outcome.primary.released$.subscribe(take);
    const end = await b2Outcome.primary.run();
    await p1Done;
    expect(end.reason).toBe('halt');
    expect(checker.lost).toBe(0);
    expect(checker.errors).toEqual([]);
    expect(checker.ok).toBe(true);
    expect(text.join('')).toBe(golden);
    expect(await arbiter.holder('rp', p1.generation)).toBe('b2');
  });
});
