import { describe, expect, it } from 'vitest';
import { createTestModel } from 'xstate/graph';
import { Clint } from '../../devices/clint.js';
import type { ChartInspect } from '../../runtime/types.js';
import { timerMachine, type TimerEvent } from '../../machines/timer.machine.js';
import { eventsCovered, eventsHandled, everyTransition } from './harness.js';
import { eventCounter, runDevicePaths } from './device-harness.js';

const EVENT_TYPES: Record<TimerEvent['type'], true> = { 'timer.compareWritten': true, 'timer.fired': true };
const MTIMECMP_LO = 0x4000, MTIMECMP_HI = 0x4004;

const model = createTestModel(timerMachine, {
  ...everyTransition,
  events: [{ type: 'timer.compareWritten', far: true }, { type: 'timer.compareWritten', far: false }],
});

/** A real CLINT with fakes at its wire: the MTIP line level, batch exits, a fixed mtime. */
function rig(inspect?: ChartInspect) {
  const wire = { mtip: false, exits: 0 };
  const clint = new Clint({
    msip: { set: () => {} },
    mtip: { set: (l) => { wire.mtip = l; } },
    mtime: () => 0,
    requestExit: () => { wire.exits++; },
    ...(inspect ? { inspect } : {}),
  });
  return { clint, wire };
}
type Rig = ReturnType<typeof rig>;

/** Each chart event as the guest or the env causes it at the CLINT. */
function exec({ clint }: Rig, e: { type: string; far?: boolean }): void {
  switch (e.type) {
    case 'timer.compareWritten':
      // The guest's usual sequence: high word all ones, low word, then the real high word.
      clint.write(MTIMECMP_HI, 4, 0xffff_ffff);
      clint.write(MTIMECMP_LO, 4, e.far ? 0xffff_ffff : 1000);
      clint.write(MTIMECMP_HI, 4, e.far ? 0xffff_ffff : 0);
      return;
    case 'timer.fired':
      // The env's seam (runtime/env/*: applyTimer), at a batch boundary.
      clint.raiseTimer();
      return;
    default:
      throw new Error(`no executor for ${e.type}`);
  }
}

/** How many of exec's three compare writes bring the deadline earlier (each must end the batch). */
function earlierWrites({ clint }: Rig, far: boolean): number {
  let hi = clint.read(MTIMECMP_HI, 4);
  let lo = clint.read(MTIMECMP_LO, 4);
  let n = 0;
  for (const [isHi, v] of [[true, 0xffff_ffff], [false, far ? 0xffff_ffff : 1000], [true, far ? 0xffff_ffff : 0]] as const) {
    const before = hi * 2 ** 32 + lo;
    if (isHi) hi = v; else lo = v;
    if (hi * 2 ** 32 + lo < before) n++;
  }
  return n;
}

describe('timer chart, driven against the real CLINT', () => {
  const paths = model.getShortestPaths();

  it('shows MTIP on the line exactly while the model is pending, on every shortest path', () => {
    let writes = 0;
    const { steps } = runDevicePaths<Rig>({
      paths,
      eventTypes: Object.keys(EVENT_TYPES),
      make: () => { writes = 0; return rig(); },
      exec: (r, e) => { if (e.type === 'timer.compareWritten') writes += earlierWrites(r, (e as { far?: boolean }).far === true); exec(r, e); },
      check: (r, state, where) => {
        expect(r.wire.mtip, `MTIP line ${where}`).toBe(state.matches('pending'));
        expect(r.clint.timerPending, where).toBe(state.matches('pending'));
        // Every mtimecmp write that brings the deadline earlier ends the batch, so the env sees it.
        expect(r.wire.exits, where).toBe(writes);
        const cmpHi = r.clint.read(MTIMECMP_HI, 4);
        if (state.matches('disarmed')) expect(cmpHi, where).toBe(0xffff_ffff);
        else expect(cmpHi, where).toBe(0);
      },
    });
    expect(steps).toBeGreaterThanOrEqual(8);
  });

  it('exercises every declared event, and handles no undeclared one', () => {
    expect([...eventsCovered(paths)].sort()).toEqual(Object.keys(EVENT_TYPES).sort());
    expect([...eventsHandled(timerMachine)].sort()).toEqual(Object.keys(EVENT_TYPES).sort());
  });

  it('sends the chart nothing for accesses that change no state', () => {
    const events = eventCounter();
    const r = rig(events.inspect);
    r.clint.write(MTIMECMP_LO, 4, 500);
    r.clint.write(MTIMECMP_HI, 4, 0); // armed: one event
    r.clint.write(MTIMECMP_LO, 4, 900); // still armed: none
    r.clint.read(MTIMECMP_LO, 4);
    r.clint.read(0xbff8, 4);
    r.clint.raiseTimer(); // pending: one
    r.clint.raiseTimer(); // already pending: none
    expect(events.types).toEqual(['timer.compareWritten', 'timer.fired']);
  });

  it('restores the chart from a snapshot: a restored pending timer is lowered by a re-arm', () => {
    const a = rig();
    a.clint.write(MTIMECMP_HI, 4, 0);
    a.clint.raiseTimer();
    const b = rig();
    b.clint.load(a.clint.save());
    expect(b.wire.mtip).toBe(true);
    expect(b.clint.timerActor.getSnapshot().value).toBe('pending');
    b.clint.write(MTIMECMP_LO, 4, 2000);
    expect(b.wire.mtip).toBe(false);
    b.clint.raiseTimer();
    expect(b.wire.mtip).toBe(true);
  });
});
