import { describe, expect, it } from 'vitest';
import { createTestModel } from 'xstate/graph';
import { VirtioMmio, type VirtioDevice } from '../../devices/virtio-mmio.js';
import { virtioMachine, type VirtioEvent } from '../../machines/virtio.machine.js';
import { Bus } from '../../runtime/bus.js';
import type { ChartInspect } from '../../runtime/types.js';
import { eventsCovered, eventsHandled, everyTransition } from './harness.js';
import { eventCounter, runDevicePaths } from './device-harness.js';

const EVENT_TYPES: Record<VirtioEvent['type'], true> = {
  'virtio.statusWritten': true, 'virtio.queueReadyWritten': true, 'virtio.broken': true,
};
// The driver's initialisation steps (VIRTIO 1.1 §3.1.1), cumulative as drivers write them.
const STATUSES = [0, 1, 3, 11, 15, 0x80 | 3];
const RAM = 0x8000_0000;
const DRIVER_FEATURES = 0x020, DRIVER_FEATURES_SEL = 0x024, QUEUE_SEL = 0x030, QUEUE_NUM = 0x038;
const QUEUE_READY = 0x044, QUEUE_NOTIFY = 0x050, INTERRUPT_STATUS = 0x060, STATUS = 0x070;
const QUEUE_DESC_LOW = 0x080, QUEUE_DRIVER_LOW = 0x090, QUEUE_DEVICE_LOW = 0x0a0;
const NEEDS_RESET = 0x40, FEATURES_OK = 8;

const model = createTestModel(virtioMachine, {
  ...everyTransition,
  events: [
    ...STATUSES.map((status) => ({ type: 'virtio.statusWritten', status }) as const),
    ...[0, 1].flatMap((queue) => [true, false].map((ready) => ({ type: 'virtio.queueReadyWritten', queue, ready }) as const)),
  ],
});

/** A device part that only records kicks, or finds the next chain bad (the wire's fake). */
class FakeDevice implements VirtioDevice {
  readonly deviceId = 2;
  readonly queueCount = 2;
  readonly features: readonly [number, number] = [0, 0];
  kicks: number[] = [];
  failNext = false;
  resets = 0;
  private t!: VirtioMmio;
  attach(t: VirtioMmio): void { this.t = t; }
  configRead(): number { return 0; }
  notify(q: number): void {
    this.kicks.push(q);
    if (this.failNext) this.t.fail('bad chain');
  }
  reset(): void { this.resets++; }
  save(): unknown { return {}; }
  load(): void {}
}

/** A real virtio-mmio transport over real RAM, with a fake line and a fake device part. */
function rig(inspect?: ChartInspect) {
  const wire = { irq: false };
  const dev = new FakeDevice();
  const mmio = new VirtioMmio(dev, { set: (l) => { wire.irq = l; } }, new Bus(RAM, 0x10000), inspect ? { inspect } : {});
  return { mmio, dev, wire, lastStatus: 0, needsReset: false };
}
type Rig = ReturnType<typeof rig>;
type Snap = { value: unknown; matches: (v: never) => boolean; context: { queuesReady: number } };

const readyQueue = (s: Snap) => [0, 1].find((q) => (s.context.queuesReady >> q) & 1);

/** Each chart event as the driver, or a bad chain, causes it at the transport. */
function exec(r: Rig, e: VirtioEvent, prev: Snap): void {
  const { mmio } = r;
  switch (e.type) {
    case 'virtio.statusWritten':
      // A modern driver accepts VERSION_1 before FEATURES_OK (§6.1), so the device keeps it.
      if (e.status & FEATURES_OK) {
        mmio.write(DRIVER_FEATURES_SEL, 4, 1);
        mmio.write(DRIVER_FEATURES, 4, 1);
      }
      mmio.write(STATUS, 4, e.status);
      r.lastStatus = e.status;
      if (e.status === 0) r.needsReset = false;
      return;
    case 'virtio.queueReadyWritten':
      mmio.write(QUEUE_SEL, 4, e.queue);
      if (e.ready) {
        mmio.write(QUEUE_NUM, 4, 8);
        mmio.write(QUEUE_DESC_LOW, 4, RAM + 0x1000 * (1 + e.queue));
        mmio.write(QUEUE_DRIVER_LOW, 4, RAM + 0x1000 * (3 + e.queue));
        mmio.write(QUEUE_DEVICE_LOW, 4, RAM + 0x1000 * (5 + e.queue));
      }
      mmio.write(QUEUE_READY, 4, e.ready ? 1 : 0);
      return;
    case 'virtio.broken': {
      // The device part finds a bad chain on a ready queue; with none ready, the kick itself
      // is the mistake (§4.2.3.2). A device that is not serving does neither.
      r.dev.failNext = true;
      mmio.write(QUEUE_NOTIFY, 4, readyQueue(prev) ?? 0);
      r.dev.failNext = false;
      if (prev.matches('ready' as never)) r.needsReset = true;
      return;
    }
    default: throw new Error(`no executor for ${(e as { type: string }).type}`);
  }
}

