// Model-based tests of the device charts against the devices themselves (issue 12): the
// paths come from the chart (xstate/graph), but each event is carried out at the device's
// wire (a register access through its MMIO interface, a line, the env's seam) and each step
// asserts what the device shows to the guest (registers, interrupt lines), never the chart's
// own value. An effect the device forgets to supply, or supplies wrongly, fails here.
import type { AnyMachineSnapshot, EventObject, InspectionEvent } from 'xstate';
import type { StatePath } from 'xstate/graph';
import { expect } from 'vitest';

export interface DevicePathRun<D> {
  paths: ReadonlyArray<StatePath<AnyMachineSnapshot, EventObject>>;
  /** Every event type of the chart's event union: each step must be one of them. */
  eventTypes: readonly string[];
  /** A fresh device with fakes at its wire. */
  make: () => D;
  /** Carry out what `event` means at the device's wire. Throws on an event it does not know. */
  exec: (dut: D, event: EventObject, prev: AnyMachineSnapshot, where: string) => void;
  /** Assert what the device shows in the model state `state`. */
  check: (dut: D, state: AnyMachineSnapshot, where: string) => void;
}

export function runDevicePaths<D>(run: DevicePathRun<D>): { steps: number } {
  let steps = 0;
  expect(run.paths.length).toBeGreaterThan(0);
  for (const path of run.paths) {
    const dut = run.make();
    const where = (i: number) => `path ${path.steps.map((s) => JSON.stringify(s.event)).join(' → ')} at step ${i}`;
    let prev: AnyMachineSnapshot | undefined;
    path.steps.forEach((step, i) => {
      if (step.event.type !== 'xstate.init') {
        expect(run.eventTypes, `${step.event.type} is a declared event`).toContain(step.event.type);
        run.exec(dut, step.event, prev!, where(i));
        steps++;
      }
      run.check(dut, step.state, where(i));
      prev = step.state;
    });
  }
  return { steps };
}

/** An `inspect` observer that counts the events actors receive (their `@xstate.event`s). */
export function eventCounter(): { inspect: (e: InspectionEvent) => void; count: () => number; types: string[] } {
  const types: string[] = [];
  return {
    inspect: (e) => {
      if (e.type === '@xstate.event' && !e.event.type.startsWith('xstate.')) types.push(e.event.type);
    },
    count: () => types.length,
    types,
  };
}
