// The CPU chart's enumerated paths, driven against the real actor running real guests on the
// real interpreter (DESIGN §6). Batches are stepped by hand (like xstate's SimulatedClock for
// timers), but every `cpu.batchEnded` carries the exit the machine really produced.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { createTestModel } from 'xstate/graph';
import { cpuMachine, type BatchExit, type CpuMode } from '../../machines/cpu.machine.js';
import { createCpuActor } from '../../runtime/cpu-actor.js';
import { Machine } from '../../runtime/machine.js';
import { DeterministicEnv } from '../../runtime/env/deterministic.js';
import { LiveEnv } from '../../runtime/env/live.js';
import { ReplayEnv } from '../../runtime/env/replay.js';
import type { Env } from '../../runtime/env/env.js';
import type { LogEntry, LogPayload } from '../../runtime/log/entry.js';
import { SeqLog } from '../../runtime/ft/seq-log.js';
import { runMachine } from '../../runtime/runner.js';
import { guestPath } from '../../runtime/guests.js';
import type { ValueKind } from '../../runtime/types.js';
import { everyTransition } from './harness.js';
import { LoggedDeterministicEnv } from '../helpers/logged-env.js';

type Guest = 'hello' | 'timer' | 'fault';

/** Seed 7: the chart's 'record' mode runs on a logged deterministic world. */
class LoggedEnv extends LoggedDeterministicEnv {
  constructor(sink: (p: LogPayload, icount: number) => void) {
    super(sink, { seed: 7 });
  }
}

function boot(guest: Guest, env: Env): Machine {
  const m = new Machine({ env });
  const elf = m.loadElf(readFileSync(guestPath(guest === 'fault' ? 'hello' : guest)));
  // No handler and an illegal first instruction: the first batch must fault.
  if (guest === 'fault') m.bus.writeRam(elf.entry, new Uint8Array(4));
  return m;
}

/** A whole recorded run of each guest, so 'replay' mode has a log to follow. */
const logs = new Map<Guest, LogEntry[]>();
async function logOf(guest: Guest): Promise<LogEntry[]> {
  if (!logs.has(guest)) {
    const entries: LogEntry[] = [];
    const log = new SeqLog((e) => entries.push(e));
    const m = boot(guest, new LoggedEnv((p, ic) => log.append(p, ic)));
    await runMachine(m, {});
    log.append({ type: 'progress', released: 0 }, m.icount + 1);
    logs.set(guest, entries);
  }
  return logs.get(guest)!;
}

const model = createTestModel(cpuMachine, {
  ...everyTransition,
  events: [
    ...(['live', 'record', 'replay'] as CpuMode[]).map((mode) => ({ type: 'cpu.start', mode }) as const),
    ...(['budget', 'request', 'wfi', 'halt', 'fault', 'target'] as BatchExit[]).map((exit) => ({ type: 'cpu.batchEnded', exit }) as const),
    { type: 'cpu.runUntil', icount: 1_000 },
  ],
});

const flush = () => new Promise((r) => setImmediate(r));

describe('cpu chart on the real machine', () => {
  const paths = model.getShortestPaths();

  it('follows every path the real machine can take, with matching machine state', async () => {
    let completed = 0;
    const reached = new Set<string>();
    const impossible: string[] = [];
    for (const path of paths) {
      const exits = new Set(path.steps.flatMap((s) => (s.event.type === 'cpu.batchEnded' ? [(s.event as { exit: BatchExit }).exit] : [])));
      const guest: Guest = exits.has('fault') ? 'fault' : exits.has('wfi') || exits.has('request') ? 'timer' : 'hello';
      const queue: Array<() => void> = [];
      const seen: BatchExit[] = [];
      const opts = { batch: 1_000_000, schedule: (run: () => void) => void queue.push(run), liveEnv: () => new LiveEnv({ mtimeAt: 0 }), onBatch: (e: BatchExit) => void seen.push(e) };
      const m = boot(guest, new DeterministicEnv());
      const atBoot = m.snapshot();
      const actor = createCpuActor(m, opts);
      actor.start();
      const label = path.steps.map((s) => (s.event.type === 'cpu.batchEnded' ? `batchEnded(${(s.event as { exit: string }).exit})` : s.event.type)).join(' → ');
      let ok = true;
      for (const step of path.steps) {
        const ev = step.event as { type: string; exit?: BatchExit; mode?: CpuMode; icount?: number };
        if (ev.type === 'xstate.init') continue;
        const modeBefore = actor.getSnapshot().context.mode;
        if (ev.type === 'cpu.start') {
          // Each mode gets its env: the chart's mode must match what the machine really runs on.
          const entries: LogEntry[] = [];
          const log = new SeqLog((e) => entries.push(e));
          const env: Env = ev.mode === 'replay' ? new ReplayEnv() : ev.mode === 'record' ? new LoggedEnv((p, ic) => log.append(p, ic)) : new DeterministicEnv();
          if (env instanceof ReplayEnv) for (const e of await logOf(guest)) env.push(e);
          // A start after cpu.stop reloads the machine, as the runtime would.
          if (m.icount > 0) m.restore(atBoot);
          m.env = env;
          actor.send(ev as never);
        } else if (ev.type === 'cpu.batchEnded') {
          const want = ev.exit!;
          opts.batch = want === 'budget' ? 50 : 1_000_000;
          seen.length = 0;
          for (let n = 0; n < 2_000 && !seen.includes(want); n++) {
            const run = queue.shift();
            if (!run) break;
            run();
            const got = seen.at(-1)!;
            // Only a batch that leaves the state as it was may pass before the wanted exit.
            if (got !== want && !(got === 'budget' || got === 'request')) break;
          }
          if (!seen.includes(want)) {
            impossible.push(`${label}: the machine produced ${seen.at(-1) ?? 'no batch'} where the path needs ${want}`);
            ok = false;
            break;
          }
        } else if (ev.type === 'cpu.inputDelivered') {
          // The real actor says this itself once the env has an input for the sleeping hart.
          await flush();
        } else if (ev.type === 'cpu.runUntil') {
          actor.send({ type: 'cpu.runUntil', icount: m.icount + 1_000 });
        } else {
          actor.send(ev as never);
        }
        const snap = actor.getSnapshot();
        expect(snap.value, label).toEqual(step.state.value);
        expect(snap.context.mode, label).toBe(step.state.context.mode);
        // The machine behind the chart agrees with it.
        if (snap.matches('halted')) expect(m.hart.haltCode, label).toBe(0);
        if (snap.matches('faulted')) expect(m.hart.fault?.message, label).toMatch(/illegal instruction/);
        if (modeBefore === 'replay' && snap.context.mode === 'live') expect(m.env.mode, label).toBe('live');
        if (snap.context.mode === 'replay') expect(m.env.mode, label).toBe('replay');
        reached.add(JSON.stringify(snap.value));
      }
      actor.stop();
      if (ok) completed++;
    }
    // Every state of the chart is reached on the real machine, and the paths the model allows
    // but a real machine cannot take are few and named.
    for (const s of ['stopped', 'running', 'paused', 'waitingForInterrupt', 'runningUntil', 'halted', 'faulted']) {
      expect([...reached], `state ${s} reached on the real machine`).toContain(JSON.stringify(s));
    }
    process.stderr.write(`cpu chart: ${completed}/${paths.length} paths followed on the real machine, ${impossible.length} not producible\n`);
    expect(completed).toBeGreaterThan(paths.length * 0.6);
    expect(impossible.length, impossible.join('\n')).toBeLessThan(paths.length * 0.4);
  });
});
