import { describe, expect, it } from 'vitest';
import { createTestModel } from 'xstate/graph';
import { Uart16550, UART_FIFO_BYTES } from '../../devices/uart16550.js';
import { uartMachine, type UartEvent } from '../../machines/uart.machine.js';
import type { ChartInspect } from '../../runtime/types.js';
import { eventsCovered, eventsHandled, everyTransition } from './harness.js';
import { eventCounter, runDevicePaths } from './device-harness.js';

const EVENT_TYPES: Record<UartEvent['type'], true> = {
  'uart.received': true, 'uart.rxDrained': true, 'uart.overran': true, 'uart.lsrRead': true,
  'uart.thrEmptied': true, 'uart.thrAcknowledged': true, 'uart.ierWritten': true,
};
const RBR = 0, IER = 1, IIR = 2, LSR = 5;
const IIR_NONE = 1, IIR_THRE = 2, IIR_RDA = 4, IIR_RLS = 6;

const model = createTestModel(uartMachine, {
  ...everyTransition,
  events: [0, 1, 2, 4, 7].map((ier) => ({ type: 'uart.ierWritten' as const, ier })),
});

/** A real UART (FIFO on) with fakes at its wire: the IRQ line level and the console. */
function rig(inspect?: ChartInspect) {
  const wire = { irq: false, out: [] as number[] };
  const uart = new Uart16550({ set: (l) => { wire.irq = l; } }, (b) => wire.out.push(b), inspect ? { inspect } : {});
  uart.write(IIR, 1, 0x01); // FCR: FIFO on, 16 bytes deep
  return { uart, wire, held: 0 };
}
type Rig = ReturnType<typeof rig>;
type Snap = { matches: (v: never) => boolean; context: { ier: number } };
const isIn = (s: Snap, v: object) => s.matches(v as never);

/** The interrupt IIR should name in model state `s` (16550 priority order). */
function expectedId(s: Snap): number {
  const ier = s.context.ier;
  if ((ier & 4) && isIn(s, { lsr: 'overrun' })) return IIR_RLS;
  if ((ier & 1) && isIn(s, { rx: 'dataReady' })) return IIR_RDA;
  if ((ier & 2) && isIn(s, { thre: 'pending' })) return IIR_THRE;
  return IIR_NONE;
}

/** Each chart event as the console, the env or the guest causes it at the UART. */
function exec(r: Rig, e: UartEvent, prev: Snap, where: string): void {
  switch (e.type) {
    case 'uart.received': r.uart.receive(0x41); r.held++; return;
    case 'uart.rxDrained':
      while (r.held > 0) { r.uart.read(RBR, 1); r.held--; }
      return;
    case 'uart.overran': {
      // Fill the FIFO, lose one byte, then read back down to where it was: only OE changes.
      const before = r.held;
      while (r.held < UART_FIFO_BYTES) { r.uart.receive(0x42); r.held++; }
      r.uart.receive(0x43);
      while (r.held > before) { r.uart.read(RBR, 1); r.held--; }
      return;
    }
    case 'uart.lsrRead': {
      const lsr = r.uart.read(LSR, 1);
      expect(lsr & 0x02, `LSR.OE ${where}`).toBe(isIn(prev, { lsr: 'overrun' }) ? 0x02 : 0);
      expect(lsr & 0x01, `LSR.DR ${where}`).toBe(isIn(prev, { rx: 'dataReady' }) ? 1 : 0);
      return;
    }
    case 'uart.thrEmptied': {
      const n = r.wire.out.length;
      r.uart.write(RBR, 1, 0x5a);
      expect(r.wire.out.length, where).toBe(n + 1);
      return;
    }
    case 'uart.thrAcknowledged':
      expect(r.uart.read(IIR, 1) & 0x0f, `IIR ${where}`).toBe(expectedId(prev));
      return;
    case 'uart.ierWritten': r.uart.write(IER, 1, e.ier); return;
    default: throw new Error(`no executor for ${(e as { type: string }).type}`);
  }
}

/** What the guest and the PLIC see: the line, IER, and IIR/LSR where reading them changes nothing. */
function check(r: Rig, state: Snap, where: string): void {
  expect(r.wire.irq, `IRQ line ${where}`).toBe(isIn(state, { irq: 'high' }));
  expect(r.wire.irq, `IRQ line is the OR of enabled conditions ${where}`).toBe(expectedId(state) !== IIR_NONE);
  expect(r.uart.read(IER, 1), `IER ${where}`).toBe(state.context.ier);
  if (!isIn(state, { lsr: 'overrun' })) {
    expect(r.uart.read(LSR, 1) & 0x01, `LSR.DR ${where}`).toBe(isIn(state, { rx: 'dataReady' }) ? 1 : 0);
  }
  if (expectedId(state) !== IIR_THRE) expect(r.uart.read(IIR, 1) & 0x0f, `IIR ${where}`).toBe(expectedId(state));
}

describe('uart chart, driven against the real UART', () => {
  const paths = model.getShortestPaths();

  it('shows the line, IER, IIR and LSR the model names, on every shortest path', () => {
    const { steps } = runDevicePaths<Rig>({
      paths, eventTypes: Object.keys(EVENT_TYPES), make: () => rig(),
      exec: (r, e, prev, where) => exec(r, e as UartEvent, prev as never, where),
      check: (r, s, where) => check(r, s as never, where),
    });
    expect(steps).toBeGreaterThanOrEqual(40);
  });

  it('exercises every declared event, and handles no undeclared one', () => {
    expect([...eventsCovered(paths)].sort()).toEqual(Object.keys(EVENT_TYPES).sort());
    expect([...eventsHandled(uartMachine)].sort()).toEqual(Object.keys(EVENT_TYPES).sort());
  });

  it('sends the chart nothing for a polled console write (LSR read, THR write)', () => {
    const events = eventCounter();
    const r = rig(events.inspect);
    for (const b of [0x68, 0x69, 0x0a]) {
      expect(r.uart.read(LSR, 1) & 0x20).toBe(0x20);
      r.uart.write(RBR, 1, b);
    }
    r.uart.write(IER, 1, 0);
    expect(events.types).toEqual(['uart.thrEmptied']);
  });

  it('restores the chart from a snapshot: a restored RX interrupt drops when the FIFO drains', () => {
    const a = rig();
    a.uart.write(IER, 1, 1);
    a.uart.receive(0x31);
    const b = rig();
    b.uart.load(JSON.parse(JSON.stringify(a.uart.save())));
    expect(b.uart.save()).toEqual(a.uart.save());
    expect(b.wire.irq).toBe(true);
    expect(b.uart.read(IIR, 1) & 0x0f).toBe(IIR_RDA);
    expect(b.uart.read(RBR, 1)).toBe(0x31);
    expect(b.wire.irq).toBe(false);
  });
});
