// The virtio-blk chart's paths, carried out against a real Machine's virtio-blk (transport,
// device, the I/O hub) by a guest driver through its registers and queues, with a fake only at
// the disk's wire (an in-memory disk). Each step asserts what the guest and the disk show: the
// used ring, status bytes, data in guest RAM, the interrupt, the disk's reads and bytes, the
// outputs — never the chart's own value.
import { describe, expect, it } from 'vitest';
import { createTestModel } from 'xstate/graph';
import type { AnyMachineSnapshot, EventObject } from 'xstate';
import { virtioBlkMachine, type VirtioBlkEvent } from '../../machines/virtio-blk.machine.js';
import { Machine } from '../../runtime/machine.js';
import { DeterministicEnv } from '../../runtime/env/deterministic.js';
import type { DiskBackend } from '../../runtime/io/backend.js';
import type { Output } from '../../runtime/types.js';
import type { ChartInspect } from '../../runtime/types.js';
import { RAM_BASE } from '../../runtime/platform.js';
import { eventsCovered, eventsHandled, everyTransition } from './harness.js';
import { eventCounter } from './device-harness.js';
import { DRIVER_OK_STATUS, STATUS, VirtioDriver } from './virtio-driver.js';

const EVENT_TYPES: Record<VirtioBlkEvent['type'], true> = {
  'blk.submitted': true, 'blk.completed': true, 'blk.reset': true, 'blk.backendAttached': true,
};
const SECTORS = 64;
const SLOT = 7;
const T_IN = 0, T_OUT = 1, T_FLUSH = 4;

const model = createTestModel(virtioBlkMachine, {
  ...everyTransition,
  events: [
    ...(['read', 'write', 'flush'] as const).map((kind) => ({ type: 'blk.submitted', kind }) as const),
    { type: 'blk.completed', last: true }, { type: 'blk.completed', last: false },
  ],
});

/** The disk at the wire: sectors in memory, every call recorded. */
class MemDisk implements DiskBackend {
  readonly name = 'mem:disk';
  readonly sectors = SECTORS;
  readonly bytes = new Uint8Array(SECTORS * 512);
  reads: number[] = [];
  writes: number[] = [];
  flushes = 0;
  constructor() {
    for (let i = 0; i < this.bytes.length; i++) this.bytes[i] = (i * 7 + (i >> 9)) & 0xff;
  }
  read(sector: number, count: number): Promise<Uint8Array> {
    this.reads.push(sector);
    return Promise.resolve(this.bytes.slice(sector * 512, (sector + count) * 512));
  }
  write(sector: number, data: Uint8Array): Promise<void> {
    this.writes.push(sector);
    this.bytes.set(data, sector * 512);
    return Promise.resolve();
  }
  flush(): Promise<void> {
    this.flushes++;
    return Promise.resolve();
  }
  close(): Promise<void> {
    return Promise.resolve();
  }
}

/** A request as the guest driver knows it. */
interface Req {
  kind: 'read' | 'write' | 'flush';
  tag: number;
  head: number;
  sector: number;
  at: number;
  /** The bytes a write carries. */
  data?: Uint8Array;
  /** Its write or flush was released to the disk (or re-issued there at go-live). */
  released: boolean;
  output?: Output;
}

const settle = () => new Promise<void>((r) => setImmediate(r));

function rig(inspect?: ChartInspect) {
  const disk = new MemDisk();
  const outputs: Output[] = [];
  const m = new Machine({ memoryMiB: 1, env: new DeterministicEnv({ seed: 1 }), disk: { sectors: SECTORS }, onOutput: (o) => outputs.push(o) });
  if (inspect) m.io!.blk!.inspectWith(inspect);
  const drv = new VirtioDriver(m, SLOT, 1);
  drv.init();
  return { m, io: m.io!, disk, drv, outputs, reqs: [] as Req[], nextTag: 1, n: 0, attached: false, expectedReads: 0 };
}
type Rig = ReturnType<typeof rig>;