/** What the driver sees: Status, QueueReady, the interrupt, and whether a kick is served. */
function check(r: Rig, s: Snap, where: string): void {
  const { mmio } = r;
  const status = mmio.read(STATUS, 4);
  expect(status & NEEDS_RESET, `NEEDS_RESET ${where}`).toBe(s.matches('needsReset' as never) || r.needsReset ? NEEDS_RESET : 0);
  expect(status & ~NEEDS_RESET, `Status ${where}`).toBe(r.lastStatus);
  for (const q of [0, 1]) {
    mmio.write(QUEUE_SEL, 4, q);
    expect(mmio.read(QUEUE_READY, 4), `QueueReady ${q} ${where}`).toBe((s.context.queuesReady >> q) & 1);
  }
  if (s.matches('needsReset' as never)) {
    expect(mmio.read(INTERRUPT_STATUS, 4) & 2, `config interrupt ${where}`).toBe(2);
    expect(r.wire.irq, `IRQ line ${where}`).toBe(true);
  }
  if (s.matches('reset' as never)) {
    expect(mmio.read(INTERRUPT_STATUS, 4), `interrupt status ${where}`).toBe(0);
    expect(r.wire.irq, `IRQ line ${where}`).toBe(false);
  }
  // A kick is served only in `ready`, on a ready queue (probe where it cannot break the device).
  const q = readyQueue(s);
  if (!s.matches('ready' as never) || q !== undefined) {
    const before = r.dev.kicks.length;
    mmio.write(QUEUE_NOTIFY, 4, q ?? 0);
    expect(r.dev.kicks.length - before, `kick served ${where}`).toBe(s.matches('ready' as never) ? 1 : 0);
  }
}

describe('virtio transport chart, driven against the real virtio-mmio transport', () => {
  const paths = model.getShortestPaths();

  it('shows Status, QueueReady, the config interrupt and kick service the model names', () => {
    const { steps } = runDevicePaths<Rig>({
      paths, eventTypes: Object.keys(EVENT_TYPES), make: () => rig(),
      exec: (r, e, prev) => exec(r, e as VirtioEvent, prev as never),
      check: (r, s, where) => check(r, s as never, where),
    });
    expect(steps).toBeGreaterThan(100);
  });

  it('exercises every declared event, and handles no undeclared one', () => {
    expect([...eventsCovered(paths)].sort()).toEqual(Object.keys(EVENT_TYPES).sort());
    expect([...eventsHandled(virtioMachine)].sort()).toEqual(Object.keys(EVENT_TYPES).sort());
  });

  it('sends the chart nothing for notifications, interrupt acks and repeated QueueReady', () => {
    const events = eventCounter();
    const r = rig(events.inspect);
    exec(r, { type: 'virtio.statusWritten', status: 11 }, undefined as never);
    exec(r, { type: 'virtio.queueReadyWritten', queue: 0, ready: true }, undefined as never);
    exec(r, { type: 'virtio.statusWritten', status: 15 }, undefined as never);
    const n = events.count();
    r.mmio.write(QUEUE_SEL, 4, 0);
    r.mmio.write(QUEUE_READY, 4, 1);
    for (let i = 0; i < 5; i++) r.mmio.write(QUEUE_NOTIFY, 4, 0);
    r.mmio.write(0x064, 4, 1);
    expect(r.dev.kicks).toEqual([0, 0, 0, 0, 0]);
    expect(events.count()).toBe(n);
  });

  it('restores the chart from a snapshot: a restored ready device serves, then breaks and resets', () => {
    const a = rig();
    exec(a, { type: 'virtio.statusWritten', status: 11 }, undefined as never);
    exec(a, { type: 'virtio.queueReadyWritten', queue: 1, ready: true }, undefined as never);
    exec(a, { type: 'virtio.statusWritten', status: 15 }, undefined as never);
    const b = rig();
    b.mmio.load(JSON.parse(JSON.stringify(a.mmio.save())));
    expect(b.mmio.save()).toEqual(a.mmio.save());
    expect(b.mmio.chartActor.getSnapshot().value).toBe('ready');
    b.mmio.write(QUEUE_NOTIFY, 4, 1);
    expect(b.dev.kicks).toEqual([1]);
    b.mmio.write(QUEUE_NOTIFY, 4, 0); // queue 0 is not ready: a driver mistake
    expect(b.mmio.read(STATUS, 4) & NEEDS_RESET).toBe(NEEDS_RESET);
    expect(b.wire.irq).toBe(true);
    b.mmio.write(STATUS, 4, 0);
    expect(b.mmio.read(STATUS, 4)).toBe(0);
    expect(b.wire.irq).toBe(false);
  });
});
