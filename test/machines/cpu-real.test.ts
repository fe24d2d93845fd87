// The CPU chart's model paths (xstate/graph `createTestModel`), executed against the product:
// a real machine running real guests under the runtime's CPU actor (runtime/cpu-actor.ts).
// Batches are stepped by hand (the actor's `schedule`, like a SimulatedClock for timers), so
// every `cpu.batchEnded` is the exit the machine really produced, and every
// `cpu.inputDelivered` / `cpu.envFailed` is sent by the actor itself when the env answers.
// Each step asserts what the machine shows (icount reached exactly, console bytes against
// the QEMU golden, the env it runs on, pc at a wfi, no batch running while paused), never
// the chart's own value.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { createTestModel } from 'xstate/graph';
import { cpuMachine, type BatchExit, type CpuEvent, type CpuMode } from '../../machines/cpu.machine.js';
import { createCpuActor, type CpuActor, type CpuActorOptions } from '../../runtime/cpu-actor.js';
import { Machine } from '../../runtime/machine.js';
import { DeterministicEnv, GuestDeadlock } from '../../runtime/env/deterministic.js';
import { ReplayEnv } from '../../runtime/env/replay.js';
import type { Env } from '../../runtime/env/env.js';
import type { LogEntry, LogPayload } from '../../runtime/log/entry.js';
import { SeqLog } from '../../runtime/ft/seq-log.js';
import { runMachine } from '../../runtime/runner.js';
import { guestPath } from '../../runtime/guests.js';
import type { Output } from '../../runtime/types.js';
import { everyTransition } from './harness.js';
import { LoggedDeterministicEnv } from '../helpers/logged-env.js';
import { elfOf } from '../helpers/elf.js';

type Guest = 'hello' | 'timer' | 'fault' | 'sleeper';
const SEED = 7;
const IPT = 10;
const WFI = 0x1050_0073;
/** Replay is fed the log in chunks of this many instructions, as a backup receives it. */
const CHUNK = 20_000;
const RUN_UNTIL = 1_000;

/** The recording env of these tests: inputs from a seeded world, logged as RecordingEnv logs the host's. */
class RecordingDeterministicEnv extends LoggedDeterministicEnv {
  override readonly mode: Env['mode'] = 'record';
}

function image(guest: Guest): Uint8Array {
  // sleeper: `wfi; j .-4` with no timer armed and no input: a deterministic env can never wake it.
  if (guest === 'sleeper') return elfOf([WFI, 0xffdf_f06f]);
  return readFileSync(guestPath(guest === 'fault' ? 'hello' : guest));
}

function boot(guest: Guest, env: Env, onOutput: (o: Output) => void): Machine {
  const m = new Machine({ env, onOutput });
  const elf = m.loadElf(image(guest));
  // No handler and an illegal first instruction: the first batch must fault.
  if (guest === 'fault') m.bus.writeRam(elf.entry, new Uint8Array(4));
  return m;
}

const golden = (guest: Guest): string =>
  guest === 'hello' || guest === 'timer' ? readFileSync(new URL(`../../guests/${guest}/expected.txt`, import.meta.url), 'utf8') : '';
const text = (outs: readonly Output[]): string => String.fromCharCode(...outs.flatMap((o) => (o.kind === 'console' ? [o.byte] : [])));

interface Reference {
  entries: LogEntry[];
  outputs: Output[];
  icount: number;
}

/** A whole recorded run of each guest: what replay follows, and what every mode must print. */
const refs = new Map<Guest, Reference>();
async function referenceOf(guest: Guest): Promise<Reference> {
  let ref = refs.get(guest);
  if (!ref) {
    const entries: LogEntry[] = [];
    const outputs: Output[] = [];
    const log = new SeqLog((e) => entries.push(e));
    const m = boot(guest, new RecordingDeterministicEnv((p, ic) => log.append(p, ic), { seed: SEED, instructionsPerTick: IPT }), (o) => outputs.push(o));
    await runMachine(m, {}).catch((e: unknown) => {
      if (!(e instanceof GuestDeadlock)) throw e;
    });
    // The primary's heartbeat: the backup may run the faulting instruction too.
    log.append({ type: 'progress', released: 0 }, m.icount + 1);
    ref = { entries, outputs, icount: m.icount };
    refs.set(guest, ref);
  }
  return ref;
}

