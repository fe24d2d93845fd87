// The virtio-net chart's paths, carried out against a real Machine's virtio-net (transport,
// device, the I/O hub) by a guest driver through its registers and queues, with a fake only at
// the network's wire (a frame source and sink). Each step asserts what the guest and the wire
// show: frames in guest RAM, the used rings, the interrupt, frames waiting or delivered, bytes
// sent on the wire — never the chart's own value.
import { describe, expect, it } from 'vitest';
import { createTestModel } from 'xstate/graph';
import type { AnyMachineSnapshot, EventObject } from 'xstate';
import { virtioNetMachine, type VirtioNetEvent } from '../../machines/virtio-net.machine.js';
import { Machine } from '../../runtime/machine.js';
import { DeterministicEnv } from '../../runtime/env/deterministic.js';
import type { NetBackend } from '../../runtime/io/backend.js';
import type { ChartInspect, Output } from '../../runtime/types.js';
import { RAM_BASE } from '../../runtime/platform.js';
import { NET_HDR_BYTES } from '../../devices/virtio-net.js';
import { eventsCovered, eventsHandled, everyTransition } from './harness.js';
import { eventCounter } from './device-harness.js';
import { DRIVER_OK_STATUS, STATUS, VirtioDriver } from './virtio-driver.js';

const EVENT_TYPES: Record<VirtioNetEvent['type'], true> = {
  'net.buffersPosted': true, 'net.buffersUsedUp': true, 'net.reset': true, 'net.linkUp': true,
};
const SLOT = 7;
const RX = 0, TX = 1;
const RX_BUF = NET_HDR_BYTES + 1514;

const model = createTestModel(virtioNetMachine, everyTransition);

/** The network at the wire: frames the host hands in, frames it was given to send. */
class Wire implements NetBackend {
  onFrame: ((frame: Uint8Array) => void) | undefined;
  sent: Uint8Array[] = [];
  send(frame: Uint8Array): void {
    this.sent.push(frame);
  }
  close(): Promise<void> {
    return Promise.resolve();
  }
}

let frameNo = 0;
const frame = (len = 60) => new Uint8Array(len).map((_, i) => (i * 3 + frameNo++) & 0xff);

function rig(inspect?: ChartInspect) {
  const wire = new Wire();
  const outputs: Output[] = [];
  const m = new Machine({ memoryMiB: 1, env: new DeterministicEnv({ seed: 1 }), net: {}, onOutput: (o) => outputs.push(o) });
  if (inspect) m.io!.net!.inspectWith(inspect);
  const drv = new VirtioDriver(m, SLOT, 2);
  drv.init();
  return {
    m, io: m.io!, wire, drv, outputs,
    /** RX buffers the guest posted and the device has not filled: their addresses by head. */
    posted: new Map<number, number>(),
    /** Frames the host handed in that wait for a buffer, in order. */
    waiting: [] as Uint8Array[],
    linked: false, n: 0,
  };
}
type Rig = ReturnType<typeof rig>;

/** The guest posts one receive buffer and notifies the RX queue. */
function post(r: Rig): void {
  const at = RAM_BASE + 0x10000 + 0x800 * (r.n++ % 64);
  r.m.bus.writeRam(at, new Uint8Array(RX_BUF));
  const head = r.drv.submit(RX, [{ addr: at, len: RX_BUF, write: true }]);
  r.posted.set(head, at);
}

/** The guest saw `f` arrive: header then frame in the buffer, the used ring, the interrupt. */
function sawReceived(r: Rig, f: Uint8Array, where: string): void {
  const used = r.drv.popUsed(RX);
  expect(used.length, `one RX buffer returned ${where}`).toBe(1);
  const [head, len] = used[0]!;
  const at = r.posted.get(head);
  expect(at, `a posted buffer ${where}`).toBeDefined();
  r.posted.delete(head);
  expect(len, `bytes written ${where}`).toBe(NET_HDR_BYTES + f.length);
  expect(r.m.bus.readRam(at! + 10, 2), `num_buffers ${where}`).toEqual(Uint8Array.of(1, 0));
  expect(Buffer.from(r.m.bus.readRam(at! + NET_HDR_BYTES, f.length)), `frame bytes ${where}`).toEqual(Buffer.from(f));
  const irq = r.drv.interrupt();
  expect(irq.status & 1, `used-buffer interrupt ${where}`).toBe(1);
  expect(irq.line, `PLIC line ${where}`).toBe(true);
  r.drv.ack();
}