/** The guest makes a request available and notifies (header, data, status byte in its own page). */
function submit(r: Rig, kind: Req['kind']): Req {
  const at = RAM_BASE + 0x10000 + 0x1000 * (r.n++ % 32);
  const sector = (r.n * 5) % SECTORS;
  const hdr = new DataView(new ArrayBuffer(16));
  hdr.setUint32(0, kind === 'read' ? T_IN : kind === 'write' ? T_OUT : T_FLUSH, true);
  hdr.setUint32(8, sector, true);
  r.m.bus.writeRam(at, new Uint8Array(hdr.buffer));
  r.m.bus.writeRam(at + 0x10, Uint8Array.of(0xee)); // the status byte, so a write of it shows
  const segs = [{ addr: at, len: 16 }];
  let data: Uint8Array | undefined;
  if (kind === 'read') {
    r.m.bus.writeRam(at + 0x200, new Uint8Array(512));
    segs.push({ addr: at + 0x200, len: 512, write: true } as never);
  } else if (kind === 'write') {
    data = new Uint8Array(512).map((_, i) => (i + r.n * 13) & 0xff);
    r.m.bus.writeRam(at + 0x200, data);
    segs.push({ addr: at + 0x200, len: 512 });
  }
  segs.push({ addr: at + 0x10, len: 1, write: true } as never);
  const outs = r.outputs.length;
  const head = r.drv.submit(0, segs);
  const req: Req = { kind, tag: r.nextTag++, head, sector, at, released: false, ...(data ? { data } : {}) };
  r.reqs.push(req);
  if (kind === 'read') {
    // Issued to the disk at once with a backend attached; without one the log answers.
    if (r.attached) r.expectedReads++;
    expect(r.outputs.length, 'a read is no output').toBe(outs);
  } else {
    // A write or flush leaves as an output, with its bytes, whether or not a backend is attached.
    expect(r.outputs.length, 'the write is an output').toBe(outs + 1);
    const o = r.outputs.at(-1)!;
    expect(o).toMatchObject({ kind: 'disk-write', tag: req.tag, ...(kind === 'flush' ? { flush: true } : { sector }) });
    if (kind === 'write') expect(Buffer.from((o as { data: Uint8Array }).data)).toEqual(Buffer.from(data!));
    req.output = o;
  }
  return req;
}

/** The guest sees one request completed: the used ring, its status byte, its data, the interrupt. */
function sawCompleted(r: Rig, where: string): Req {
  const used = r.drv.popUsed(0);
  expect(used.length, `one chain returned ${where}`).toBe(1);
  const [head, len] = used[0]!;
  const req = r.reqs.find((q) => q.head === head);
  expect(req, `the returned head is a request ${where}`).toBeDefined();
  r.reqs.splice(r.reqs.indexOf(req!), 1);
  expect(r.m.bus.readRam(req!.at + 0x10, 1)[0], `status byte ${where}`).toBe(0);
  if (req!.kind === 'read') {
    expect(len, `bytes written ${where}`).toBe(513);
    expect(Buffer.from(r.m.bus.readRam(req!.at + 0x200, 512)), `read data ${where}`).toEqual(Buffer.from(r.disk.bytes.subarray(req!.sector * 512, req!.sector * 512 + 512)));
  } else {
    expect(len, `bytes written ${where}`).toBe(1);
  }
  if (req!.kind === 'write' && req!.released) {
    expect(Buffer.from(r.disk.bytes.subarray(req!.sector * 512, req!.sector * 512 + 512)), `bytes on the disk ${where}`).toEqual(Buffer.from(req!.data!));
  }
  const irq = r.drv.interrupt();
  expect(irq.status & 1, `used-buffer interrupt ${where}`).toBe(1);
  expect(irq.line, `PLIC line ${where}`).toBe(true);
  r.drv.ack();
  expect(r.drv.interrupt(), `acked ${where}`).toEqual({ status: 0, line: false });
  return req!;
}

/** Make exactly one waiting request complete, the way the product gets its answer. */
async function completeOne(r: Rig, where: string): Promise<void> {
  if (r.attached) {
    // The node releases the oldest unreleased write under the output rule; the disk answers.
    const w = r.reqs.find((q) => q.output && !q.released);
    if (w) {
      expect(r.io.execute(w.output!)).toBe(true);
      w.released = true;
    }
    await settle();
    // The env applies due inputs until a request has completed.
    for (;;) {
      const c = r.io.takeDue();
      expect(c, `an answer is due ${where}`).toBeDefined();
      expect(r.io.apply(c!), `the device takes ${c!.type} ${where}`).toBe(true);
      if (c!.type === 'disk-done') break;
    }
  } else {
    // A replaying backup: the log brings the primary's answer for the oldest request.
    const q = r.reqs[0]!;
    if (q.kind === 'read') {
      expect(r.io.apply({ type: 'disk-read', tag: q.tag, data: r.disk.bytes.slice(q.sector * 512, q.sector * 512 + 512) })).toBe(true);
    }
    expect(r.io.apply({ type: 'disk-done', tag: q.tag, status: 0 })).toBe(true);
  }
  sawCompleted(r, where);
}

