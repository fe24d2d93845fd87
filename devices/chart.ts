// How a device runs its chart (machines/<dev>.machine.ts) at the cost of a register access.
//
// An XState actor spends ~6 µs per event on this host (macrostep, snapshot objects), and a
// virtio interrupt walks a PLIC gateway through four transitions: as actors, the device charts
// halved the dns guest's queries/s. So a device keeps its chart's *snapshot* and advances it
// with XState's own pure `transition(machine, snapshot, event)`, memoized per (snapshot,
// event): the first time a state meets an event XState computes the step (guards, assigns,
// `always`, entry/exit order) and the device stores the resulting snapshot and effects; the
// next time it reuses them. Each snapshot is interned by its state value and context, so the
// table is as small as the chart's reachable graph and a miss costs ~60 µs once per edge. The chart still decides everything; nothing here
// is a hand-written copy of its transitions.
//
// WARNING: sound only while a step depends on nothing but the snapshot (state and context)
// and the event's `key`, which must name every payload field a guard or assign reads.
//
// With an inspector attached (`--inspect`, the dashboard) the device runs a real actor
// instead, so every event and state reaches the inspector as usual.
import { createActor, transition, type Actor, type AnyStateMachine, type EventFromLogic, type SnapshotFrom } from 'xstate';
import type { ChartInspect } from '../runtime/types.js';

type Step<M extends AnyStateMachine> = [SnapshotFrom<M>, ReadonlyArray<{ exec?: ((info: never, params: never) => void) | undefined; info: unknown; params: unknown }>];

export class DeviceChart<M extends AnyStateMachine> {
  private snap: SnapshotFrom<M>;
  private actor: Actor<M> | undefined;
  private readonly memo = new Map<object, Map<string, Step<M>>>();
  /** One snapshot object per (state value, context): the memo's keys. */
  private readonly interned = new Map<string, SnapshotFrom<M>>();

  /** Run `machine` (effects provided) from `snapshot`; with `inspect`, as an actor named `id`. */
  constructor(private readonly machine: M, snapshot: SnapshotFrom<M>, inspect?: { inspect: ChartInspect; id: string }) {
    this.snap = this.intern(snapshot);
    if (inspect) this.actor = createActor(machine, { snapshot, id: inspect.id, inspect: inspect.inspect } as never).start() as Actor<M>;
  }

  /** The chart's current snapshot (its state is what the device reports). */
  getSnapshot(): SnapshotFrom<M> {
    return this.actor ? (this.actor.getSnapshot() as SnapshotFrom<M>) : this.snap;
  }

  /** Step the chart with `event`, whose payload `key` names (the type alone when it has none). */
  send(event: EventFromLogic<M>, key: string = (event as { type: string }).type): void {
    if (this.actor) {
      this.actor.send(event);
      return;
    }
    let byEvent = this.memo.get(this.snap as object);
    if (!byEvent) this.memo.set(this.snap as object, (byEvent = new Map()));
    let step = byEvent.get(key);
    if (!step) {
      const [next, effects] = transition(this.machine, this.snap, event) as unknown as Step<M>;
      step = [this.intern(next), effects];
      byEvent.set(key, step);
    }
    this.snap = step[0];
    const effects = step[1];
    for (let i = 0; i < effects.length; i++) {
      const a = effects[i]!;
      a.exec?.(a.info as never, a.params as never);
    }
  }

  private intern(snap: SnapshotFrom<M>): SnapshotFrom<M> {
    const s = snap as unknown as { value: unknown; context: unknown };
    const key = JSON.stringify([s.value, s.context]);
    const have = this.interned.get(key);
    if (have) return have;
    this.interned.set(key, snap);
    return snap;
  }

  /** Stop the actor, if one runs (the device is replacing this chart). */
  stop(): void {
    this.actor?.stop();
  }
}