/** One frame reaches the guest the way the product brings it: from the wire (live), or from the log. */
function deliverOne(r: Rig, where: string): void {
  if (r.linked) {
    if (r.waiting.length === 0) {
      const f = frame();
      r.wire.onFrame?.(f);
      r.waiting.push(f);
    }
    expect(r.io.hasDue(), `a frame is due ${where}`).toBe(true);
    const c = r.io.takeDue();
    expect(c?.type, `the env takes a frame ${where}`).toBe('net-rx');
    expect(r.io.apply(c!), `the device takes it ${where}`).toBe(true);
    sawReceived(r, r.waiting.shift()!, where);
  } else {
    const f = frame();
    expect(r.io.apply({ type: 'net-rx', frame: f }), `the device takes the logged frame ${where}`).toBe(true);
    sawReceived(r, f, where);
  }
}

function exec(r: Rig, e: VirtioNetEvent, where: string): void {
  switch (e.type) {
    case 'net.buffersPosted':
      post(r);
      return;
    case 'net.buffersUsedUp':
      while (r.posted.size > 0) deliverOne(r, where);
      return;
    case 'net.reset':
      r.drv.init();
      r.posted.clear();
      return;
    case 'net.linkUp':
      r.io.attach({ net: r.wire });
      r.linked = true;
      return;
    default: throw new Error(`no executor for ${(e as { type: string }).type}`);
  }
}

/** What the guest and the wire show in model state `s`. */
function check(r: Rig, s: AnyMachineSnapshot, where: string): void {
  expect(r.drv.outstanding(RX), `RX buffers not filled ${where}`).toBe(r.posted.size);
  expect(r.posted.size > 0, `RX buffers posted ${where}`).toBe(s.matches({ rx: 'ready' }));
  expect(r.drv.read(STATUS), `Status ${where}`).toBe(DRIVER_OK_STATUS);
  if (r.linked) {
    // A frame from the wire waits in the host while no buffer is posted: it is not taken (so
    // not logged), and it is due the moment the guest has one.
    const f = frame();
    r.wire.onFrame?.(f);
    r.waiting.push(f);
    expect(r.io.hasDue(), `a frame from the wire is due ${where}`).toBe(s.matches({ rx: 'ready' }));
    if (!s.matches({ rx: 'ready' })) expect(r.io.takeDue(), `no frame taken while starved ${where}`).toBeUndefined();
  }
  transmit(r, s.matches({ link: 'up' }), where);
  expect(r.drv.interrupt(), `no interrupt left unacknowledged ${where}`).toEqual({ status: 0, line: false });
}

/**
 * The guest transmits: the frame leaves as an output, its buffer comes back at once, and once
 * released it reaches the wire only over a link that is up.
 */
function transmit(r: Rig, up: boolean, where: string): void {
  const at = RAM_BASE + 0x80000;
  const f = frame(64);
  r.m.bus.writeRam(at, new Uint8Array(NET_HDR_BYTES));
  r.m.bus.writeRam(at + NET_HDR_BYTES, f);
  const outs = r.outputs.length, sent = r.wire.sent.length;
  r.drv.submit(TX, [{ addr: at, len: NET_HDR_BYTES + f.length }]);
  expect(r.outputs.length, `TX output ${where}`).toBe(outs + 1);
  const o = r.outputs.at(-1)!;
  expect(o.kind === 'net' && Buffer.from(o.frame).equals(Buffer.from(f)), `TX output bytes ${where}`).toBe(true);
  expect(r.drv.popUsed(TX).length, `TX buffer returned ${where}`).toBe(1);
  r.drv.ack();
  r.io.execute(o);
  expect(r.wire.sent.length - sent, `frames on the wire ${where}`).toBe(up ? 1 : 0);
  if (up) expect(Buffer.from(r.wire.sent.at(-1)!), `bytes on the wire ${where}`).toEqual(Buffer.from(f));
}