const flush = () => new Promise((r) => setImmediate(r));

/** The real machine and CPU actor one path runs on, and what the product showed. */
class World {
  readonly queue: Array<() => void> = [];
  readonly exits: BatchExit[] = [];
  readonly halts: number[] = [];
  readonly faults: Array<{ message: string; error: unknown }> = [];
  outputs: Output[] = [];
  readonly m: Machine;
  readonly actor: CpuActor;
  readonly opts: CpuActorOptions;
  private readonly atBoot;
  /** The env `cpu.start` / `cpu.takeover` installed last, and what it is for. */
  env: Env | undefined;
  replay: ReplayEnv | undefined;
  private fed = 0;
  recorded: LogEntry[] = [];
  target: number | undefined;
  tookOver = false;
  /**
   * The machine the instant the wanted exit happened: a deterministic env answers a sleeping
   * hart on the next microtask, so a wait is observed where it starts.
   */
  moment = { queued: 0, pc: 0, icount: 0, faults: 0 };
  /** A batch exit already produced by the step before (a pause that met a running batch). */
  preProduced: BatchExit | undefined;
  faultsBefore = 0;

  constructor(readonly guest: Guest, readonly ref: Reference) {
    this.m = boot(guest, new DeterministicEnv({ seed: SEED, instructionsPerTick: IPT }), (o) => this.outputs.push(o));
    this.atBoot = this.m.snapshot();
    this.opts = {
      batch: 1_000_000,
      schedule: (run) => void this.queue.push(run),
      onBatch: (e) => void this.exits.push(e),
      onHalt: (code) => void this.halts.push(code),
      onFault: (message, error) => void this.faults.push({ message, error }),
      takeoverEnv: (mode) => this.takeoverEnv(mode),
    };
    this.actor = createCpuActor(this.m, this.opts);
    this.actor.start();
  }

  private logged(): RecordingDeterministicEnv {
    this.recorded = [];
    const log = new SeqLog((e) => this.recorded.push(e));
    return new RecordingDeterministicEnv((p: LogPayload, ic: number) => log.append(p, ic), { seed: SEED, instructionsPerTick: IPT });
  }

  /** A go-live env continues the guest's clock from the newest mtime it read (as LiveEnv's mtimeAt). */
  private takeoverEnv(mode: 'live' | 'record'): Env {
    const env = mode === 'record' ? this.logged() : new DeterministicEnv({ seed: SEED, instructionsPerTick: IPT });
    const skew = Math.max(0, (this.replay?.lastMtime ?? 0) + 1 - Math.floor(this.m.icount / IPT));
    env.load({ skewTicks: skew, prng: SEED, consolePos: 0 });
    this.env = env;
    this.tookOver = true;
    return env;
  }

  start(mode: CpuMode): void {
    // A start after cpu.stop reloads the machine, as the runtime does.
    if (this.m.icount > 0 || this.m.hart.haltCode !== undefined || this.m.hart.fault) this.m.restore(this.atBoot);
    this.outputs = [];
    this.target = undefined;
    this.tookOver = false;
    this.replay = undefined;
    this.fed = 0;
    this.env = mode === 'replay' ? (this.replay = new ReplayEnv({ digest: (m) => m.digest() })) : mode === 'record' ? this.logged() : new DeterministicEnv({ seed: SEED, instructionsPerTick: IPT });
    if (this.replay) this.feed();
    this.m.env = this.env;
    this.actor.send({ type: 'cpu.start', mode });
  }

  /** The next chunk of the log reaches the replay env; false when all of it is there. */
  feed(): boolean {
    const r = this.replay;
    if (!r || this.fed >= this.ref.entries.length) return false;
    const limit = (this.ref.entries[this.fed]!.icount) + CHUNK;
    while (this.fed < this.ref.entries.length && this.ref.entries[this.fed]!.icount <= limit) r.push(this.ref.entries[this.fed++]!);
    return true;
  }

  /** Run the queued batch, if any; its exit. */
  runOne(): BatchExit | undefined {
    const run = this.queue.shift();
    if (!run) return undefined;
    const n = this.exits.length;
    run();
    return this.exits.length > n ? this.exits.at(-1) : undefined;
  }

