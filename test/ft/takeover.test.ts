// Takeover on the real runtime (DESIGN §3 Go-live, §4): a real primary and backup node on
// real machines running seq-short, joined by the in-process channel (a fake only at the wire)
// and the in-process arbiter. The primary is killed; the backup's CPU chart replays to the
// log's horizon with `cpu.runUntil`, pauses there, and its `cpu.takeover` switches the env
// in place: the same machine and the same CPU actor run on as the new primary.
import { readFileSync } from 'node:fs';
import { from } from 'rxjs';
import { describe, expect, it } from 'vitest';
import type { InspectionEvent } from 'xstate';
import { Machine } from '../../runtime/machine.js';
import { LiveEnv } from '../../runtime/env/live.js';
import { ReplayEnv } from '../../runtime/env/replay.js';
import { RecordingEnv } from '../../runtime/env/recording.js';
import { createInProcessChannel } from '../../runtime/channel/in-process.js';
import { InProcessArbiter } from '../../runtime/arbiter/in-process.js';
import { PrimaryNode } from '../../runtime/ft/primary-node.js';
import { BackupNode } from '../../runtime/ft/backup-node.js';
import { SeqChecker } from '../../runtime/demo/seq-checker.js';
import type { ReleasedOutput } from '../../runtime/ft/output-gate.js';
import { guestPath } from '../../runtime/guests.js';

const image = readFileSync(guestPath('seq-short'));
const golden = readFileSync(new URL('../../guests/seq-short/expected.txt', import.meta.url), 'utf8');

const waitFor = async (cond: () => boolean, ms = 10_000): Promise<void> => {
  const t0 = Date.now();
  while (!cond()) {
    if (Date.now() - t0 > ms) throw new Error('timed out waiting');
    await new Promise((r) => setTimeout(r, 2));
  }
};

const boot = (): Machine => {
  const m = new Machine({ env: new LiveEnv() });
  m.loadElf(image);
  return m;
};

describe('takeover on the real runtime', () => {
  for (const killAt of [5, 30]) {
    it(`the primary dies after ${killAt} lines: the backup's own machine and CPU go live in place, nothing lost`, async () => {
      const arbiter = new InProcessArbiter();
      const ch = createInProcessChannel();
      // Every actor the runtime creates, by id: a CPU built behind the chart's back shows here.
      const cpus: string[] = [];
      const inspect = (e: InspectionEvent) => {
        const id = (e.actorRef as { id?: string }).id ?? '';
        if (e.type === '@xstate.actor' && id.endsWith('.cpu')) cpus.push(id);
      };
      const primary = new PrimaryNode({ name: 'primary', pairId: 'tk', generation: 1, machine: boot(), arbiter, channel: ch.primary, inspect });
      const machine = boot();
      const backup = new BackupNode({ name: 'backup', pairId: 'tk', generation: 1, machine, channel: ch.backup, arbiter, inspect });
      const checker = new SeqChecker();
      const text: string[] = [];
      const take = (o: ReleasedOutput) => {
        if (o.index >= checker.nextIndex && o.output.kind === 'console') text[o.index] = String.fromCharCode(o.output.byte);
        checker.accept(o);
      };
      primary.released$.subscribe(take);
      const env = backup.env;
      expect(machine.env).toBe(env);

      // The icount the backup's CPU stands at each time it pauses (the drain's run-until).
      const pausedAt: number[] = [];
      from(backup.cpu).subscribe((s) => {
        if (s.matches('paused')) pausedAt.push(machine.icount);
      });
      const pDone = primary.run();
      const bDone = backup.run();
      await waitFor(() => checker.lines >= killAt);
      primary.crash();
      ch.cut();

      const outcome = await bDone;
      expect(outcome.reason).toBe('live');
      if (outcome.reason !== 'live') return;
      const live = outcome.primary;
      // Replayed exactly to the newest icount the log vouched for, every entry consumed.
      expect(pausedAt).toEqual([env.horizon]);
      expect(machine.icount).toBe(env.horizon);
      expect(env.pending).toBe(0);
      expect(env.appliedSeq).toBe(env.lastSeq);
      // Not yet taken over: the env is still the replay, the CPU paused at the batch boundary.
      expect(live.machine).toBe(machine);
      expect(machine.env).toBeInstanceOf(ReplayEnv);
      const goLiveIcount = machine.icount;
      const pc = machine.hart.pc;

      // The new primary's run takes over the same CPU actor: batches keep coming from it.
      let batchesAfter = 0;
      from(backup.cpu).subscribe(() => batchesAfter++);
      live.released$.subscribe(take);
      const run = live.run();
      // cpu.takeover swapped the env synchronously, before any batch: on from the same pc.
      expect(machine.env).toBeInstanceOf(RecordingEnv);
      expect(machine.env.mode).toBe('record');
      expect(machine.icount).toBe(goLiveIcount);
      expect(machine.hart.pc).toBe(pc);
      const end = await run;
      await pDone;

      expect(end.reason).toBe('halt');
      expect(end.code).toBe(0);
      expect(machine.icount).toBeGreaterThan(goLiveIcount);
      expect(batchesAfter).toBeGreaterThan(0);
      // Two CPU actors in all, one per machine: the takeover built none.
      expect(cpus.sort()).toEqual(['backup.cpu', 'primary.cpu']);
      // Output rule and go-live together: every line once at least, none lost, in order.
      expect(checker.lost).toBe(0);
      expect(checker.errors).toEqual([]);
      expect(checker.ok).toBe(true);
      expect(text.join('')).toBe(golden);
      expect(await arbiter.holder('tk', 1)).toBe('backup');
    });
  }

  it('a replay that diverges from its log never takes over: the CPU faults and the backup says where', async () => {
    const arbiter = new InProcessArbiter();
    const ch = createInProcessChannel();
    const primary = new PrimaryNode({ name: 'primary', pairId: 'dv', generation: 1, machine: boot(), arbiter, channel: ch.primary, timing: { digestEveryMs: 1 } });
    const machine = boot();
    // One byte of the backup's RAM differs (above the guest's 4 MiB): the first digest entry catches it.
    machine.bus.writeRam(0x8050_0000, new Uint8Array([1]));
    const backup = new BackupNode({ name: 'backup', pairId: 'dv', generation: 1, machine, channel: ch.backup, arbiter });
    const pDone = primary.run();
    const outcome = await backup.run();
    primary.crash();
    await pDone;
    expect(outcome.reason).toBe('diverged');
    if (outcome.reason === 'diverged') expect(outcome.detail).toMatch(/divergence at seq \d+, icount \d+/);
    expect(machine.env).toBeInstanceOf(ReplayEnv);
    expect(backup.cpu.getSnapshot().status).toBe('stopped');
  });
});