describe('virtio-net chart, driven against the real virtio-net and its I/O hub', () => {
  const paths = model.getShortestPaths();

  it('shows the frames, used rings, interrupt and wire the model names, on every shortest path', () => {
    expect(paths.length).toBeGreaterThan(0);
    let steps = 0;
    for (const path of paths) {
      const r = rig();
      const where = (i: number) => `path ${path.steps.map((s) => s.event.type).join(' → ')} at step ${i}`;
      path.steps.forEach((step, i) => {
        // The path's first step is the chart starting (`xstate.init`), not an event to carry out.
        if ((step.event as EventObject).type !== 'xstate.init') {
          expect(Object.keys(EVENT_TYPES)).toContain(step.event.type);
          exec(r, step.event as VirtioNetEvent, where(i));
          steps++;
        }
        check(r, step.state, where(i));
      });
    }
    expect(steps).toBeGreaterThanOrEqual(8);
  });

  it('exercises every declared event, and handles no undeclared one', () => {
    expect([...eventsCovered(paths)].sort()).toEqual(Object.keys(EVENT_TYPES).sort());
    expect([...eventsHandled(virtioNetMachine)].sort()).toEqual(Object.keys(EVENT_TYPES).sort());
  });

  it('sends the chart nothing per frame while buffers remain, nor per transmit, nor for a reset while starved', () => {
    const events = eventCounter();
    const r = rig(events.inspect);
    r.io.attach({ net: r.wire });
    r.linked = true;
    for (let i = 0; i < 4; i++) post(r);
    for (let i = 0; i < 3; i++) deliverOne(r, `frame ${i}`);
    for (let i = 0; i < 3; i++) transmit(r, true, `tx ${i}`);
    expect(events.types).toEqual(['net.linkUp', 'net.buffersPosted']);
    deliverOne(r, 'the last buffer');
    expect(events.types).toEqual(['net.linkUp', 'net.buffersPosted', 'net.buffersUsedUp']);
    r.drv.init(); // a reset while starved changes nothing
    post(r);
    r.drv.init(); // one while buffers are posted forgets them
    expect(events.types.slice(3)).toEqual(['net.buffersPosted', 'net.reset']);
  });

  it('takes no frame for a driver that took its queue away while the chart says ready (it would not replay)', () => {
    for (const takeAway of [(r: Rig) => r.drv.write(STATUS, 0x80 | DRIVER_OK_STATUS), (r: Rig) => { r.drv.write(0x030, RX); r.drv.write(0x044, 0); }]) {
      const r = rig();
      r.io.attach({ net: r.wire });
      post(r);
      takeAway(r);
      r.wire.onFrame?.(frame());
      expect(r.io.hasDue()).toBe(false);
      expect(r.io.takeDue()).toBeUndefined();
    }
  });

  it('restores rx readiness from a snapshot (and from an older one without it, by the ring)', () => {
    const a = rig();
    post(a);
    for (const strip of [false, true]) {
      const snap = a.m.snapshot();
      if (strip) for (const v of snap.devices.virtio as { device?: { rxReady?: boolean } }[]) delete v.device?.rxReady;
      const b = new Machine({ memoryMiB: 1, env: new DeterministicEnv({ seed: 1 }), net: {} });
      b.restore(snap);
      expect(b.io!.net!.canReceive(), `restored${strip ? ' from an older snapshot' : ''}`).toBe(true);
      expect(b.io!.apply({ type: 'net-rx', frame: frame() })).toBe(true);
      expect(b.io!.net!.canReceive()).toBe(false);
    }
  });
});