  /** Let the env answer a waiting CPU (the log's next chunk under replay); the actor sends the event. */
  async answer(): Promise<void> {
    if (this.replay && this.m.icount >= this.replay.horizon) this.feed();
    await flush();
  }
}

const model = createTestModel(cpuMachine, {
  ...everyTransition,
  events: [
    ...(['live', 'record', 'replay'] as CpuMode[]).map((mode) => ({ type: 'cpu.start', mode }) as const),
    ...(['budget', 'request', 'wfi', 'halt', 'fault', 'target', 'horizon'] as BatchExit[]).map((exit) => ({ type: 'cpu.batchEnded', exit }) as const),
    { type: 'cpu.runUntil', icount: RUN_UNTIL },
    { type: 'cpu.takeover', mode: 'live' },
    { type: 'cpu.takeover', mode: 'record' },
  ],
});

class Impossible extends Error {}

const label = (ev: { type: string; exit?: string; mode?: string }) =>
  ev.type === 'cpu.batchEnded' ? `batchEnded(${ev.exit})` : ev.mode ? `${ev.type}(${ev.mode})` : ev.type;

/**
 * A flow-control pause that arrives while a batch runs (the primary's chart pauses the CPU
 * when a log entry sent inside the batch fills the channel): sent from inside the batch's
 * `step`, which then runs to its end. The batch must end with `want`.
 */
function pauseInBatch(w: World, want: BatchExit): void {
  const env = w.m.env;
  const nextAt = env.nextAt.bind(env);
  env.nextAt = (icount: number) => {
    env.nextAt = nextAt;
    w.actor.send({ type: 'cpu.pause' });
    return nextAt(icount);
  };
  w.opts.batch = want === 'budget' ? 50 : 1_000_000;
  w.faultsBefore = w.faults.length;
  const got = w.runOne();
  env.nextAt = nextAt;
  if (got !== want) throw new Impossible(`the batch a pause met ended with ${got ?? 'nothing'} where the path needs ${want}`);
  w.moment = { queued: w.queue.length, pc: w.m.hart.pc, icount: w.m.icount, faults: w.faults.length };
  w.preProduced = want;
}

/** Make the real machine produce the exit the path wants; only exits that leave the CPU where it was may pass first. */
async function produce(w: World, want: BatchExit, until: boolean): Promise<void> {
  w.opts.batch = want === 'budget' ? 50 : want === 'horizon' || want === 'target' ? 1_000_000 : 20_000;
  for (let n = 0; n < 20_000; n++) {
    if (w.queue.length === 0) {
      // Asleep (wfi, or a replay at its horizon): the env wakes it, and a batch is queued again.
      await w.answer();
      if (w.queue.length === 0) throw new Impossible(`no batch to run where the path needs ${want}`);
      continue;
    }
    const got = w.runOne();
    if (got === want) {
      w.moment = { queued: w.queue.length, pc: w.m.hart.pc, icount: w.m.icount, faults: w.faults.length };
      return;
    }
    // These leave the CPU running (a wfi or horizon on the way: it sleeps, the env wakes it,
    // and it runs again; replaying under a target it runs on).
    if (got === undefined || got === 'budget' || got === 'request' || got === 'wfi' || got === 'horizon') continue;
    if (got === 'target' && !until) continue;
    throw new Impossible(`the machine produced ${got} where the path needs ${want}`);
  }
  throw new Impossible(`no ${want} within 20 000 batches`);
}