async function exec(r: Rig, e: VirtioBlkEvent, where: string): Promise<void> {
  switch (e.type) {
    case 'blk.submitted':
      submit(r, e.kind);
      return;
    case 'blk.completed':
      // A completion that leaves another waiting needs two waiting.
      if (!e.last && r.reqs.length < 2) submit(r, 'read');
      if (e.last) while (r.reqs.length > 1) await completeOne(r, where);
      await completeOne(r, where);
      return;
    case 'blk.reset': {
      r.drv.init();
      r.reqs = [];
      // Answers the disk still gives for the forgotten requests are dropped, never applied.
      await settle();
      expect(r.io.takeDue(), `no answer for a forgotten request ${where}`).toBeUndefined();
      return;
    }
    case 'blk.backendAttached': {
      const reads = r.reqs.filter((q) => q.kind === 'read').length;
      const writes = r.reqs.filter((q) => q.kind === 'write');
      const flushes = r.reqs.filter((q) => q.kind === 'flush').length;
      const before = { writes: r.disk.writes.length, flushes: r.disk.flushes };
      r.io.attach({ disk: r.disk });
      r.attached = true;
      // Go-live (DESIGN §3): every waiting request is issued again on the disk.
      r.expectedReads += reads;
      await settle();
      expect(r.disk.writes.length - before.writes, `writes re-issued ${where}`).toBe(writes.length);
      expect(r.disk.flushes - before.flushes, `flushes re-issued ${where}`).toBe(flushes);
      for (const w of writes) {
        expect(Buffer.from(r.disk.bytes.subarray(w.sector * 512, w.sector * 512 + 512)), `re-issued write on the disk ${where}`).toEqual(Buffer.from(w.data!));
      }
      for (const q of r.reqs) q.released = true;
      return;
    }
    default: throw new Error(`no executor for ${(e as { type: string }).type}`);
  }
}

/** What the guest and the disk show in model state `s`. */
function check(r: Rig, s: AnyMachineSnapshot, where: string): void {
  // Waiting: the used ring is behind what the guest made available; idle: it has caught up.
  expect(r.drv.outstanding(0), `chains not returned ${where}`).toBe(r.reqs.length);
  expect(r.reqs.length > 0, `requests waiting ${where}`).toBe(s.matches({ requests: 'waiting' }));
  // Reads reached the disk exactly when a backend was attached (and once more at go-live).
  expect(r.disk.reads.length, `reads the disk served ${where}`).toBe(r.expectedReads);
  expect(r.attached, `backend ${where}`).toBe(s.matches({ backend: 'attached' }));
  expect(r.drv.read(STATUS), `Status ${where}`).toBe(DRIVER_OK_STATUS);
  expect(r.drv.interrupt(), `no interrupt left unacknowledged ${where}`).toEqual({ status: 0, line: false });
}

describe('virtio-blk chart, driven against the real virtio-blk and its I/O hub', () => {
  const paths = model.getShortestPaths();

  it('shows the used ring, status bytes, data, interrupt and disk bytes the model names, on every shortest path', async () => {
    expect(paths.length).toBeGreaterThan(0);
    let steps = 0;
    for (const path of paths) {
      const r = rig();
      const where = (i: number) => `path ${path.steps.map((s) => JSON.stringify(s.event)).join(' → ')} at step ${i}`;
      for (const [i, step] of path.steps.entries()) {
        // The path's first step is the chart starting (`xstate.init`), not an event to carry out.
        if ((step.event as EventObject).type !== 'xstate.init') {
          expect(Object.keys(EVENT_TYPES)).toContain(step.event.type);
          await exec(r, step.event as VirtioBlkEvent, where(i));
          steps++;
        }
        check(r, step.state, where(i));
      }
    }
    expect(steps).toBeGreaterThanOrEqual(30);
  });

  it('exercises every declared event, and handles no undeclared one', () => {
    expect([...eventsCovered(paths)].sort()).toEqual(Object.keys(EVENT_TYPES).sort());
    expect([...eventsHandled(virtioBlkMachine)].sort()).toEqual(Object.keys(EVENT_TYPES).sort());
  });

  it('sends the chart one event per request, completion and reset that forgets some, none per register access', async () => {
    const events = eventCounter();
    const r = rig(events.inspect);
    r.io.attach({ disk: r.disk });
    r.attached = true;
    r.drv.init(); // a reset with nothing waiting
    for (let i = 0; i < 5; i++) r.drv.read(0x060);
    submit(r, 'read');
    submit(r, 'read');
    await completeOne(r, 'a');
    await completeOne(r, 'b');
    expect(events.types).toEqual(['blk.backendAttached', 'blk.submitted', 'blk.submitted', 'blk.completed', 'blk.completed']);
    submit(r, 'flush');
    r.drv.init(); // a reset with a request waiting
    expect(events.types.slice(5)).toEqual(['blk.submitted', 'blk.reset']);
  });

  it('restores the chart from a snapshot: a waiting read completes from the log, and go-live re-issues what still waits', async () => {
    const a = rig();
    submit(a, 'read');
    submit(a, 'write');
    const b = rig();
    b.m.restore(a.m.snapshot());
    b.reqs = a.reqs.map((q) => ({ ...q }));
    b.nextTag = a.nextTag;
    b.drv = a.drv; // the driver's view of the rings, now answered by b's device
    (b.drv as unknown as { m: Machine }).m = b.m;
    await completeOne(b, 'restored');
    expect(b.io.pending().map((p) => p.kind)).toEqual(['write']);
    b.io.attach({ disk: b.disk });
    b.attached = true;
    await settle();
    expect(b.disk.writes).toEqual([a.reqs[1]!.sector]);
    b.reqs[0]!.released = true;
    await completeOne(b, 'after go-live');
    expect(b.io.pending()).toEqual([]);
  });
});
