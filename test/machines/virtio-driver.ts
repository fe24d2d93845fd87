// A guest's virtio driver, as guests/virtio/virtio.c is, for the device model tests: it drives
// a real Machine's virtio-mmio slot through its registers and keeps split virtqueues in guest
// RAM (VIRTIO 1.1 §2.6, §4.2.3). It knows only what a driver knows: what it made available,
// what the device put in the used rings, the registers.
import type { Machine } from '../../runtime/machine.js';
import { RAM_BASE, virtioIrq } from '../../runtime/platform.js';

const DEVICE_FEATURES = 0x010, DEVICE_FEATURES_SEL = 0x014, DRIVER_FEATURES = 0x020, DRIVER_FEATURES_SEL = 0x024;
const QUEUE_SEL = 0x030, QUEUE_NUM = 0x038, QUEUE_READY = 0x044, QUEUE_NOTIFY = 0x050;
export const INTERRUPT_STATUS = 0x060;
const INTERRUPT_ACK = 0x064;
export const STATUS = 0x070;
const QUEUE_DESC_LOW = 0x080, QUEUE_DRIVER_LOW = 0x090, QUEUE_DEVICE_LOW = 0x0a0;
const DESC_F_NEXT = 1, DESC_F_WRITE = 2;
export const QSIZE = 8;
export const DRIVER_OK_STATUS = 15;

/** One segment of a chain: guest address, length, device-writable or not. */
export interface Seg {
  addr: number;
  len: number;
  write?: boolean;
}

interface Q {
  desc: number;
  avail: number;
  used: number;
  free: number[];
  availIdx: number;
  lastUsed: number;
}

export class VirtioDriver {
  private qs: Q[] = [];

  constructor(readonly m: Machine, readonly slot: number, readonly queueCount: number) {}

  /** A 32-bit register access to the slot's window, as the hart's load or store makes it. */
  read(off: number): number {
    return this.m.virtio[this.slot]!.read(off, 4) >>> 0;
  }

  write(off: number, v: number): void {
    this.m.virtio[this.slot]!.write(off, 4, v >>> 0);
  }

  /** Reset (status 0), then initialise as §3.1.1 says: accept every feature offered, set up each queue, DRIVER_OK. */
  init(): void {
    this.write(STATUS, 0);
    this.write(STATUS, 1);
    this.write(STATUS, 3);
    for (const sel of [0, 1]) {
      this.write(DEVICE_FEATURES_SEL, sel);
      const offered = this.read(DEVICE_FEATURES);
      this.write(DRIVER_FEATURES_SEL, sel);
      this.write(DRIVER_FEATURES, offered);
    }
    this.write(STATUS, 11);
    this.qs = [];
    for (let q = 0; q < this.queueCount; q++) {
      const at = RAM_BASE + 0x1000 + 0x1000 * q;
      const queue: Q = { desc: at, avail: at + 0x400, used: at + 0x800, free: [...Array(QSIZE).keys()], availIdx: 0, lastUsed: 0 };
      this.m.bus.writeRam(at, new Uint8Array(0x1000));
      this.qs.push(queue);
      this.write(QUEUE_SEL, q);
      this.write(QUEUE_NUM, QSIZE);
      this.write(QUEUE_DESC_LOW, queue.desc);
      this.write(QUEUE_DRIVER_LOW, queue.avail);
      this.write(QUEUE_DEVICE_LOW, queue.used);
      this.write(QUEUE_READY, 1);
    }
    this.write(STATUS, DRIVER_OK_STATUS);
  }

  /** Make a chain available on queue `q` and notify; returns its head. */
  submit(q: number, segs: readonly Seg[], notify = true): number {
    const queue = this.qs[q]!;
    if (queue.free.length < segs.length) throw new Error(`driver: queue ${q} has no free descriptors`);
    const ids = segs.map(() => queue.free.shift()!);
    const dv = new DataView(new ArrayBuffer(16));
    segs.forEach((s, i) => {
      dv.setUint32(0, s.addr, true);
      dv.setUint32(4, 0, true);
      dv.setUint32(8, s.len, true);
      dv.setUint16(12, (s.write ? DESC_F_WRITE : 0) | (i + 1 < segs.length ? DESC_F_NEXT : 0), true);
      dv.setUint16(14, i + 1 < segs.length ? ids[i + 1]! : 0, true);
      this.m.bus.writeRam(queue.desc + 16 * ids[i]!, new Uint8Array(dv.buffer.slice(0)));
    });
    this.put16(queue.avail + 4 + 2 * (queue.availIdx % QSIZE), ids[0]!);
    queue.availIdx = (queue.availIdx + 1) & 0xffff;
    this.put16(queue.avail + 2, queue.availIdx);
    // The chain's descriptors come back with its head: remember them.
    this.chains.set(`${q}:${ids[0]}`, ids);
    if (notify) this.notify(q);
    return ids[0]!;
  }

  notify(q: number): void {
    this.write(QUEUE_NOTIFY, q);
  }

  private readonly chains = new Map<string, number[]>();

  /** Chains made available on `q` that the device has not returned. */
  outstanding(q: number): number {
    const queue = this.qs[q]!;
    return (queue.availIdx - this.usedIdx(q)) & 0xffff;
  }

  /** The used ring's idx, as the device wrote it. */
  usedIdx(q: number): number {
    return this.get16(this.qs[q]!.used + 2);
  }

  /** Take the chains the device returned since the last call: [head, bytes written]. */
  popUsed(q: number): [number, number][] {
    const queue = this.qs[q]!;
    const out: [number, number][] = [];
    const dv = new DataView(this.m.bus.ram.buffer, this.m.bus.ram.byteOffset);
    while (queue.lastUsed !== this.usedIdx(q)) {
      const e = queue.used - RAM_BASE + 4 + 8 * (queue.lastUsed % QSIZE);
      const head = dv.getUint32(e, true), len = dv.getUint32(e + 4, true);
      out.push([head, len]);
      queue.free.push(...(this.chains.get(`${q}:${head}`) ?? []));
      this.chains.delete(`${q}:${head}`);
      queue.lastUsed = (queue.lastUsed + 1) & 0xffff;
    }
    return out;
  }

  /** InterruptStatus, and whether the slot's PLIC source is pending (the line, unclaimed). */
  interrupt(): { status: number; line: boolean } {
    const irq = virtioIrq(this.slot);
    const pending = this.m.plic.read(0x1000, 4) >>> 0;
    return { status: this.read(INTERRUPT_STATUS), line: ((pending >>> irq) & 1) === 1 };
  }

  ack(): void {
    this.write(INTERRUPT_ACK, this.read(INTERRUPT_STATUS));
  }

  private put16(addr: number, v: number): void {
    this.m.bus.writeRam(addr, Uint8Array.of(v & 0xff, v >>> 8));
  }

  private get16(addr: number): number {
    const b = this.m.bus.readRam(addr, 2);
    return b[0]! | (b[1]! << 8);
  }
}