describe('cpu chart on the real machine', () => {
  const paths = model.getShortestPaths();

  it('every path runs on a real machine, and each step shows in the machine', async () => {
    let completed = 0;
    const impossible: string[] = [];
    const executed = new Set<string>();
    const reached = new Set<string>();
    for (const path of paths) {
      const types = new Set(path.steps.map((s) => (s.event.type === 'cpu.batchEnded' ? `exit:${(s.event as { exit: string }).exit}` : s.event.type)));
      const guest: Guest = types.has('cpu.envFailed') ? 'sleeper' : types.has('exit:fault') ? 'fault'
        : types.has('exit:wfi') || types.has('exit:request') || types.has('exit:horizon') || types.has('cpu.inputDelivered') ? 'timer' : 'hello';
      const ref = await referenceOf(guest);
      const w = new World(guest, ref);
      let lastMode: CpuMode = 'live';
      const where = path.steps.map((s) => label(s.event as never)).join(' → ');
      try {
        for (const [i, step] of path.steps.entries()) {
          const ev = step.event as CpuEvent | { type: 'xstate.init' };
          if (ev.type === 'xstate.init') continue;
          const expected = step.state;
          // The env answers a sleeping hart on its own (a rejected idle() is a microtask away).
          const faultsBase = w.preProduced ? w.faultsBefore : ev.type === 'cpu.envFailed' ? w.moment.faults : w.faults.length;
          const before = { icount: w.m.icount, pc: w.m.hart.pc, env: w.m.env, halts: w.halts.length, faults: faultsBase };
          const at = `${where} at ${label(ev as never)}`;
          switch (ev.type) {
            case 'cpu.start':
              w.start(ev.mode);
              break;
            case 'cpu.runUntil': {
              // A path that wants the guest to end under the target gets one past its end.
              // One that wants the replay to reach the end of the log it has, one past that.
              const wants = (exits: string[]) => path.steps.slice(i).some((s) => s.event.type === 'cpu.batchEnded' && exits.includes((s.event as { exit: string }).exit));
              w.target = w.m.icount + (wants(['halt', 'fault']) ? ref.icount + 1_000_000 : wants(['horizon']) ? 3 * CHUNK : RUN_UNTIL);
              w.actor.send({ type: 'cpu.runUntil', icount: w.target });
              break;
            }
            case 'cpu.batchEnded':
              if (w.preProduced !== undefined) {
                expect(w.exits.at(-1), at).toBe(w.preProduced);
                w.preProduced = undefined;
              } else await produce(w, ev.exit, w.target !== undefined);
              break;
            case 'cpu.pause': {
              const next = path.steps[i + 1]?.event as { type: string; exit?: BatchExit } | undefined;
              if (next?.type === 'cpu.batchEnded' && w.queue.length > 0) pauseInBatch(w, next.exit!);
              else w.actor.send(ev);
              break;
            }
            case 'cpu.inputDelivered':
              await w.answer();
              if (w.queue.length === 0) throw new Impossible('the env had no input for the sleeping hart');
              break;
            case 'cpu.envFailed':
              // The sleeper's first wfi may still be woken (a timer due at reset); its next one never.
              for (let n = 0; n < 5 && w.faults.length === before.faults; n++) {
                await w.answer();
                if (w.faults.length === before.faults && w.runOne() !== 'wfi') break;
              }
              if (w.faults.length === before.faults) throw new Impossible('the env did not fail');
              break;
            default:
              w.actor.send(ev);
          }
          executed.add(ev.type === 'cpu.batchEnded' ? `exit:${ev.exit}` : ev.type);
          const state = String(expected.value);
          const mode = expected.context.mode;
          const prevMode = lastMode;
          lastMode = mode;
          reached.add(`${state}/${mode}`);

          // The env the machine really runs on is the one the mode needs.
          const envMode = w.m.env.mode;
          if (state !== 'stopped') {
            if (mode === 'replay') expect(envMode, at).toBe('replay');
            if (mode === 'record') expect(envMode, at).toBe('record');
            if (mode === 'live') expect(['live', 'deterministic'], at).toContain(envMode);
            expect(w.m.env, at).toBe(w.env);
          }
          if (ev.type === 'cpu.takeover') {
            // Same machine, not one instruction run or lost by the switch itself.
            expect(w.m.icount, at).toBe(before.icount);
            expect(w.m.hart.pc, at).toBe(before.pc);
            if (prevMode === 'replay' && mode !== 'replay') {
              // In place: the env switched from the replay to the takeover's.
              expect(w.tookOver, at).toBe(true);
              expect(before.env.mode, at).toBe('replay');
            } else {
              // Refused (not replaying, or not paused at a batch boundary): the env stays.
              expect(w.m.env, at).toBe(before.env);
            }
          }
          // Console bytes are the guest's computation: a prefix of what QEMU prints, at any batch split.
          const printed = text(w.outputs);
          if (guest === 'hello' || guest === 'timer') expect(golden(guest).startsWith(printed), `${at}: printed ${JSON.stringify(printed)}`).toBe(true);
          // Replay reproduces the recording exactly: the same outputs at the same icounts.
          if (mode === 'replay' && state !== 'stopped') {
            expect(w.outputs, at).toEqual(ref.outputs.filter((o) => o.icount < w.m.icount));
          }

          switch (state) {
            case 'stopped':
              // Nothing runs: a batch still queued does not touch the machine.
              while (w.runOne() !== undefined || w.queue.length > 0);
              expect(w.m.icount, at).toBe(before.icount);
              break;
            case 'running':
            case 'runningUntil':
              // Exactly one batch is on its way.
              expect(w.queue.length, at).toBe(1);
              break;
            case 'waitingForInterrupt':
            case 'waitingUntil': {
              // Entered by a batch's exit: no batch ran on, the hart asleep at the wfi that
              // retired, or standing at the end of the log the replay has.
              expect(ev.type, at).toBe('cpu.batchEnded');
              expect(w.moment.queued, at).toBe(0);
              const atWfi = w.m.bus.inRam(w.moment.pc - 4, 4) && Buffer.from(w.m.bus.readRam(w.moment.pc - 4, 4)).readUInt32LE(0) === WFI;
              const atHorizon = w.replay !== undefined && w.moment.icount >= w.replay.horizon;
              expect(atWfi || atHorizon, `${at}: pc ${w.moment.pc.toString(16)}`).toBe(true);
              break;
            }
            case 'paused': {
              if (ev.type === 'cpu.batchEnded' && ev.exit === 'target') {
                // cpu.runUntil stops at exactly its icount, whatever the batch size.
                expect(w.m.icount, at).toBe(w.target);
                w.target = undefined;
              }
              // Paused at a batch boundary: a queued batch does not run.
              const icount = w.m.icount;
              while (w.runOne() !== undefined);
              expect(w.m.icount, at).toBe(icount);
              break;
            }
            case 'halted':
              expect(w.m.hart.haltCode, at).toBe(0);
              expect(w.halts, at).toEqual([0]);
              expect(printed, at).toBe(golden(guest));
              if (mode === 'replay') expect(w.m.icount, at).toBe(ref.icount);
              if (mode === 'record' && !w.tookOver) {
                // What record logged replays to the same machine state.
                const rep = new ReplayEnv({ digest: (m) => m.digest() });
                const again = boot(guest, rep, () => {});
                for (const e of w.recorded) rep.push(e);
                rep.push({ seq: w.recorded.length, type: 'progress', released: 0, icount: w.m.icount + 1 });
                const out = await runMachine(again, {});
                expect(out.reason, at).toBe('halt');
                expect(again.digest(), at).toBe(w.m.digest());
              }
              break;
            case 'faulted':
              expect(w.faults.length, at).toBe(before.faults + 1);
              if (guest === 'sleeper') expect(w.faults.at(-1)!.error, at).toBeInstanceOf(GuestDeadlock);
              else expect(w.m.hart.fault?.message, at).toMatch(/illegal instruction/);
              break;
          }
        }
        completed++;
      } catch (e) {
        if (!(e instanceof Impossible)) throw e;
        impossible.push(`${where}: ${e.message}`);
      } finally {
        w.actor.stop();
      }
    }
    process.stderr.write(`cpu chart: ${completed}/${paths.length} paths ran on the real machine; not producible:\n  ${impossible.join('\n  ')}\n`);
    // Every state in every mode it can have, and every event and exit, happened on the real machine.
    for (const mode of ['live', 'record', 'replay']) {
      for (const s of ['running', 'paused', 'waitingForInterrupt', 'runningUntil', 'waitingUntil', 'halted', 'faulted']) {
        expect([...reached], `${s}/${mode} on the real machine`).toContain(`${s}/${mode}`);
      }
    }
    for (const e of ['cpu.start', 'cpu.pause', 'cpu.resume', 'cpu.runUntil', 'cpu.inputDelivered', 'cpu.envFailed', 'cpu.takeover', 'cpu.stop',
      'exit:budget', 'exit:request', 'exit:wfi', 'exit:halt', 'exit:fault', 'exit:target', 'exit:horizon']) {
      expect([...executed], `${e} executed on the real machine`).toContain(e);
    }
    expect(completed).toBeGreaterThan(paths.length * 0.8);
  });
});
