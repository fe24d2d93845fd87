import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { getNextSnapshot } from 'xstate';
import { createTestModel } from 'xstate/graph';
import { Plic } from '../../devices/plic.js';
import { plicMachine, type PlicEvent } from '../../machines/plic.machine.js';
import type { ChartInspect } from '../../runtime/types.js';
import { eventsCovered, eventsHandled, everyTransition } from './harness.js';
import { eventCounter, runDevicePaths } from './device-harness.js';

const EVENT_TYPES: Record<PlicEvent['type'], true> = {
  'plic.raised': true, 'plic.lowered': true, 'plic.claimed': true, 'plic.completed': true,
};

const model = createTestModel(plicMachine, everyTransition);

const SOURCE = 10; // the UART's source on QEMU virt
const CLAIM = 0x20_0004;
const PENDING = 0x1000;

/** A real PLIC with one enabled source (priority 1 > threshold 0) and a fake MEIP line. */
function rig(inspect?: ChartInspect) {
  const wire = { meip: false };
  const plic = new Plic({ set: (l) => { wire.meip = l; } }, inspect ? { inspect } : {});
  plic.write(SOURCE * 4, 4, 1);
  plic.write(0x2000, 4, 1 << SOURCE);
  const line = plic.line(SOURCE);
  return { plic, line, wire };
}
type Rig = ReturnType<typeof rig>;

/** Each chart event as the device's line or the hart causes it at the PLIC. */
function exec(r: Rig, e: { type: string }, prev: { matches: (v: never) => boolean }, where: string): void {
  switch (e.type) {
    case 'plic.raised': r.line.set(true); return;
    case 'plic.lowered': r.line.set(false); return;
    case 'plic.claimed': {
      // The hart reads the claim register: it gets this source only if it was pending.
      const got = r.plic.read(CLAIM, 4);
      expect(got, `claim ${where}`).toBe(prev.matches('pending' as never) ? SOURCE : 0);
      return;
    }
    case 'plic.completed': r.plic.write(CLAIM, 4, SOURCE); return;
    default: throw new Error(`no executor for ${e.type}`);
  }
}

/** What the hart sees: the pending bit and MEIP follow the model's state. */
function check(r: Rig, state: { matches: (v: never) => boolean }, where: string): void {
  const pending = state.matches('pending' as never);
  expect((r.plic.read(PENDING, 4) >>> SOURCE) & 1, `pending bit ${where}`).toBe(pending ? 1 : 0);
  expect(r.wire.meip, `MEIP ${where}`).toBe(pending);
}

describe('plic chart, driven against the real PLIC', () => {
  const paths = model.getShortestPaths();

  it('shows the pending bit, MEIP and the claim result the model names, on every shortest path', () => {
    const { steps } = runDevicePaths<Rig>({ paths, eventTypes: Object.keys(EVENT_TYPES), make: () => rig(), exec, check });
    expect(steps).toBeGreaterThanOrEqual(12);
  });

  it('exercises every declared event, and handles no undeclared one', () => {
    expect([...eventsCovered(paths)].sort()).toEqual(Object.keys(EVENT_TYPES).sort());
    expect([...eventsHandled(plicMachine)].sort()).toEqual(Object.keys(EVENT_TYPES).sort());
  });

  it('agrees with the chart model on random event sequences', () => {
    const event = fc.constantFrom<PlicEvent>(
      { type: 'plic.raised' }, { type: 'plic.lowered' }, { type: 'plic.claimed' }, { type: 'plic.completed' },
    );
    fc.assert(fc.property(fc.array(event, { maxLength: 40 }), (events) => {
      const r = rig();
      let state = plicMachine.resolveState({ value: 'idle', context: { lineHigh: false } });
      for (const e of events) {
        exec(r, e, state, JSON.stringify(events));
        state = getNextSnapshot(plicMachine, state, e);
        check(r, state, JSON.stringify(events));
      }
    }));
  });

  it('sends a gateway nothing for a line set to the level it has', () => {
    const events = eventCounter();
    const r = rig(events.inspect);
    r.line.set(false);
    r.line.set(true);
    r.line.set(true);
    r.plic.read(PENDING, 4);
    r.plic.write(CLAIM, 4, SOURCE); // not claimed: ignored
    expect(events.types).toEqual(['plic.raised']);
  });

  it('restores each gateway from a snapshot: a claimed source re-pends on completion', () => {
    const a = rig();
    a.line.set(true);
    expect(a.plic.read(CLAIM, 4)).toBe(SOURCE);
    const b = rig();
    b.plic.load(JSON.parse(JSON.stringify(a.plic.save())));
    expect(b.plic.save()).toEqual(a.plic.save());
    expect(b.wire.meip).toBe(false);
    b.plic.write(CLAIM, 4, SOURCE);
    expect(b.wire.meip).toBe(true);
    expect(b.plic.read(CLAIM, 4)).toBe(SOURCE);
  });
});
